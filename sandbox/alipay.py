"""Alipay's open-platform gateway as far as page pay (电脑网站支付) goes, for tests and the demo.

One endpoint, ``/gateway.do`` (GET, or POST as a form), checks the merchant's RSA2 request
signature and the common parameters, then dispatches on ``method``:

- ``alipay.trade.page.pay`` opens the cashier. As at Alipay, the trade exists only from then on
  (a query before answers ACQ.TRADE_NOT_EXIST); reopening the same order shows the same trade; a
  changed amount or subject is refused (ACQ.CONTEXT_INCONSISTENT, "交易信息被篡改").
- ``alipay.trade.query`` and ``alipay.trade.close`` answer JSON signed the way Alipay signs:
  RSA2 over the exact text of ``"<method>_response"``'s object. Gateway-level errors
  (40001/40002, e.g. a bad request signature) come back unsigned, business errors (40004) signed.

The cashier (``/cashier/{trade_no}``) is a plain HTML page with two forms, Pay and Leave, usable
by a person or a headless browser. Paying sends the asynchronous notification (form-encoded,
signed with Alipay's key over every field but sign and sign_type) to the order's notify_url and
redirects the browser to return_url with the signed synchronous return parameters. Leaving has no
redirect: Alipay's cashier has no cancel URL. Past time_expire a trade closes (with a TRADE_CLOSED
notification, as Alipay sends for timeout closes); a merchant close sends none.

Deliberately faithful traps: closing an order whose cashier was never opened answers
ACQ.TRADE_NOT_EXIST and changes nothing, so the customer can still open and pay it until
time_expire. python-alipay-sdk stamps ``timestamp`` in the host's local time (8 h behind China
time on a UTC host), so timestamps are checked for format and a ±1 day window only.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urljoin

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.base import Emulator, Outcome
from sandbox.keys import rsa_pair

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TEMPLATES = Path(__file__).parent / "templates"

PAGE_PAY = "alipay.trade.page.pay"
QUERY = "alipay.trade.query"
CLOSE = "alipay.trade.close"
METHODS = (PAGE_PAY, QUERY, CLOSE)
REQUIRED = {  # common request parameter → Alipay's sub_code when it is missing
    "app_id": "isv.missing-app-id",
    "method": "isv.missing-method",
    "charset": "isv.missing-charset",
    "sign_type": "isv.missing-signature-type",
    "sign": "isv.missing-signature",
    "timestamp": "isv.missing-timestamp",
    "version": "isv.missing-version",
}
DEFAULT_TIMEOUT = 15 * 86400  # page pay without time_expire: Alipay's longest timeout
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_]{1,64}")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?")
_FORM = re.compile(r'<form id="(pay|leave)-form" method="post" action="([^"]+)"')
_TAGGED = re.compile(r'<(?:p|h1) id="(code|message|title)">(?:<code>)?(.*?)(?:</code>)?</(?:p|h1)>', re.S)


class Refusal(Exception):
    """An Alipay error answer: ``code``/``msg`` and ``sub_code``/``sub_msg``."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str, http_status: int = 400) -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.business = code == "40004"  # Alipay signs business errors, not gateway-level ones
        self.http_status = http_status


def _missing(sub_code: str, name: str) -> Refusal:
    return Refusal("40001", "Missing Required Arguments", sub_code, f"缺少必选参数 {name}")


def _invalid(sub_code: str, sub_msg: str) -> Refusal:
    return Refusal("40002", "Invalid Arguments", sub_code, sub_msg)


def _business(sub_code: str, sub_msg: str, http_status: int = 400) -> Refusal:
    return Refusal("40004", "Business Failed", sub_code, sub_msg, http_status)


class CashierError(Exception):
    """The cashier refused the customer (``pay``): its error code and message."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"Alipay cashier answered {status_code}: {code} {message}".strip())
        self.status_code = status_code
        self.code = code
        self.message = message


@dataclass
class Trade:
    out_trade_no: str
    trade_no: str
    total_amount: str  # yuan, two decimals
    subject: str
    notify_url: str | None
    return_url: str | None
    expires: float  # unix seconds (time_expire)
    gmt_create: str
    status: str = "WAIT_BUYER_PAY"
    gmt_payment: str | None = None
    gmt_close: str | None = None
    buyer_id: str | None = None
    buyer_logon_id: str | None = None
    refunded_at: str | None = None


@dataclass(frozen=True)
class SentNotification:
    url: str
    form: dict[str, str]
    status_code: int | None  # None: no HTTP answer
    body: str
    acknowledged: bool  # HTTP 200 with the body exactly "success"


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def _load_private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


class AlipayEmulator(Emulator):
    gateway_type = "alipay-page"

    def __init__(self, *, app_id: str | None = None, platform_key: tuple[str, str] | None = None,
                 app_key: tuple[str, str] | None = None) -> None:
        """``platform_key``/``app_key``: (private PEM, public PEM) pairs to reuse (key generation
        is the slow part of building one); fresh ones are generated when not given."""
        super().__init__()
        self.app_id = app_id or "2021" + _digits(12)
        self.seller_id = "2088" + _digits(12)
        self.alipay_private_key, self.alipay_public_key = platform_key or rsa_pair()
        self.app_private_key, self.app_public_key = app_key or rsa_pair()
        self._platform = _load_private(self.alipay_private_key)
        app_public = serialization.load_pem_public_key(self.app_public_key.encode())
        assert isinstance(app_public, rsa.RSAPublicKey)
        self._app_public = app_public
        self._forger: rsa.RSAPrivateKey | None = None
        self.forge_signatures = False  # True: sign answers, notifications, returns with a wrong key
        self.trades: dict[str, Trade] = {}  # by out_trade_no
        self._by_trade_no: dict[str, Trade] = {}
        self.notifications: list[SentNotification] = []
        self._offset = 0.0
        self._lock = threading.Lock()  # the app runs in a server thread; tests call in from theirs
        self._app = Starlette(routes=[
            Route("/gateway.do", self._gateway, methods=["GET", "POST"]),
            Route("/cashier/{trade_no}", self._cashier, methods=["GET"]),
            Route("/cashier/{trade_no}/pay", self._pay, methods=["POST"]),
            Route("/cashier/{trade_no}/leave", self._leave, methods=["POST"]),
        ])

    def __repr__(self) -> str:
        return f"AlipayEmulator(app_id={self.app_id!r}, base_url={self.base_url!r})"

    @property
    def app(self) -> Any:
        return self._app

    def env(self) -> dict[str, str]:
        return {
            "PAYRELAY_ALIPAY_APP_ID": self.app_id,
            "PAYRELAY_ALIPAY_PRIVATE_KEY": self.app_private_key,
            "PAYRELAY_ALIPAY_PUBLIC_KEY": self.alipay_public_key,
            "PAYRELAY_ALIPAY_GATEWAY_URL": self.base_url + "/gateway.do",
            "PAYRELAY_ALIPAY_SELLER_ID": self.seller_id,
        }

    # -- clock ----------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (time_expire and all its timestamps follow)."""
        self._offset += seconds

    def _china(self, unix: float | None = None) -> str:
        return datetime.fromtimestamp(self.now() if unix is None else unix, CHINA).strftime(TIME_FORMAT)

    # -- signing --------------------------------------------------------------------------------

    def _signer(self) -> rsa.RSAPrivateKey:
        if not self.forge_signatures:
            return self._platform
        if self._forger is None:
            self._forger = _load_private(rsa_pair()[0])
        return self._forger

    def _sign(self, content: str) -> str:
        signature = self._signer().sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def sign_fields(self, fields: Mapping[str, str]) -> dict[str, str]:
        """``fields`` plus ``sign``: RSA2 with Alipay's key over every field but sign and
        sign_type, sorted, as raw ``k=v`` joined by ``&`` (notifications and return parameters)."""
        signed = {k: v for k, v in fields.items() if k != "sign"}
        content = "&".join(f"{k}={v}" for k, v in sorted(signed.items()) if k != "sign_type")
        return signed | {"sign": self._sign(content)}

    def _request_verifies(self, params: Mapping[str, str]) -> bool:
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
        try:
            signature = base64.b64decode(params["sign"], validate=True)
            self._app_public.verify(signature, content.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (binascii.Error, InvalidSignature):
            return False
        return True

    # -- /gateway.do ----------------------------------------------------------------------------

    async def _gateway(self, request: Request) -> Response:
        if self.down:
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        params = dict(request.query_params)
        if request.method == "POST":
            async with request.form() as form:
                params.update((k, v) for k, v in form.items() if isinstance(v, str))
        method = params.get("method", "")
        try:
            self._check(params)
            biz = self._biz_content(params)
            if method == PAGE_PAY:
                return await self._open(params, biz)
            self.calls["query" if method == QUERY else "close"] += 1
            body = await (self._query(biz) if method == QUERY else self._close(biz))
            return self._answer(method, body, signed=True)
        except Refusal as refusal:
            if method == PAGE_PAY:
                return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
            return self._answer(method, refusal.body, signed=refusal.business)

    def _check(self, params: Mapping[str, str]) -> None:
        for name, sub_code in REQUIRED.items():
            if not params.get(name):
                raise _missing(sub_code, name)
        if params["method"] not in METHODS:
            raise _invalid("isv.invalid-method", "不存在的方法名")
        if params["app_id"] != self.app_id:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数")
        if params["charset"].lower() != "utf-8":
            raise _invalid("isv.invalid-charset", "字符集错误")
        if params["sign_type"] != "RSA2":
            raise _invalid("isv.invalid-signature-type", "无效的签名类型")
        if params["version"] != "1.0":
            raise _invalid("isv.invalid-parameter", "参数无效 (version)")
        try:
            stamp = datetime.strptime(params["timestamp"], TIME_FORMAT).replace(tzinfo=CHINA).timestamp()
        except ValueError:
            stamp = None
        if stamp is None or abs(stamp - self.now()) > 86400:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数")
        if not self._request_verifies(params):
            raise _invalid("isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")

    @staticmethod
    def _biz_content(params: Mapping[str, str]) -> dict[str, Any]:
        try:
            biz = json.loads(params.get("biz_content") or "")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (biz_content)")
        return biz

    def _answer(self, method: str, body: Mapping[str, Any], *, signed: bool) -> Response:
        key = method.replace(".", "_") + "_response" if method in METHODS else "error_response"
        inner = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        text = f'{{"{key}":{inner},"sign":"{self._sign(inner)}"}}' if signed else f'{{"{key}":{inner}}}'
        return Response(text, media_type="text/html;charset=utf-8")  # sic: Alipay's content type

    def _find(self, biz: Mapping[str, Any]) -> Trade:
        trade_no, out_trade_no = biz.get("trade_no"), biz.get("out_trade_no")
        if not trade_no and not out_trade_no:
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (out_trade_no, trade_no)")
        trade = self._by_trade_no.get(str(trade_no)) if trade_no else self.trades.get(str(out_trade_no))
        if trade is None:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    async def _query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        await self._expire_if_due(trade)
        body: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "trade_status": trade.status,
            "total_amount": trade.total_amount,
        }
        if trade.gmt_payment:
            body |= {
                "buyer_logon_id": trade.buyer_logon_id,
                "buyer_user_id": trade.buyer_id,
                "buyer_pay_amount": trade.total_amount,
                "receipt_amount": trade.total_amount,
                "invoice_amount": trade.total_amount,
                "point_amount": "0.00",
                "send_pay_date": trade.gmt_payment,
                "fund_bill_list": [{"amount": trade.total_amount, "fund_channel": "ALIPAYACCOUNT"}],
            }
        else:
            body |= {"buyer_pay_amount": "0.00", "receipt_amount": "0.00", "point_amount": "0.00",
                     "invoice_amount": "0.00"}
        return body

    async def _close(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        await self._expire_if_due(trade)
        with self._lock:
            if trade.status != "WAIT_BUYER_PAY":
                raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            trade.status, trade.gmt_close = "TRADE_CLOSED", self._china()
        # Alipay sends no notification when the merchant closes a trade
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no}

    # -- the cashier ----------------------------------------------------------------------------

    async def _open(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
        out_trade_no = biz.get("out_trade_no")
        amount = biz.get("total_amount")
        subject = biz.get("subject")
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.fullmatch(out_trade_no):
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (out_trade_no)")
        amount = str(amount) if isinstance(amount, str | int | float) else ""
        if not _AMOUNT.fullmatch(amount) or not Decimal("0.01") <= Decimal(amount) <= Decimal(100_000_000):
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (total_amount)")
        # 256 characters as Alipay's Java counts them: UTF-16 units (an emoji is two), 2 bytes each
        if not isinstance(subject, str) or not subject.strip() \
                or len(subject.encode("utf-16-le", "surrogatepass")) > 2 * 256:
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (subject)")
        if biz.get("product_code") != "FAST_INSTANT_TRADE_PAY":
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (product_code)")
        expires = self.now() + DEFAULT_TIMEOUT
        if "time_expire" in biz:
            try:
                expires = datetime.strptime(str(biz["time_expire"]), TIME_FORMAT).replace(
                    tzinfo=CHINA).timestamp()
            except ValueError:
                raise _business("ACQ.INVALID_PARAMETER", "参数无效 (time_expire)") from None
        total = f"{Decimal(amount):.2f}"
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None and self.now() < expires:
                trade = self._new_trade(out_trade_no, total, subject, params, expires)
        if trade is None:
            raise _business("ACQ.TRADE_HAS_CLOSE", "交易已关闭 (time_expire has passed)", 409)
        if trade.total_amount != total or trade.subject != subject:
            raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改", 409)
        await self._expire_if_due(trade)
        self._refuse_unless_waiting(trade)
        self.calls["cashier"] += 1
        return RedirectResponse(f"/cashier/{trade.trade_no}", status_code=303)

    def _new_trade(self, out_trade_no: str, total: str, subject: str, params: Mapping[str, str],
                   expires: float) -> Trade:
        trade = Trade(
            out_trade_no=out_trade_no,
            trade_no=datetime.fromtimestamp(self.now(), CHINA).strftime("%Y%m%d") + "2200" + _digits(16),
            total_amount=total,
            subject=subject,
            notify_url=params.get("notify_url") or None,
            return_url=params.get("return_url") or None,
            expires=expires,
            gmt_create=self._china(),
        )
        self.trades[out_trade_no] = self._by_trade_no[trade.trade_no] = trade
        self.calls["create"] += 1
        return trade

    @staticmethod
    def _refuse_unless_waiting(trade: Trade) -> None:
        if trade.status == "TRADE_CLOSED":
            raise _business("ACQ.TRADE_HAS_CLOSE", "交易已关闭", 409)
        if trade.status != "WAIT_BUYER_PAY":
            raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付", 409)

    async def _cashier_trade(self, request: Request) -> Trade:
        trade = self._by_trade_no.get(request.path_params["trade_no"])
        if trade is None:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在", 404)
        await self._expire_if_due(trade)
        return trade

    async def _cashier(self, request: Request) -> Response:
        try:
            trade = await self._cashier_trade(request)
            self._refuse_unless_waiting(trade)
        except Refusal as refusal:
            return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
        page = string.Template((TEMPLATES / "alipay_cashier.html").read_text(encoding="utf-8"))
        return HTMLResponse(page.substitute(
            subject=html.escape(trade.subject),
            total_amount=trade.total_amount,
            out_trade_no=html.escape(trade.out_trade_no),
            trade_no=trade.trade_no,
            time_expire=self._china(trade.expires),
            pay_action=f"/cashier/{trade.trade_no}/pay",
            leave_action=f"/cashier/{trade.trade_no}/leave",
        ))

    async def _pay(self, request: Request) -> Response:
        try:
            trade = await self._cashier_trade(request)
            with self._lock:
                self._refuse_unless_waiting(trade)
                trade.status, trade.gmt_payment = "TRADE_SUCCESS", self._china()
                trade.buyer_id, trade.buyer_logon_id = "2088" + _digits(12), "buy***@sandbox.com"
        except Refusal as refusal:
            return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
        await self._send(trade, self._notification(trade, "TRADE_SUCCESS"))
        if not trade.return_url:
            return self._message("TRADE_SUCCESS", "付款成功 / Paid", 200, title="Paid")
        returned = self.sign_fields({
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.trade_no,
            "total_amount": trade.total_amount,
            "method": "alipay.trade.page.pay.return",
            "app_id": self.app_id,
            "auth_app_id": self.app_id,
            "seller_id": self.seller_id,
            "timestamp": self._china(),
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": "RSA2",
        })
        separator = "&" if "?" in trade.return_url else "?"
        return RedirectResponse(trade.return_url + separator + urlencode(returned), status_code=303)

    async def _leave(self, request: Request) -> Response:
        try:
            await self._cashier_trade(request)
        except Refusal as refusal:
            return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
        # Alipay's cashier has no cancel redirect: the trade stays WAIT_BUYER_PAY until time_expire
        return self._message("WAIT_BUYER_PAY", "您已离开收银台 / You left the cashier; the order is still open",
                             200, title="You left")

    @staticmethod
    def _message(code: str, message: str, status_code: int, title: str = "支付宝 · 出错了 (error)") -> Response:
        page = string.Template((TEMPLATES / "alipay_message.html").read_text(encoding="utf-8"))
        return HTMLResponse(page.substitute(title=html.escape(title), code=html.escape(code),
                                            message=html.escape(message)), status_code=status_code)

    # -- time_expire ----------------------------------------------------------------------------

    async def _expire_if_due(self, trade: Trade) -> bool:
        with self._lock:
            if trade.status != "WAIT_BUYER_PAY" or self.now() < trade.expires:
                return False
            trade.status, trade.gmt_close = "TRADE_CLOSED", self._china(trade.expires)
        await self._send(trade, self._notification(trade, "TRADE_CLOSED"))
        return True

    async def sweep(self) -> int:
        """Close every open trade past its time_expire (as Alipay's timer does, with a
        TRADE_CLOSED notification); trades are also closed lazily whenever they are touched."""
        return sum([await self._expire_if_due(trade) for trade in list(self.trades.values())])

    # -- notifications --------------------------------------------------------------------------

    def _notification(self, trade: Trade, trade_status: str) -> dict[str, str]:
        fields = {
            "notify_time": self._china(),
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(17) + _digits(1),
            "app_id": self.app_id,
            "auth_app_id": self.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": "RSA2",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "seller_id": self.seller_id,
            "total_amount": trade.total_amount,
            "trade_status": trade_status,
            "gmt_create": trade.gmt_create,
            "subject": trade.subject,
        }
        if trade.gmt_payment or trade_status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            fields |= {
                "buyer_id": trade.buyer_id or "2088" + _digits(12),
                "buyer_logon_id": trade.buyer_logon_id or "buy***@sandbox.com",
                "receipt_amount": trade.total_amount,
                "invoice_amount": trade.total_amount,
                "buyer_pay_amount": trade.total_amount,
                "point_amount": "0.00",
                "gmt_payment": trade.gmt_payment or self._china(),
                "fund_bill_list": json.dumps([{"amount": trade.total_amount, "fundChannel": "ALIPAYACCOUNT"}],
                                             separators=(",", ":")),
            }
        if trade_status == "TRADE_CLOSED":
            fields["gmt_close"] = trade.gmt_close or self._china()
        if trade.refunded_at:
            fields |= {"refund_fee": trade.total_amount, "gmt_refund": trade.refunded_at,
                       "out_biz_no": "refund_" + trade.out_trade_no}
        return fields

    def signed_notification(self, out_trade_no: str, trade_status: str, /, **overrides: str | None) -> dict[str, str]:
        """A genuinely signed notification form about one opened trade, saying ``trade_status``
        (the trade itself is not changed). ``overrides`` replace fields before signing; None
        removes one. To tamper after signing, change the returned dict."""
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise KeyError(f"no trade {out_trade_no!r}: its cashier was never opened")
        fields = self._notification(trade, trade_status)
        for name, value in overrides.items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        return self.sign_fields(fields)

    async def notify(self, form: Mapping[str, str]) -> int:
        """POST ``form`` as a notification to its trade's notify_url (else the bound webhook URL),
        record it like any other, and answer the HTTP status code. Transport errors raise."""
        trade = self.trades.get(form.get("out_trade_no", ""))
        url = (trade.notify_url if trade else None) or self.webhook_url
        if not url:
            raise ValueError("no notify_url for this trade and no webhook URL bound")
        sent = await self._deliver(url, dict(form), raise_errors=True)
        return sent.status_code or 0

    async def _send(self, trade: Trade, fields: dict[str, str]) -> SentNotification | None:
        url = trade.notify_url or self.webhook_url
        if not url:
            return None
        return await self._deliver(url, self.sign_fields(fields), raise_errors=False)

    def acknowledged(self, answer: httpx.Response) -> bool:
        # Alipay reads only the body: anything but the plain text "success" is a failed delivery
        return answer.status_code == 200 and answer.text.strip() == "success"

    async def _deliver(self, url: str, form: dict[str, str], *, raise_errors: bool) -> SentNotification:
        answer = await self.post_webhook(
            url, urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            form.get("notify_id", ""), raise_errors=raise_errors,
        )
        sent = SentNotification(url, form, answer.status_code if answer else None, answer.text if answer else "",
                                answer is not None and self.acknowledged(answer))
        self.notifications.append(sent)
        return sent

    async def refund(self, out_trade_no: str) -> dict[str, str]:
        """Refund a paid trade in full: TRADE_CLOSED, with its notification (sent form returned)."""
        trade = self.trades.get(out_trade_no)
        with self._lock:
            if trade is None or trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise ValueError(f"trade {out_trade_no!r} is not paid; only a paid trade can be refunded")
            trade.status, trade.refunded_at = "TRADE_CLOSED", self._china()
            trade.gmt_close = trade.refunded_at
        form = self.sign_fields(self._notification(trade, "TRADE_CLOSED"))
        if trade.notify_url or self.webhook_url:
            await self._deliver(trade.notify_url or self.webhook_url, form, raise_errors=False)
        return form

    # -- the customer ---------------------------------------------------------------------------

    async def pay(self, payment_url: str, outcome: Outcome = "paid") -> str:
        """Open ``payment_url`` (the cashier) over HTTP and press Pay ("paid") or Leave
        ("cancel"). Returns the return_url the browser is sent to after paying, or "" (leaving
        has no redirect). A refusing cashier raises CashierError."""
        if outcome not in ("paid", "cancel"):
            raise ValueError(
                f"{outcome!r} is not an Alipay page-pay outcome: the cashier takes the money at once "
                "or the customer leaves; use 'paid' or 'cancel'"
            )
        async with httpx.AsyncClient(timeout=30) as client:
            opened = await client.get(payment_url)
            if opened.status_code != 303:
                raise self._cashier_error(opened)
            cashier = await client.get(urljoin(payment_url, opened.headers["location"]))
            if cashier.status_code != 200:
                raise self._cashier_error(cashier)
            actions = dict(_FORM.findall(cashier.text))
            button = "pay" if outcome == "paid" else "leave"
            answer = await client.post(urljoin(str(cashier.url), html.unescape(actions[button])))
        if answer.status_code == 303:
            return answer.headers["location"]
        if answer.status_code == 200:
            return ""
        raise self._cashier_error(answer)

    @staticmethod
    def _cashier_error(answer: httpx.Response) -> CashierError:
        found = {name: html.unescape(text) for name, text in _TAGGED.findall(answer.text)}
        return CashierError(answer.status_code, found.get("code", ""), found.get("message", answer.text[:200]))

    async def settle(self, payment_id: str, outcome: Literal["paid", "failed"]) -> None:
        raise ValueError("Alipay page pay leaves no payment in flight: there is nothing to settle")
