"""Alipay's open-platform gateway as far as page pay (电脑网站支付) goes, for tests and the demo.

One endpoint, ``/gateway.do`` (GET, or POST as a form), checks the merchant's RSA2 request
signature and the common parameters, then dispatches on ``method``:

- ``alipay.trade.page.pay`` opens the cashier. As at Alipay, the trade exists only from then on
  (a query before answers ACQ.TRADE_NOT_EXIST); reopening the same order shows the same trade; a
  changed amount or subject is refused (ACQ.CONTEXT_INCONSISTENT, "交易信息被篡改").
- ``alipay.trade.query`` and ``alipay.trade.close`` answer JSON signed the way Alipay signs:
  RSA2 over the exact text of ``"<method>_response"``'s object. Gateway-level errors
  (40001/40002, e.g. a bad request signature) come back unsigned, business errors (40004) signed.
- ``alipay.trade.refund`` refunds a paid trade, in full or in parts, under ``out_request_no``:
  the same one again refunds nothing more (fund_change N, the same refund answered), with another
  amount it answers ACQ.DISCORDANT_REPEAT_REQUEST; more than is left ACQ.REFUND_AMT_NOT_EQUAL_TOTAL;
  a trade not paid or closed ACQ.TRADE_STATUS_ERROR, a finished one ACQ.TRADE_HAS_FINISHED.
  ``alipay.trade.fastpay.refund.query`` answers ``refund_status`` REFUND_SUCCESS for a refund
  made, and no refund fields otherwise. A refund made sends the trade's notification: TRADE_SUCCESS
  with refund_fee (the trade's total refunded), gmt_refund and out_biz_no (= out_request_no) for
  a partial one, TRADE_CLOSED for the one that refunds the rest. Alipay notifies no failure.

Refund knobs: ``refund_outcome`` — "succeed" (made at once, fund_change Y), "succeed_later" or
"fail_later" (accepted with fund_change N, the query shows no refund until ``settle_refund``);
``settle_refund(refund_no, "succeeded" | "failed")`` finishes one (a success sends its
notification; a failure sends none, and the refund sent again answers
ACQ.SELLER_BALANCE_NOT_ENOUGH); ``refund_down`` (the refund call answers 503, nothing changes);
``refund_delay`` (seconds the refund answer waits *after* the refund is applied: a timeout after
the effect). The same on the sandbox page ``/sandbox/refunds``.

The cashier (``/cashier/{trade_no}``) is an HTML page in Alipay's look (``sandbox.pages``): the
order summary, a QR code of the page itself, and two forms, Pay and Leave, usable by a person or a
headless browser. Paying sends the asynchronous notification (form-encoded, signed with Alipay's
key over every field but sign and sign_type) to the order's notify_url and redirects the browser
to return_url with the signed synchronous return parameters. Leaving has no redirect (page pay
has no cancel URL: quit_url is a parameter of wap pay only): the page it shows links back to the
order's return_url, unsigned, for nothing was paid. Past time_expire a trade closes (with a
TRADE_CLOSED notification, as Alipay sends for timeout closes); a merchant close sends none. What
the cashier tells the customer is in Chinese and English, as Alipay's international cashier has it;
what the API answers stays Alipay's Chinese.

Deliberately faithful traps: closing an order whose cashier was never opened answers
ACQ.TRADE_NOT_EXIST and changes nothing, so the customer can still open and pay it until
time_expire. python-alipay-sdk stamps ``timestamp`` in the host's local time (8 h behind China
time on a UTC host), so timestamps are checked for format and a ±1 day window only.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode, urljoin, urlsplit

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
from sandbox.pages import ident, qr_svg, records, render, yuan

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

PAGE_PAY = "alipay.trade.page.pay"
QUERY = "alipay.trade.query"
CLOSE = "alipay.trade.close"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
METHODS = (PAGE_PAY, QUERY, CLOSE, REFUND, REFUND_QUERY)
OPERATIONS = {QUERY: "query", CLOSE: "close", REFUND: "refund", REFUND_QUERY: "refund_query"}  # calls[…]
RefundOutcome = Literal["succeed", "succeed_later", "fail_later"]
REFUND_OUTCOMES: tuple[RefundOutcome, ...] = ("succeed", "succeed_later", "fail_later")
# what a refund that fails later answers when sent again: the error table's "卖家余额不足" — the
# usual reason a refund Alipay accepted cannot be paid out
LATER_FAILURE = ("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")
CLOSED = "交易已关闭 · This transaction has been closed"  # what the cashier shows, in both languages
ERROR_TITLE = "出错了 · Something went wrong"
CASHIER = "我的收银台 · Cashier"
REFUND_COLUMNS = ("out_request_no", "out_trade_no", "金额 · Amount", "状态 · Status", "处理 · Settle")
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
class Refund:
    """One out_request_no of one trade."""

    out_trade_no: str
    out_request_no: str
    fen: int
    reason: str | None
    outcome: RefundOutcome
    status: Literal["pending", "succeeded", "failed"] = "pending"
    gmt_refund: str | None = None  # as notifications write it: yyyy-MM-dd HH:mm:ss.SSS

    @property
    def amount(self) -> str:
        return _yuan(self.fen)


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
    refunds: dict[str, Refund] = field(default_factory=dict)  # by out_request_no

    @property
    def refunded_fen(self) -> int:
        return sum(r.fen for r in self.refunds.values() if r.status == "succeeded")

    def refundable_fen(self) -> int:
        """What is left to refund; refunds in progress hold their amount."""
        return _fen(self.total_amount) - sum(r.fen for r in self.refunds.values() if r.status != "failed")

    def last_refund(self) -> Refund | None:
        made = [r for r in self.refunds.values() if r.status == "succeeded"]
        return max(made, key=lambda r: r.gmt_refund or "") if made else None


@dataclass(frozen=True)
class SentNotification:
    url: str
    form: dict[str, str]
    status_code: int | None  # None: no HTTP answer
    body: str
    acknowledged: bool  # HTTP 200 with the body exactly "success"


def _fen(yuan: str) -> int:
    return int(Decimal(yuan) * 100)


def _yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"


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
        self.refund_outcome: RefundOutcome = "succeed"  # what the next new refund does
        self.refund_down = False  # True: the refund call answers 503 and refunds nothing
        self.refund_delay = 0.0  # seconds the refund answer waits after the refund is applied
        self._offset = 0.0
        self._lock = threading.Lock()  # the app runs in a server thread; tests call in from theirs
        self._app = Starlette(routes=[
            Route("/gateway.do", self._gateway, methods=["GET", "POST"]),
            Route("/cashier/{trade_no}", self._cashier, methods=["GET"]),
            Route("/cashier/{trade_no}/pay", self._pay, methods=["POST"]),
            Route("/cashier/{trade_no}/leave", self._leave, methods=["POST"]),
            Route("/sandbox/refunds", self._refunds_page, methods=["GET"]),
            Route("/sandbox/refunds/outcome", self._refunds_outcome, methods=["POST"]),
            Route("/sandbox/refunds/{out_request_no}/settle", self._refunds_settle, methods=["POST"]),
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

    def key_material(self) -> dict[str, str]:
        return {"app_id": self.app_id, "seller_id": self.seller_id,
                "alipay_private_key": self.alipay_private_key, "alipay_public_key": self.alipay_public_key,
                "app_private_key": self.app_private_key, "app_public_key": self.app_public_key}

    @classmethod
    def restored(cls, material: Mapping[str, str]) -> AlipayEmulator:
        emulator = cls(app_id=material["app_id"],
                       platform_key=(material["alipay_private_key"], material["alipay_public_key"]),
                       app_key=(material["app_private_key"], material["app_public_key"]))
        emulator.seller_id = material["seller_id"]
        return emulator

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
            if method == REFUND and self.refund_down:
                return Response("Service Unavailable", status_code=503, media_type="text/plain")
            self.calls[OPERATIONS[method]] += 1
            handler = {QUERY: self._query, CLOSE: self._close, REFUND: self._refund,
                       REFUND_QUERY: self._refund_query}[method]
            body = await handler(biz)
            answer = self._answer(method, body, signed=True)
        except Refusal as refusal:
            if method == PAGE_PAY:
                return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
            answer = self._answer(method, refusal.body, signed=refusal.business)
        if method == REFUND and self.refund_delay:
            await asyncio.sleep(self.refund_delay)  # whatever the call did is done: only its answer is late
        return answer

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
            raise _business("ACQ.TRADE_HAS_CLOSE", f"{CLOSED} (time_expire has passed)", 409)
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
            raise _business("ACQ.TRADE_HAS_CLOSE", CLOSED, 409)
        if trade.status != "WAIT_BUYER_PAY":
            raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付 · This transaction has been paid already", 409)

    async def _cashier_trade(self, request: Request) -> Trade:
        trade = self._by_trade_no.get(request.path_params["trade_no"])
        if trade is None:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在 · There is no such transaction", 404)
        await self._expire_if_due(trade)
        return trade

    async def _cashier(self, request: Request) -> Response:
        try:
            trade = await self._cashier_trade(request)
            self._refuse_unless_waiting(trade)
        except Refusal as refusal:
            return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
        return HTMLResponse(render(
            "alipay", "alipay_cashier", f"支付宝 · 收银台 Cashier · {trade.subject} (payrelay sandbox)", area=CASHIER,
            subject=html.escape(trade.subject),
            amount=yuan(_fen(trade.total_amount)),
            out_trade_no=html.escape(trade.out_trade_no),
            trade_no=trade.trade_no,
            time_expire=self._china(trade.expires),
            qr=qr_svg(str(request.url), "支付宝付款码 · Alipay payment code"),
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
            return self._message("TRADE_SUCCESS", "付款成功 · Paid", 200, title="付款成功 · Paid")
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
            trade = await self._cashier_trade(request)
        except Refusal as refusal:
            return self._message(refusal.body["sub_code"], refusal.body["sub_msg"], refusal.http_status)
        # Alipay's cashier has no cancel redirect: the trade stays WAIT_BUYER_PAY until time_expire
        return self._message("WAIT_BUYER_PAY", "订单仍可在有效期内支付 · The order can still be paid until it expires",
                             200, title="您已离开收银台 · You left the cashier", back=trade.return_url)

    @staticmethod
    def _message(code: str, message: str, status_code: int, title: str = ERROR_TITLE,
                 back: str | None = None) -> Response:
        """The cashier's page for anything but the cashier itself; ``back``: a link to the merchant
        (only to a web page: a return_url is "HTTP/HTTPS开头字符串")."""
        link = (f'<p class="back"><a id="back" href="{html.escape(back)}">返回商户 · Back to the merchant</a></p>'
                if back and urlsplit(back).scheme in ("http", "https") else "")
        return HTMLResponse(render("alipay", "alipay_message", f"支付宝 · {title} (payrelay sandbox)", area=CASHIER,
                                   title=html.escape(title), code=html.escape(code), message=html.escape(message),
                                   back=link), status_code=status_code)

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

    def _notification(self, trade: Trade, trade_status: str, refund: Refund | None = None) -> dict[str, str]:
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
        refund = refund or trade.last_refund()
        if refund is not None and refund.gmt_refund:
            # refund_fee: "总退款金额" — the trade's total refunded; out_biz_no: "退款通知中返回退款申请的流水号"
            fields |= {"refund_fee": _yuan(trade.refunded_fen), "gmt_refund": refund.gmt_refund,
                       "out_biz_no": refund.out_request_no}
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

    # -- refunds --------------------------------------------------------------------------------
    # alipay.trade.refund's business errors as its documentation lists them (ACQ.TRADE_NOT_EXIST,
    # ACQ.TRADE_STATUS_ERROR "交易状态非法", ACQ.TRADE_HAS_FINISHED "交易已完结",
    # ACQ.REFUND_AMT_NOT_EQUAL_TOTAL "退款金额超限", ACQ.DISCORDANT_REPEAT_REQUEST "不一致的请求",
    # ACQ.SELLER_BALANCE_NOT_ENOUGH "卖家余额不足", ACQ.INVALID_PARAMETER "参数无效").

    async def _refund(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        await self._expire_if_due(trade)
        amount = str(biz.get("refund_amount", ""))
        if not _AMOUNT.fullmatch(amount):
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (refund_amount)")
        fen = _fen(amount)
        if fen <= 0:
            raise _business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效")
        # "如果在退款请求时未传入，则该值为创建交易时的商户订单号"; a partial refund must pass one
        out_request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        if not _OUT_TRADE_NO.fullmatch(out_request_no):
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (out_request_no)")
        if "out_request_no" not in biz and fen != _fen(trade.total_amount):
            raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致")
        reason = biz.get("refund_reason")
        with self._lock:
            refund = trade.refunds.get(out_request_no)
            if refund is not None:  # the same out_request_no again: it refunds nothing more
                if refund.fen != fen:
                    raise _business("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
                if refund.status == "failed":
                    raise _business(*LATER_FAILURE)
                return self._refund_answer(trade, refund, fund_change="N")
            if trade.status == "TRADE_FINISHED":
                raise _business("ACQ.TRADE_HAS_FINISHED", "交易已完结")
            if trade.status != "TRADE_SUCCESS":  # not paid, or closed (unpaid, or refunded in full)
                raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态非法")
            if fen > trade.refundable_fen():
                raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            refund = Refund(trade.out_trade_no, out_request_no, fen, str(reason) if reason else None,
                            self.refund_outcome)
            trade.refunds[out_request_no] = refund
            made = refund.outcome == "succeed" and self._make(trade, refund)
        if made:
            await self._send_refund(trade, refund)
        return self._refund_answer(trade, refund, fund_change="Y" if made else "N")

    def _make(self, trade: Trade, refund: Refund) -> bool:
        """The refund is paid out (under the lock): the trade closes once refunded in full."""
        refund.status = "succeeded"
        refund.gmt_refund = datetime.fromtimestamp(self.now(), CHINA).strftime(TIME_FORMAT + ".%f")[:-3]
        if trade.refunded_fen >= _fen(trade.total_amount):
            trade.status, trade.gmt_close = "TRADE_CLOSED", self._china()
        return True

    async def _send_refund(self, trade: Trade, refund: Refund) -> SentNotification | None:
        return await self._send(trade, self._notification(trade, trade.status, refund))

    def _refund_answer(self, trade: Trade, refund: Refund, *, fund_change: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": trade.buyer_logon_id,
            "buyer_user_id": trade.buyer_id,
            "fund_change": fund_change,
            "refund_fee": _yuan(trade.refunded_fen),  # "退款总金额": the trade's running total
        }
        if refund.gmt_refund:
            body["gmt_refund_pay"] = refund.gmt_refund[:19]
        return body

    async def _refund_query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        out_request_no = biz.get("out_request_no")
        if not isinstance(out_request_no, str) or not out_request_no:
            raise _business("ACQ.INVALID_PARAMETER", "参数无效 (out_request_no)")
        body: dict[str, Any] = {"code": "10000", "msg": "Success"}
        refund = trade.refunds.get(out_request_no)
        # refund_status: "REFUND_SUCCESS 退款处理成功；未返回该字段表示退款请求未收到或者退款失败"
        if refund is not None and refund.status == "succeeded":
            body |= {
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
                "out_request_no": refund.out_request_no,
                "total_amount": trade.total_amount,
                "refund_amount": refund.amount,
                "refund_status": "REFUND_SUCCESS",
            }
            if refund.reason:
                body["refund_reason"] = refund.reason
        return body

    def find_refund(self, refund_no: str) -> Refund:
        """The refund under out_request_no ``refund_no`` (of whichever trade holds it)."""
        found = [trade.refunds[refund_no] for trade in self.trades.values() if refund_no in trade.refunds]
        if len(found) != 1:
            raise KeyError(f"{len(found)} refunds under out_request_no {refund_no!r}")
        return found[0]

    async def settle_refund(self, refund_no: str, outcome: Literal["succeeded", "failed"]) -> dict[str, str] | None:
        """Finish a refund left pending by "succeed_later" / "fail_later". "succeeded" pays it out
        and sends the trade's notification (the signed form sent is returned); "failed" sends
        nothing, as Alipay notifies no failed refund, and the refund sent again answers
        ACQ.SELLER_BALANCE_NOT_ENOUGH."""
        if outcome not in ("succeeded", "failed"):
            raise ValueError(f"{outcome!r}: a refund settles 'succeeded' or 'failed'")
        refund = self.find_refund(refund_no)
        trade = self.trades[refund.out_trade_no]
        with self._lock:
            if refund.status != "pending":
                raise ValueError(f"refund {refund_no!r} is {refund.status} already")
            if outcome == "failed":
                refund.status = "failed"
                return None
            self._make(trade, refund)
        sent = await self._send_refund(trade, refund)
        return sent.form if sent is not None else self.sign_fields(self._notification(trade, trade.status, refund))

    async def refund(self, out_trade_no: str) -> dict[str, str]:
        """Refund what is left of a paid trade at once, as the merchant's console would (the trade
        closes, with its notification; the signed form is returned)."""
        trade = self.trades.get(out_trade_no)
        with self._lock:
            if trade is None or trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise ValueError(f"trade {out_trade_no!r} is not paid; only a paid trade can be refunded")
            refund = Refund(out_trade_no, "console_" + secrets.token_hex(8), trade.refundable_fen(), None, "succeed")
            trade.refunds[refund.out_request_no] = refund
            self._make(trade, refund)
        form = self.sign_fields(self._notification(trade, trade.status, refund))
        if trade.notify_url or self.webhook_url:
            await self._deliver(trade.notify_url or self.webhook_url, form, raise_errors=False)
        return form

    # -- the sandbox page: the refund knobs for the demo (plain forms, like the cashier) --------

    async def _refunds_page(self, request: Request) -> Response:
        rows = []
        for trade in list(self.trades.values()):
            for refund in list(trade.refunds.values()):
                settle = "".join(
                    f'<form method="post" action="/sandbox/refunds/{html.escape(refund.out_request_no)}/settle">'
                    f'<input type="hidden" name="outcome" value="{choice}"><button>{choice}</button></form>'
                    for choice in ("succeeded", "failed")
                ) if refund.status == "pending" else ""
                rows.append(("", [ident(refund.out_request_no), ident(trade.out_trade_no), yuan(refund.fen),
                                  refund.status, settle]))
        options = "".join(f'<option{" selected" if o == self.refund_outcome else ""}>{o}</option>'
                          for o in REFUND_OUTCOMES)
        return HTMLResponse(render("alipay", "alipay_refunds", "支付宝 · 退款 Refunds (payrelay sandbox)",
                                   area="商家退款 · Merchant refunds",
                                   options=options, outcome=self.refund_outcome,
                                   refunds=records(REFUND_COLUMNS, rows, "暂无退款 · No refunds yet")))

    async def _refunds_outcome(self, request: Request) -> Response:
        async with request.form() as form:
            outcome = form.get("outcome")
        if outcome not in REFUND_OUTCOMES:
            return self._message("invalid-outcome", f"outcome must be one of {', '.join(REFUND_OUTCOMES)}", 400)
        self.refund_outcome = outcome  # type: ignore[assignment]
        return RedirectResponse("/sandbox/refunds", status_code=303)

    async def _refunds_settle(self, request: Request) -> Response:
        async with request.form() as form:
            outcome = form.get("outcome")
        if outcome not in ("succeeded", "failed"):
            return self._message("invalid-outcome", "outcome must be succeeded or failed", 400)
        try:
            await self.settle_refund(request.path_params["out_request_no"], outcome)  # type: ignore[arg-type]
        except KeyError:
            return self._message("ACQ.REFUND_NOT_EXIST", "no such refund", 404)
        except ValueError as exc:
            return self._message("refund-settled", str(exc), 409)
        return RedirectResponse("/sandbox/refunds", status_code=303)

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
