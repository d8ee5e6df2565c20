"""Everything shaped like WeChat Pay v3 Native: the order and refund bodies, the trade_state and
refund status tables, answers.

No I/O here: ``adapter.py`` does the HTTP and the cryptography and hands the texts to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from adapters import wire
from adapters.base import (
    CreateRequest,
    GatewayState,
    Money,
    RefundRequest,
    RefundState,
    RefundStatus,
    Status,
    map_state,
)
from adapters.errors import GatewayError, GatewayProtocolError, GatewayRefused, GatewayUnavailable
from adapters.text import cut_utf8

GATEWAY = "WeChat Pay"
# WeChat's `description` is string[1,127] and its docs do not settle bytes or characters: 127 bytes
# of UTF-8 fit both readings (127 characters of Chinese would be 381 bytes).
DESCRIPTION_LIMIT = 127
CHINA = timezone(timedelta(hours=8))
ORDER_NOT_EXIST = "ORDER_NOT_EXIST"
ORDERPAID = "ORDERPAID"
ORDER_CLOSED = "ORDER_CLOSED"
NATIVE_PATH = "/v3/pay/transactions/native"
REFUND_PATH = "/v3/refund/domestic/refunds"  # wechatpayv3 transaction.refund / query_refund's path
RESOURCE_NOT_EXISTS = "RESOURCE_NOT_EXISTS"
# 申请退款 (pay.weixin.qq.com/doc/v3/merchant/4012552567): reason is string(80), bytes or characters
# not settled, like description's: 80 bytes of UTF-8 fit both readings.
REASON_LIMIT = 80

# trade_state → ours, keyed by WeChat's exact spelling (DESIGN.md's table).
TRADE_STATES: Mapping[str, Status] = MappingProxyType(
    {
        "NOTPAY": Status.WAITING,
        "USERPAYING": Status.PROCESSING,
        "SUCCESS": Status.SUCCEEDED,
        "REFUND": Status.SUCCEEDED,  # refunds start from a paid order: it was paid
        "PAYERROR": Status.FAILED,
        "CLOSED": Status.CLOSED,
        "REVOKED": Status.CLOSED,
    }
)

# Codes WeChat answers with a 4xx that mean "try again later", not "no". For a refund a 429 is "not
# a clear 'not accepted': query first, or retry under the same refund id" (WeChat's HTTP status
# table, pay.weixin.qq.com/wiki/doc/apiv3/Share/error_code.shtml): an unknown outcome, like a 5xx.
_RETRYABLE_CODES = frozenset({"FREQUENCY_LIMITED", "SYSTEM_ERROR", "SYSTEMERROR", "BANKERROR"})


# A refund's `status` (query, refund answer) or `refund_status` (notification) → ours, keyed by
# WeChat's exact spelling. The four states are WeChat's own enum (wechatpay-go
# services/refunddomestic/models.go `Status`, generated from the 境内普通商户退款 API spec).
REFUND_STATES: Mapping[str, RefundStatus] = MappingProxyType(
    {
        "SUCCESS": RefundStatus.SUCCEEDED,  # 退款成功
        "PROCESSING": RefundStatus.PROCESSING,  # 退款处理中
        "CLOSED": RefundStatus.FAILED,  # 退款关闭: nothing was refunded
        "ABNORMAL": RefundStatus.FAILED,  # 退款异常: the money left us but the customer's account refused it
    }
)
# What an operator does about a failed refund, in the words payrelay shows them.
REFUND_FAILURES: Mapping[str, str] = MappingProxyType(
    {
        "ABNORMAL": (
            "WeChat Pay could not pay the refund into the customer's account (card cancelled or frozen, "
            "or account closed): refund them by another channel, or have WeChat Pay send it to another "
            "account or back to the merchant account (merchant platform pay.weixin.qq.com, 交易中心 → "
            "退款管理, or the apply-abnormal-refund API)"
        ),
        "CLOSED": "WeChat Pay closed the refund without refunding anything: refund again if it is still due",
    }
)
# Codes WeChat answers a refund with, and what a person can do about them (the refund API's error
# table: wechatpay-go services/refunddomestic/api_refunds.go, from WeChat's spec).
REFUND_ADVICE: Mapping[str, str] = MappingProxyType(
    {
        "NOT_ENOUGH": "the merchant account's available balance cannot cover the refund: top it up, then "
        "send the refund again under the same refund id",
        "USER_ACCOUNT_ABNORMAL": "the customer's WeChat account is closed: refund them by another channel",
        "INVALID_REQUEST": "WeChat Pay's rules refuse this refund (more than the order has left to refund, "
        "or this refund id already used with other content)",
        "RESOURCE_NOT_EXISTS": "WeChat Pay holds no paid order under this out_trade_no (unpaid orders "
        "cannot be refunded)",
        "NO_AUTH": "this merchant has no refund permission for the order: check the merchant platform",
        "PARAM_ERROR": "WeChat Pay rejected a field of the refund request",
        "MCH_NOT_EXISTS": "WeChat Pay does not know the merchant id: check PAYRELAY_WECHAT_MCHID",
    }
)


def trade_status(trade_state: str) -> Status:
    return map_state(TRADE_STATES, trade_state, GATEWAY)


def rfc3339_china(unix: int) -> str:
    """1795316096 → '2026-11-21T10:34:56+08:00' (WeChat's time_expire format)."""
    return datetime.fromtimestamp(unix, CHINA).isoformat(timespec="seconds")


def description(text: str, payment_id: str) -> str:
    """The description cut to fit 127 bytes; an empty one gets a neutral one (WeChat needs one)."""
    return cut_utf8(text.strip() or f"Payment {payment_id}", DESCRIPTION_LIMIT)


def native_order(request: CreateRequest, notify_url: str) -> dict[str, Any]:
    """The body of ``POST /v3/pay/transactions/native`` for one order, but appid and mchid (the
    merchant's, from the settings)."""
    return {
        "description": description(request.description, request.payment_id),
        "out_trade_no": request.payment_id,
        "amount": {"total": request.amount.minor, "currency": request.amount.currency},
        "time_expire": rfc3339_china(request.expires_at),
        "notify_url": notify_url,
    }


def refund_body(request: RefundRequest, notify_url: str) -> dict[str, Any]:
    """The body of ``POST /v3/refund/domestic/refunds``, as wechatpayv3's ``refund`` builds it.
    ``notify_url`` is the payments' one: refund notifications come to the same webhook."""
    body: dict[str, Any] = {
        "out_trade_no": request.payment.payment_id,
        "out_refund_no": request.refund_no,
        "notify_url": notify_url,
        "amount": {
            "refund": request.amount.minor,
            "total": request.payment.amount.minor,
            "currency": request.amount.currency,
        },
    }
    reason = cut_utf8((request.reason or "").strip(), REASON_LIMIT)
    if reason:  # string[1,80]: an empty one is left out
        body["reason"] = reason
    return body


def refund_path(out_refund_no: str) -> str:
    return f"{REFUND_PATH}/{quote(out_refund_no, safe='')}"


def refund_state(refund_no: str, data: Mapping[str, Any], state_field: str = "status") -> RefundState:
    """A refund object (refund answer, query answer: ``status``; decrypted notification:
    ``refund_status``) → our view of it."""
    state = _state_of(data, ("out_refund_no", refund_no), state_field, "refund")
    status = map_state(REFUND_STATES, state, GATEWAY, "refund state")
    return RefundState(
        refund_no=refund_no,
        status=status,
        gateway_state=state,
        gateway_reference=_text(data, "refund_id"),
        amount=_money(data, "refund"),
        failure_reason=REFUND_FAILURES.get(state, state) if status is RefundStatus.FAILED else None,
        payment_id=_text(data, "out_trade_no"),
    )


def refunded(request: RefundRequest, text: str | bytes) -> RefundState:
    """The refund call's answer (the refund object) → our view, checked to be about this payment."""
    state = refund_state(request.refund_no, _object(text))
    if state.payment_id not in (None, request.payment.payment_id):
        raise GatewayProtocolError(f"{GATEWAY} answered a refund of another order")
    return state


def refund_queried(refund_no: str, text: str | bytes) -> RefundState:
    return refund_state(refund_no, _object(text))


def query_path(out_trade_no: str, mchid: str) -> str:
    return f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?mchid={quote(mchid, safe='')}"


def close_path(out_trade_no: str) -> str:
    """Its body is ``{"mchid": …}``; WeChat answers 204 without content."""
    return f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"


def _object(text: str | bytes) -> dict[str, Any]:
    try:
        data = wire.loads(text)
    except ValueError:
        raise GatewayProtocolError(f"{GATEWAY} answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise GatewayProtocolError(f"{GATEWAY} answered JSON that is not an object")
    return data


def _state_of(data: Mapping[str, Any], ours: tuple[str, str], field: str, what: str) -> str:
    """``data[field]``, once ``data`` is about ours (``ours``: our id's field and value)."""
    if data.get(ours[0]) != ours[1]:
        raise GatewayProtocolError(f"{GATEWAY} answered about another {what}")
    state = data.get(field)
    if not isinstance(state, str):
        raise GatewayProtocolError(f"{GATEWAY} answered a {what} without {field}")
    return state


def _money(data: Mapping[str, Any], field: str) -> Money | None:
    """``amount.<field>`` (fen) in ``amount.currency`` (or ``payer_currency``; CNY, the only one,
    when neither is given: refund notifications carry none)."""
    amount = data.get("amount")
    if not isinstance(amount, Mapping) or not isinstance(amount.get(field), int):
        return None
    return Money(amount[field], str(amount.get("currency") or amount.get("payer_currency") or "CNY"))


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return str(value) if value else None


def code_url(text: str | bytes) -> str:
    url = _object(text).get("code_url")
    if not isinstance(url, str) or not url.startswith("weixin://"):
        raise GatewayProtocolError(f"{GATEWAY} answered an order without a weixin:// code_url")
    return url


def transaction_state(payment_id: str, data: Mapping[str, Any]) -> GatewayState:
    """A transaction object (query answer or decrypted callback) → our view of it."""
    state = _state_of(data, ("out_trade_no", payment_id), "trade_state", "order")
    status = trade_status(state)
    return GatewayState(
        payment_id=payment_id,
        status=status,
        gateway_state=state,
        gateway_reference=_text(data, "transaction_id"),
        amount=_money(data, "total"),
        failure_reason=str(data.get("trade_state_desc") or state) if status is Status.FAILED else None,
    )


def queried(payment_id: str, text: str | bytes) -> GatewayState:
    return transaction_state(payment_id, _object(text))


def not_found(payment_id: str) -> GatewayState:
    """WeChat holds no order under this number: nobody can pay it there."""
    return GatewayState(payment_id=payment_id, status=None, gateway_state=ORDER_NOT_EXIST)


def error_code(body: str | bytes) -> tuple[str | None, str]:
    """(code, message) of an error answer ``{"code", "message"}``; (None, text) otherwise."""
    try:
        data = wire.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        return data["code"], str(data.get("message") or data["code"])
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return None, text[:200]


def failure(operation: str, status: int, body: str | bytes, advice: Mapping[str, str] | None = None) -> GatewayError:
    """The exception for a non-2xx answer: 5xx and rate limits retry, other 4xx are a refusal.
    ``advice`` adds what a person can do about a code (WeChat's own messages are Chinese)."""
    code, message = error_code(body)
    text = f"{GATEWAY} {operation}: HTTP {status} {code or ''} {message}".replace("  ", " ")
    if advice and code is not None and code in advice:
        text = f"{text}: {advice[code]}"
    if status >= 500 or status == 429 or code in _RETRYABLE_CODES:
        return GatewayUnavailable(text, code=code)
    if 400 <= status < 500:
        return GatewayRefused(text, code=code)
    return GatewayProtocolError(text, code=code)
