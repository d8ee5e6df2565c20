"""Everything shaped like WeChat Pay v3 Native: the order body, the trade_state table, answers.

No I/O here: ``adapter.py`` does the HTTP and the cryptography and hands the texts to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from adapters import wire
from adapters.base import CreateRequest, GatewayState, Money, Status, map_state
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

# Codes WeChat answers with a 4xx that mean "try again later", not "no".
_RETRYABLE_CODES = frozenset({"FREQUENCY_LIMITED", "SYSTEM_ERROR", "SYSTEMERROR", "BANKERROR"})


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


def code_url(text: str | bytes) -> str:
    url = _object(text).get("code_url")
    if not isinstance(url, str) or not url.startswith("weixin://"):
        raise GatewayProtocolError(f"{GATEWAY} answered an order without a weixin:// code_url")
    return url


def transaction_state(payment_id: str, data: Mapping[str, Any]) -> GatewayState:
    """A transaction object (query answer or decrypted callback) → our view of it."""
    if data.get("out_trade_no") != payment_id:
        raise GatewayProtocolError(f"{GATEWAY} answered about another order")
    state = data.get("trade_state")
    if not isinstance(state, str):
        raise GatewayProtocolError(f"{GATEWAY} answered a transaction without trade_state")
    status = trade_status(state)
    amount = data.get("amount")
    money = None
    if isinstance(amount, Mapping) and isinstance(amount.get("total"), int):
        currency = amount.get("currency") or amount.get("payer_currency") or "CNY"
        money = Money(amount["total"], str(currency))
    reference = data.get("transaction_id")
    return GatewayState(
        payment_id=payment_id,
        status=status,
        gateway_state=state,
        gateway_reference=str(reference) if reference else None,
        amount=money,
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


def failure(operation: str, status: int, body: str | bytes) -> GatewayError:
    """The exception for a non-2xx answer: 5xx and rate limits retry, other 4xx are a refusal."""
    code, message = error_code(body)
    text = f"{GATEWAY} {operation}: HTTP {status} {code or ''} {message}".replace("  ", " ")
    if status >= 500 or status == 429 or code in _RETRYABLE_CODES:
        return GatewayUnavailable(text, code=code)
    if 400 <= status < 500:
        return GatewayRefused(text, code=code)
    return GatewayProtocolError(text, code=code)
