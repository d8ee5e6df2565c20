"""WeChat Pay v3 emulator: Native pay (create, query, close), refunds (``sandbox.wechat_refunds``),
signed answers, callbacks, a QR page and a refunds page.

Faithful where payrelay and the official ``wechatpayv3`` SDK can tell the difference:
- every API call must carry a valid ``WECHATPAY2-SHA256-RSA2048`` Authorization (merchant key,
  its serial number, mchid, a timestamp within 5 minutes), else 401 SIGN_ERROR;
- every 2xx answer (the empty 204 of close too) is signed with the platform ("WeChat Pay public
  key") private key over ``"ts\\nnonce\\nbody\\n"`` and names the public key id as its serial;
- callbacks are sent for successful payments only (``TRANSACTION.SUCCESS``), the transaction
  encrypted with AEAD_AES_256_GCM under the APIv3 key; PAYERROR is found by querying;
- refund notifications (``REFUND.SUCCESS`` / ``REFUND.ABNORMAL`` / ``REFUND.CLOSED``, resource
  ``original_type`` "refund") are signed and encrypted the same way, sent to the refund's
  notify_url when it ends;
- error answers use WeChat's codes: PARAM_ERROR, INVALID_REQUEST (same out_trade_no, different
  content; a refund breaking a rule), ORDERPAID, ORDER_CLOSED, ORDER_NOT_EXIST,
  RESOURCE_NOT_EXISTS (refunds), SIGN_ERROR, SYSTEM_ERROR.

Deliberate leniency: notify_url may be plain http (the tests listen on 127.0.0.1).
The customer's side is a page at ``/qr/{pr}`` (also ``/pay?code_url=…``) in WeChat Pay's look
(``sandbox.pages``): the QR code with the amount and "scan with WeChat", and, standing in for the
WeChat app, buttons to pay, start paying and wait, fail or leave; the merchant's refunds are at
``/refunds`` (choose how new refunds end, settle the ones in flight).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sandbox.base import Emulator, Outcome
from sandbox.keys import rsa_pair
from sandbox.pages import ident, qr_svg, records, render, yuan
from sandbox.wechat_refunds import (
    EVENT_TYPES,
    FORCED_ERRORS,
    OUTCOMES,
    STATUS_DESC,
    SUMMARIES,
    Refund,
    RefundLedger,
    RefundOutcome,
    RefundRefused,
    Settlement,
)

CHINA = timezone(timedelta(hours=8))
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CLOCK_SKEW = 300  # seconds WeChat accepts between a request's timestamp and its own clock

STATE_DESC = {
    "NOTPAY": "订单未支付",
    "USERPAYING": "用户支付中（输入密码中）",
    "SUCCESS": "支付成功",
    "PAYERROR": "支付失败，请重新下单支付",
    "CLOSED": "订单已关闭",
    "REVOKED": "已撤销",
    "REFUND": "转入退款",
}
NATIVE_PAY = "扫码支付 · Native pay"  # the part of WeChat Pay the customer's pages are
REFUND_COLUMNS = ("out_refund_no", "out_trade_no", "金额 · Amount", "状态 · Status", "处理 · Settle")
PAID = frozenset({"SUCCESS", "REFUND"})
FINISHED = frozenset({"CLOSED", "REVOKED"})

_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)")
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


class PaymentRefused(Exception):
    """The payment page would not take the customer's payment (order closed, paid, failed)."""


@dataclass(frozen=True)
class WechatKeys:
    """A merchant's identity and keys at WeChat Pay, generated fresh (2 RSA keys: ~0.1–0.3 s)."""

    mchid: str
    appid: str
    merchant_private_key: str
    merchant_public_key: str
    cert_serial_no: str
    apiv3_key: str
    platform_private_key: str
    platform_public_key: str
    public_key_id: str

    @classmethod
    def generate(cls) -> WechatKeys:
        merchant_private, merchant_public = rsa_pair()
        platform_private, platform_public = rsa_pair()
        alphabet = string.ascii_letters + string.digits
        return cls(
            mchid="19" + "".join(secrets.choice(string.digits) for _ in range(8)),
            appid="wx" + secrets.token_hex(8),
            merchant_private_key=merchant_private,
            merchant_public_key=merchant_public,
            cert_serial_no=secrets.token_hex(20).upper(),
            apiv3_key="".join(secrets.choice(alphabet) for _ in range(32)),
            platform_private_key=platform_private,
            platform_public_key=platform_public,
            public_key_id="PUB_KEY_ID_" + "".join(secrets.choice(string.digits) for _ in range(32)),
        )


@dataclass
class Order:
    out_trade_no: str
    request: dict[str, Any]  # the create body as received
    pr: str
    expires_at: float | None
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: str | None = None
    openid: str | None = None
    history: list[str] = field(default_factory=list)

    @property
    def code_url(self) -> str:
        return f"weixin://wxpay/bizpayurl?pr={self.pr}"

    @property
    def notify_url(self) -> str:
        return str(self.request["notify_url"])


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(int(unix), CHINA).isoformat()


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _nonce(length: int = 32) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


class WechatEmulator(Emulator):
    """WeChat Pay v3 Native pay, in memory. Knobs beyond ``down``:

    ``sign_responses_with_wrong_key`` (2xx answers signed by a key nobody trusts),
    ``unsigned_responses`` (2xx answers without any Wechatpay-* header), ``delay`` (seconds each
    API answer waits, for timeouts), ``advance(seconds)``
    (moves the order clock used for time_expire; request timestamps keep real time).
    ``requests`` holds every accepted create body, ``orders`` the orders by out_trade_no.

    Refunds: ``refund_outcome`` ("succeed": SUCCESS at once, its notification right after the
    answer; "succeed_later" / "abnormal_later" / "closed_later": PROCESSING until
    ``await settle_refund(out_refund_no[, outcome])`` ends it and sends its notification);
    ``refund_error`` (a code of ``wechat_refunds.FORCED_ERRORS``: every refund call answers it,
    nothing refunded); ``refund_delay`` (seconds a refund answer waits AFTER the refund is made:
    a timeout after the effect). ``refunds`` holds them by out_refund_no, ``refund(no)`` answers
    what a query would.
    """

    gateway_type = "wechat-pay-native"

    def __init__(self, keys: WechatKeys | None = None) -> None:
        super().__init__()
        self.keys = keys or WechatKeys.generate()
        self.orders: dict[str, Order] = {}
        self.requests: list[dict[str, Any]] = []
        self.sign_responses_with_wrong_key = False
        self.unsigned_responses = False
        self.delay = 0.0  # seconds every API answer waits first (timeouts)
        self.refund_delay = 0.0  # seconds a refund answer waits after the refund is made
        self._ledger = RefundLedger()
        self._notices_due = 0  # refund notifications scheduled after an answer, not sent yet
        self._by_pr: dict[str, str] = {}
        self._offset = 0.0
        self._lock = threading.Lock()  # the app runs in a server thread, tests drive it from theirs
        self._platform_key = _private(self.keys.platform_private_key)
        self._wrong_key: rsa.RSAPrivateKey | None = None
        merchant = serialization.load_pem_public_key(self.keys.merchant_public_key.encode())
        assert isinstance(merchant, rsa.RSAPublicKey)
        self._merchant_key = merchant
        self._app: Starlette | None = None

    # ---- configuration -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            "PAYRELAY_WECHAT_MCHID": self.keys.mchid,
            "PAYRELAY_WECHAT_APPID": self.keys.appid,
            "PAYRELAY_WECHAT_PRIVATE_KEY": self.keys.merchant_private_key,
            "PAYRELAY_WECHAT_CERT_SERIAL_NO": self.keys.cert_serial_no,
            "PAYRELAY_WECHAT_APIV3_KEY": self.keys.apiv3_key,
            "PAYRELAY_WECHAT_PUBLIC_KEY": self.keys.platform_public_key,
            "PAYRELAY_WECHAT_PUBLIC_KEY_ID": self.keys.public_key_id,
            "PAYRELAY_WECHAT_API_BASE": self.base_url,
        }

    def key_material(self) -> dict[str, str]:
        return asdict(self.keys)

    @classmethod
    def restored(cls, material: Mapping[str, str]) -> WechatEmulator:
        return cls(WechatKeys(**material))

    @property
    def app(self) -> Starlette:
        if self._app is None:
            self._app = Starlette(
                routes=[
                    Route("/v3/pay/transactions/native", self._create, methods=["POST"]),
                    Route("/v3/pay/transactions/out-trade-no/{no}", self._query, methods=["GET"]),
                    Route("/v3/pay/transactions/out-trade-no/{no}/close", self._close, methods=["POST"]),
                    Route("/v3/refund/domestic/refunds", self._refund, methods=["POST"]),
                    Route("/v3/refund/domestic/refunds/{no}", self._query_refund, methods=["GET"]),
                    Route("/v3/{rest:path}", self._unknown, methods=["GET", "POST"]),
                    Route("/pay", self._page_by_code_url, methods=["GET"]),
                    Route("/qr/{pr}", self._page, methods=["GET", "POST"]),
                    Route("/refunds", self._refunds_page, methods=["GET", "POST"]),
                ]
            )
        return self._app

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def page_url(self, code_url: str) -> str:
        return f"{self.base_url}/qr/{self._pr_of(code_url)}"

    @property
    def refund_outcome(self) -> RefundOutcome:
        return self._ledger.outcome

    @refund_outcome.setter
    def refund_outcome(self, outcome: RefundOutcome) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown refund outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
        self._ledger.outcome = outcome

    @property
    def refund_error(self) -> str | None:
        return self._ledger.error

    @refund_error.setter
    def refund_error(self, code: str | None) -> None:
        if code is not None and code not in FORCED_ERRORS:
            raise ValueError(f"unknown refund error {code!r}: one of {', '.join(FORCED_ERRORS)}")
        self._ledger.error = code

    @property
    def refunds(self) -> dict[str, Refund]:
        return self._ledger.refunds

    @property
    def refund_requests(self) -> list[dict[str, Any]]:
        return self._ledger.requests

    # ---- API -------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        return await self._api(request, "create", self._do_create)

    async def _query(self, request: Request) -> Response:
        return await self._api(request, "query", self._do_query)

    async def _close(self, request: Request) -> Response:
        return await self._api(request, "close", self._do_close)

    async def _refund(self, request: Request) -> Response:
        return await self._api(request, "refund", self._do_refund, late=self.refund_delay)

    async def _query_refund(self, request: Request) -> Response:
        return await self._api(request, "query_refund", self._do_query_refund)

    async def _unknown(self, request: Request) -> Response:
        return self._error(_ApiError(404, "NOT_FOUND", "请求的资源不存在"))

    async def _api(self, request: Request, operation: str, handler: Any, late: float = 0.0) -> Response:
        """``handler(request, raw)`` → (status, payload) or (status, payload, what to do after
        answering); ``late``: seconds the answer waits after the handler acted."""
        self.calls[operation] += 1
        raw = await request.body()  # received whole: a slow WeChat still does what it was asked
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            body = _json({"code": "SYSTEM_ERROR", "message": "系统繁忙，请稍后重试"})
            return Response(body, 503, media_type="application/json")
        try:
            self._authenticate(request, raw)
            status, payload, *after = handler(request, raw)
        except (_ApiError, RefundRefused) as exc:
            return self._error(exc)
        if late:
            await asyncio.sleep(late)  # done, but the answer is late: the caller times out after the effect
        answer = self._signed(status, None if payload is None else _json(payload))
        answer.background = after[0] if after else None
        return answer

    def _authenticate(self, request: Request, raw: bytes) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        params = dict(_AUTH_PARAM.findall(rest))
        if (
            scheme != SIGNATURE_TYPE
            or not {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} <= params.keys()
        ):
            raise _ApiError(401, "SIGN_ERROR", "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》")
        if params["mchid"] != self.keys.mchid:
            raise _ApiError(401, "SIGN_ERROR", "商户号与Authorization中的mchid不匹配")
        if params["serial_no"] != self.keys.cert_serial_no:
            raise _ApiError(401, "SIGN_ERROR", "商户证书序列号有误。请使用签名私钥匹配的证书序列号")
        try:
            skew = abs(time.time() - int(params["timestamp"]))
        except ValueError:
            skew = CLOCK_SKEW + 1
        if skew > CLOCK_SKEW:
            raise _ApiError(401, "SIGN_ERROR", "Http头Authorization中的timestamp已过期或无效")
        target = request.scope.get("raw_path", request.url.path.encode()).decode()
        if request.scope.get("query_string"):
            target += "?" + request.scope["query_string"].decode()
        message = f"{request.method}\n{target}\n{params['timestamp']}\n{params['nonce_str']}\n".encode() + raw + b"\n"
        try:
            self._merchant_key.verify(
                base64.b64decode(params["signature"]), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            raise _ApiError(401, "SIGN_ERROR", "错误的签名，验签失败") from None

    def _do_create(self, request: Request, raw: bytes) -> tuple[int, dict[str, Any]]:
        body = _body(raw)
        _validate_create(body, self.keys)
        no = body["out_trade_no"]
        with self._lock:
            order = self.orders.get(no)
            if order is not None:
                self._refresh(order)
                if order.trade_state in PAID:
                    raise _ApiError(400, "ORDERPAID", "该订单已支付")
                if order.trade_state in FINISHED:
                    raise _ApiError(400, "ORDER_CLOSED", "订单已关闭")
                if order.request != body:
                    raise _ApiError(400, "INVALID_REQUEST", "201 商户订单号重复，同一笔交易不能多次提交")
                return 200, {"code_url": order.code_url}
            expires = datetime.fromisoformat(body["time_expire"]).timestamp() if "time_expire" in body else None
            order = Order(
                no,
                body,
                pr=secrets.token_urlsafe(12).replace("-", "x").replace("_", "y"),
                expires_at=expires,
                history=["NOTPAY"],
            )
            self.orders[no] = order
            self._by_pr[order.pr] = no
            self.requests.append(body)
        return 200, {"code_url": order.code_url}

    def _do_query(self, request: Request, raw: bytes) -> tuple[int, dict[str, Any]]:
        mchid = request.query_params.get("mchid")
        if not mchid:
            raise _ApiError(400, "PARAM_ERROR", "输入源“/query/mchid”映射到值字段“商户号”必填性规则校验失败")
        if mchid != self.keys.mchid:
            raise _ApiError(400, "PARAM_ERROR", "商户号mchid与请求头中的商户号不一致")
        with self._lock:
            order = self._order(request.path_params["no"])
            return 200, self._transaction(order)

    def _do_close(self, request: Request, raw: bytes) -> tuple[int, None]:
        body = _body(raw)
        if body.get("mchid") != self.keys.mchid:
            raise _ApiError(400, "PARAM_ERROR", "商户号mchid缺失或与请求头中的商户号不一致")
        with self._lock:
            order = self._order(request.path_params["no"])
            if order.trade_state in PAID:
                raise _ApiError(400, "ORDERPAID", "订单已支付，不能发起关单")
            if order.trade_state not in FINISHED:
                self._set(order, "CLOSED")
        return 204, None

    def _do_refund(self, request: Request, raw: bytes) -> tuple[int, dict[str, Any], BackgroundTask | None]:
        body = _body(raw)
        with self._lock:
            order = self._find_order(body)
            refund, new = self._ledger.apply(body, order, self.now(), rfc3339(self.now()))
            if new and order is not None and order.trade_state == "SUCCESS":
                self._set(order, "REFUND")  # 转入退款
            answer = refund.answer()
        # a refund that ended at once is notified like any other, after its answer
        if not new or refund.status == "PROCESSING":
            return 200, answer, None
        with self._lock:
            self._notices_due += 1
        return 200, answer, BackgroundTask(self._notify_refund, refund.out_refund_no, due=True)

    def _do_query_refund(self, request: Request, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return 200, self._ledger.find(request.path_params["no"]).answer()

    def _find_order(self, body: dict[str, Any]) -> Order | None:
        """The order a refund names by out_trade_no or transaction_id (caller holds the lock)."""
        if body.get("out_trade_no"):
            order = self.orders.get(str(body["out_trade_no"]))
        else:
            order = next((o for o in self.orders.values() if o.transaction_id == body.get("transaction_id")), None)
        if order is not None:
            self._refresh(order)
        return order

    def _order(self, no: str) -> Order:
        order = self.orders.get(no)
        if order is None:
            raise _ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        self._refresh(order)
        return order

    def _refresh(self, order: Order) -> None:
        """Past time_expire an unpaid order is closed (caller holds the lock)."""
        if order.trade_state == "NOTPAY" and order.expires_at is not None and self.now() >= order.expires_at:
            self._set(order, "CLOSED")

    @staticmethod
    def _set(order: Order, state: str) -> None:
        order.trade_state = state
        order.history.append(state)

    def _transaction(self, order: Order) -> dict[str, Any]:
        """The transaction as the query answers it (and as callbacks carry it, encrypted)."""
        total = order.request["amount"]["total"]
        currency = order.request["amount"].get("currency", "CNY")
        tx: dict[str, Any] = {
            "appid": self.keys.appid,
            "mchid": self.keys.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_type": "NATIVE",
            "trade_state": order.trade_state,
            "trade_state_desc": STATE_DESC[order.trade_state],
            "attach": "",
            "amount": {"total": total, "currency": currency, "payer_currency": currency},
        }
        if order.transaction_id:
            tx["transaction_id"] = order.transaction_id
            tx["bank_type"] = "OTHERS"
            tx["success_time"] = order.success_time
            tx["payer"] = {"openid": order.openid}
            tx["amount"]["payer_total"] = total
        return tx

    def transaction(self, out_trade_no: str) -> dict[str, Any]:
        """What a query would answer now for this order (KeyError when there is none)."""
        with self._lock:
            order = self.orders[out_trade_no]
            self._refresh(order)
            return self._transaction(order)

    # ---- signing ---------------------------------------------------------------------------

    def _signature_headers(
        self,
        body: bytes,
        *,
        key: rsa.RSAPrivateKey | None = None,
        timestamp: int | None = None,
        serial: str | None = None,
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = _nonce()
        signature = _rsa_sign(key or self._platform_key, f"{ts}\n{nonce}\n".encode() + body + b"\n")
        return {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": self.keys.public_key_id if serial is None else serial,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }

    def _signed(self, status: int, body: bytes | None) -> Response:
        content = body or b""
        headers = {"Request-ID": str(uuid.uuid4())}
        if not self.unsigned_responses:
            key = None
            if self.sign_responses_with_wrong_key:
                if self._wrong_key is None:
                    self._wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                key = self._wrong_key
            headers.update(self._signature_headers(content, key=key))
        media_type = "application/json" if body is not None else None
        return Response(content, status, headers=headers, media_type=media_type)

    def _error(self, exc: _ApiError | RefundRefused) -> Response:
        body = _json({"code": exc.code, "message": exc.message})
        return Response(body, exc.status, media_type="application/json", headers={"Request-ID": str(uuid.uuid4())})

    # ---- callbacks -------------------------------------------------------------------------

    def signed_callback(
        self,
        out_trade_no: str,
        trade_state: str = "SUCCESS",
        *,
        timestamp: int | None = None,
        serial: str | None = None,
        sign_key: str | None = None,
        apiv3_key: str | None = None,
        overrides: dict[str, Any] | None = None,
        event_type: str = "TRANSACTION.SUCCESS",
    ) -> tuple[bytes, dict[str, str]]:
        """A callback about one order, genuine unless a keyword forges one aspect of it.

        ``sign_key`` is a private PEM to sign with instead of the platform key, ``apiv3_key`` a
        32-byte key to encrypt with instead of the merchant's, ``overrides`` replaces fields of
        the decrypted transaction (dicts such as ``amount`` are merged one level deep). A
        SUCCESS callback about an order that is not paid here carries invented payment details.
        """
        tx = self.transaction(out_trade_no)
        tx["trade_state"] = trade_state
        tx["trade_state_desc"] = STATE_DESC.get(trade_state, trade_state)
        if trade_state in PAID and "transaction_id" not in tx:
            tx.update(
                transaction_id=_transaction_id(),
                bank_type="OTHERS",
                success_time=rfc3339(self.now()),
                payer={"openid": _openid()},
            )
            tx["amount"]["payer_total"] = tx["amount"]["total"]
        for name, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(tx.get(name), dict):
                tx[name] = {**tx[name], **value}
            else:
                tx[name] = value
        body = self._callback_body(tx, event_type, apiv3_key or self.keys.apiv3_key)
        key = _private(sign_key) if sign_key else None
        return body, self._signature_headers(body, key=key, timestamp=timestamp, serial=serial)

    def _callback_body(self, tx: dict[str, Any], event_type: str, apiv3_key: str,
                       original_type: str = "transaction", summary: str = "支付成功") -> bytes:
        nonce = secrets.token_urlsafe(9)[:12]
        associated_data = _associated_data(original_type)
        ciphertext = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), _json(tx), associated_data.encode())
        return _json(
            {
                "id": str(uuid.uuid4()),
                "create_time": rfc3339(self.now()),
                "resource_type": "encrypt-resource",
                "event_type": event_type,
                "summary": summary,
                "resource": {
                    "original_type": original_type,
                    "algorithm": "AEAD_AES_256_GCM",
                    "ciphertext": base64.b64encode(ciphertext).decode(),
                    "associated_data": associated_data,
                    "nonce": nonce,
                },
            }
        )

    async def deliver(self, body: bytes, headers: dict[str, str], url: str | None = None) -> int:
        """POST a callback to ``url`` (default: the bound webhook URL); records and answers the status."""
        target = url or self.webhook_url
        if not target:
            raise ValueError("deliver() needs a url, or bind() the emulator to a webhook URL first")
        event_id = str(json.loads(body).get("id", "")) if body.startswith(b"{") else ""
        answer = await self.post_webhook(target, body, {**headers, "Content-Type": "application/json"}, event_id,
                                         raise_errors=True)
        assert answer is not None
        return answer.status_code

    async def _notify(self, out_trade_no: str) -> None:
        """The genuine TRANSACTION.SUCCESS callback to the order's notify_url (one attempt)."""
        with self._lock:
            order = self.orders[out_trade_no]
            tx = self._transaction(order)
            url = order.notify_url
        body = self._callback_body(tx, "TRANSACTION.SUCCESS", self.keys.apiv3_key)
        with contextlib.suppress(httpx.HTTPError):  # recorded with status None; WeChat would retry
            await self.deliver(body, self._signature_headers(body), url)

    # ---- refunds ---------------------------------------------------------------------------

    def refund(self, out_refund_no: str) -> dict[str, Any]:
        """What a refund query would answer now (KeyError when there is no such refund)."""
        with self._lock:
            return self._ledger.refunds[out_refund_no].answer()

    def signed_refund_callback(
        self,
        out_refund_no: str,
        refund_status: str | None = None,
        *,
        timestamp: int | None = None,
        serial: str | None = None,
        sign_key: str | None = None,
        apiv3_key: str | None = None,
        overrides: dict[str, Any] | None = None,
        event_type: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A refund notification about one refund (its status now, or ``refund_status``), genuine
        unless a keyword forges one aspect of it (as :meth:`signed_callback`'s)."""
        with self._lock:
            resource = self._ledger.refunds[out_refund_no].notice(self.keys.mchid)
        status = refund_status or resource["refund_status"]
        resource["refund_status"] = status
        for name, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(resource.get(name), dict):
                resource[name] = {**resource[name], **value}
            else:
                resource[name] = value
        body = self._callback_body(resource, event_type or EVENT_TYPES.get(status, f"REFUND.{status}"),
                                   apiv3_key or self.keys.apiv3_key, "refund", SUMMARIES.get(status, status))
        key = _private(sign_key) if sign_key else None
        return body, self._signature_headers(body, key=key, timestamp=timestamp, serial=serial)

    async def _notify_refund(self, out_refund_no: str, due: bool = False) -> None:
        """The genuine REFUND.* notification of an ended refund to its notify_url (one attempt;
        without one, the order's: WeChat falls back to the merchant platform's setting)."""
        try:
            with self._lock:
                refund = self._ledger.refunds[out_refund_no]
                resource = refund.notice(self.keys.mchid)
                url = refund.notify_url or self.orders[refund.out_trade_no].notify_url
            status = resource["refund_status"]
            body = self._callback_body(resource, EVENT_TYPES[status], self.keys.apiv3_key, "refund", SUMMARIES[status])
            with contextlib.suppress(httpx.HTTPError):  # recorded with status None; WeChat would retry
                await self.deliver(body, self._signature_headers(body), url)
        finally:
            if due:
                with self._lock:
                    self._notices_due -= 1

    async def notified(self, timeout: float = 5.0) -> None:
        """Wait until the notifications of refunds that ended at once have been sent (they go
        after the refund's answer, from the emulator's server): before reading ``webhooks_sent``
        or a receiver, or before a test ends."""
        deadline = time.monotonic() + timeout
        while self._notices_due:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._notices_due} refund notifications still unsent after {timeout:g} s")
            await asyncio.sleep(0.01)

    async def settle_refund(self, out_refund_no: str, outcome: Settlement | None = None) -> None:
        """End a PROCESSING refund — "succeed" (SUCCESS), "abnormal" (ABNORMAL) or "closed"
        (CLOSED); by default the way ``refund_outcome`` said when it was made — and send its
        notification, signed and encrypted. ValueError when it is not PROCESSING."""
        with self._lock:
            self._ledger.settle(out_refund_no, outcome, rfc3339(self.now()))
        await self._notify_refund(out_refund_no)

    async def _refunds_page(self, request: Request) -> Response:
        """The merchant's side: how new refunds end, and a button per way to end one in flight."""
        status = 200
        if request.method == "POST":
            form = parse_qs((await request.body()).decode())
            outcome, settle = form.get("outcome", [""])[0], form.get("settle", [""])[0]
            try:
                if outcome:
                    self.refund_outcome = outcome  # type: ignore[assignment]  # checked by the setter
            except ValueError:
                status = 400
            try:
                if settle:
                    await self.settle_refund(form.get("out_refund_no", [""])[0], settle)  # type: ignore[arg-type]
            except KeyError:
                status = 404
            except ValueError:  # not in flight (or no such outcome)
                status = 409
        return HTMLResponse(self._render_refunds(), status)

    def _render_refunds(self) -> str:
        choices = "".join(
            f'<button name="outcome" value="{o}" aria-pressed="{"true" if o == self.refund_outcome else "false"}">'
            f"{o}</button>"
            for o in OUTCOMES
        )
        rows: list[tuple[str, list[str]]] = []
        with self._lock:
            for refund in self._ledger.refunds.values():
                actions = ""
                if refund.status == "PROCESSING":
                    actions = (
                        f'<form method="post" action="/refunds"><input type="hidden" name="out_refund_no" '
                        f'value="{escape(refund.out_refund_no)}">'
                        + "".join(f'<button name="settle" value="{s}">{s}</button>'
                                  for s in ("succeed", "abnormal", "closed"))
                        + "</form>"
                    )
                rows.append((f' data-refund-status="{refund.status}"',
                             [ident(refund.out_refund_no), ident(refund.out_trade_no), yuan(refund.amount),
                              f"{refund.status} · {STATUS_DESC[refund.status]}", actions]))
        return render("wechat", "wechat_refunds", "微信支付 · 退款 Refunds (payrelay sandbox)",
                      area="商户退款 · Merchant refunds",
                      outcome=self.refund_outcome, choices=choices,
                      refunds=records(REFUND_COLUMNS, rows, "暂无退款 · No refunds yet"))

    # ---- the customer ----------------------------------------------------------------------

    def _pay_order(self, order: Order, outcome: str) -> bool:
        """Apply the customer's action (caller holds the lock); True when a callback is due."""
        self._refresh(order)
        if outcome == "cancel":
            return False
        if order.trade_state not in ("NOTPAY", "USERPAYING"):
            raise PaymentRefused(f"{STATE_DESC[order.trade_state]} ({order.trade_state})")
        if outcome == "processing":
            if order.trade_state == "NOTPAY":
                self._set(order, "USERPAYING")
            return False
        if outcome == "failed":
            self._set(order, "PAYERROR")
            return False
        if outcome != "paid":
            raise ValueError(f"unknown outcome {outcome!r}")
        order.transaction_id = _transaction_id()
        order.success_time = rfc3339(self.now())
        order.openid = _openid()
        self._set(order, "SUCCESS")
        return True

    async def _page(self, request: Request) -> Response:
        pr = request.path_params["pr"]
        no = self._by_pr.get(pr)
        if no is None:
            return HTMLResponse(render("wechat", "wechat_message", "微信支付 · 二维码已失效 (payrelay sandbox)",
                                       area=NATIVE_PAY,
                                       title="二维码已失效 · This QR code has expired",
                                       message="请让商户重新生成二维码 · Ask the merchant for a new code"), 404)
        status = 200
        if request.method == "POST":
            form = parse_qs((await request.body()).decode())
            outcome = form.get("outcome", [""])[0]
            try:
                with self._lock:
                    notify = self._pay_order(self.orders[no], outcome)
            except PaymentRefused:
                status = 409
            except ValueError:
                status = 400
            else:
                if notify:
                    await self._notify(no)
        with self._lock:
            order = self.orders[no]
            self._refresh(order)
            if request.method == "GET" and order.trade_state not in ("NOTPAY", "USERPAYING"):
                status = 409 if order.trade_state not in PAID else 200
            return HTMLResponse(self._render(order), status)

    async def _page_by_code_url(self, request: Request) -> Response:
        pr = parse_qs(urlsplit(request.query_params.get("code_url", "")).query).get("pr", [""])[0]
        request.scope["path_params"] = {"pr": pr}
        return await self._page(request)

    def _render(self, order: Order) -> str:
        payable = order.trade_state in ("NOTPAY", "USERPAYING")
        actions = ""
        if payable:
            actions = (
                f'<form class="wx-actions" method="post" action="/qr/{order.pr}">'
                '<button class="primary" name="outcome" value="paid">扫码支付 · Scan and pay</button>'
                '<button name="outcome" value="processing">扫码后等待 · Scan, then wait</button>'
                '<button name="outcome" value="failed">支付失败 · Payment fails</button>'
                '<button name="outcome" value="cancel">离开 · Leave</button></form>'
            )
        amount = yuan(order.request["amount"]["total"])
        return render(
            "wechat", "wechat_pay", f"微信支付 · {amount} (payrelay sandbox)", area=NATIVE_PAY,
            out_trade_no=escape(order.out_trade_no),
            description=escape(str(order.request.get("description", ""))),
            amount=amount,
            qr=qr_svg(order.code_url, "微信支付二维码 · WeChat Pay QR code"),
            trade_state=order.trade_state,
            trade_state_desc=escape(STATE_DESC[order.trade_state]),
            actions=actions,
            code_url=escape(order.code_url),
        )

    def _pr_of(self, payment_url: str) -> str:
        parts = urlsplit(payment_url)
        if parts.scheme != "weixin":
            raise ValueError(f"not a WeChat Pay code URL: {payment_url!r}")
        pr = parse_qs(parts.query).get("pr", [""])[0]
        if pr not in self._by_pr:
            raise KeyError(f"this emulator issued no code URL {payment_url!r}")
        return pr

    async def pay(self, payment_url: str, outcome: Outcome = "paid") -> str:
        """Scan ``payment_url`` (the weixin:// code URL) on the page and act; raises
        PaymentRefused when the page will not take the payment. There is no redirect: ""."""
        page = self.page_url(payment_url)
        async with httpx.AsyncClient(timeout=10) as client:
            shown = await client.get(page)
            if outcome == "cancel":
                return ""
            answer = await client.post(page, data={"outcome": outcome})
        if answer.status_code == 409 or shown.status_code == 409:
            state = re.search(r'data-trade-state="(\w+)"', answer.text)
            raise PaymentRefused(f"the page refused the payment ({state.group(1) if state else '?'})")
        answer.raise_for_status()
        return ""

    async def settle(self, payment_id: str, outcome: Literal["paid", "failed"]) -> None:
        """Finish a USERPAYING order: SUCCESS (with its callback) or PAYERROR (no callback)."""
        with self._lock:
            order = self.orders[payment_id]
            if order.trade_state != "USERPAYING":
                raise ValueError(f"{payment_id} is {order.trade_state}, not USERPAYING")
            notify = self._pay_order(order, outcome)
        if notify:
            await self._notify(payment_id)


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise _ApiError(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
    if not isinstance(body, dict):
        raise _ApiError(400, "PARAM_ERROR", "请求体必须是JSON对象")
    return body


def _param_error(path: str, label: str, problem: str) -> _ApiError:
    return _ApiError(400, "PARAM_ERROR", f"输入源“/body/{path}”映射到值字段“{label}”{problem}")


def _validate_create(body: dict[str, Any], keys: WechatKeys) -> None:
    for name, label in (
        ("appid", "应用ID"),
        ("mchid", "直连商户号"),
        ("description", "商品描述"),
        ("out_trade_no", "商户订单号"),
        ("notify_url", "通知地址"),
        ("amount", "订单金额"),
    ):
        if name not in body or body[name] in ("", None):
            raise _param_error(name, label, "必填性规则校验失败，此字段为必填项")
    if body["appid"] != keys.appid:
        raise _ApiError(400, "PARAM_ERROR", "appid和mch_id不匹配")
    if body["mchid"] != keys.mchid:
        raise _ApiError(400, "PARAM_ERROR", "商户号mchid与请求头中的商户号不一致")
    description = body["description"]
    # string[1,127]: counted in UTF-8 bytes here, the stricter reading of WeChat's docs
    if not isinstance(description, str) or len(description.encode("utf-8", "surrogatepass")) > 127:
        raise _param_error("description", "商品描述", "字符串规则校验失败，长度不能超过127")
    if not isinstance(body["out_trade_no"], str) or not _OUT_TRADE_NO.fullmatch(body["out_trade_no"]):
        raise _param_error("out_trade_no", "商户订单号", "字符串规则校验失败，须为6-32位数字、大小写字母_-|*")
    notify = urlsplit(str(body["notify_url"]))
    if notify.scheme not in ("https", "http") or not notify.hostname or notify.query:
        raise _param_error("notify_url", "通知地址", "校验失败，须为可直接访问的绝对URL，不能携带参数")
    if "time_expire" in body:
        text = body["time_expire"]
        try:
            if not isinstance(text, str) or not _RFC3339.fullmatch(text):
                raise ValueError
            datetime.fromisoformat(text)
        except ValueError:
            raise _param_error("time_expire", "交易结束时间", "时间格式校验失败，须为RFC 3339格式") from None
    amount = body["amount"]
    total = amount.get("total") if isinstance(amount, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        raise _param_error("amount/total", "总金额", "校验失败，须为正整数（单位：分）")
    if amount.get("currency", "CNY") != "CNY":
        raise _param_error("amount/currency", "货币类型", "校验失败，仅支持CNY")


# WeChat documents associated_data as optional extra data bound into the AEAD tag (payments'
# callbacks usually carry "transaction"): each callback takes the next of these, so a receiver
# that hard-codes it, or drops it, fails at the first callback.
_ASSOCIATED_DATA = itertools.cycle(["payrelay-ad", "transaction", ""])


def _associated_data(original_type: str = "transaction") -> str:
    value = next(_ASSOCIATED_DATA)
    if value == "transaction":
        return original_type  # refund notifications usually carry "refund"
    return f"{value}-{secrets.token_hex(4)}" if value == "payrelay-ad" else value


def _transaction_id() -> str:
    return "4200" + "".join(secrets.choice(string.digits) for _ in range(24))


def _openid() -> str:
    return "o" + secrets.token_urlsafe(21)[:27]
