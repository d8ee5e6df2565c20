"""Everything shaped like Alipay's API: page-pay parameters, the trade-status table, answers of
``alipay.trade.query`` / ``alipay.trade.close`` (and where in them Alipay's signature lies),
refunds (``alipay.trade.refund``, ``alipay.trade.fastpay.refund.query``, their tables and error
codes), error codes and asynchronous notifications.

No I/O here; ``adapters.alipay.adapter`` does the calls and the signature checks.
Verified against python-alipay-sdk 3.4.0 and Alipay's open-platform documentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from adapters import wire
from adapters.base import (
    CreateRequest,
    GatewayState,
    Money,
    RefundRequest,
    RefundState,
    RefundStatus,
    Status,
    WebhookEvent,
    map_state,
)
from adapters.errors import (
    GatewayError,
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnavailable,
    UnsupportedOperation,
    WebhookMismatch,
    WebhookPayloadError,
)
from adapters.money import AmountError, to_major, to_minor
from adapters.text import cut_utf16

GATEWAY = "Alipay"
CURRENCY = "CNY"
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # every Alipay time is China time, no DST
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUBJECT_LIMIT = 256  # characters as Java counts them (UTF-16 units), not bytes
MIN_FEN, MAX_FEN = 1, 100_000_000_00  # 0.01 … 100,000,000.00 yuan
# Alipay's timeouts are minute-granular (timeout_express: 1m … 15d). A time_expire seconds away
# would race the customer at the cashier; payrelay closes the trade at its own expiry anyway, so
# time_expire is only the backstop for when that close cannot get through.
EXPIRE_MIN_LEAD = 60
EXPIRE_MAX_LEAD = 15 * 86400

PAGE_PAY = "alipay.trade.page.pay"
QUERY = "alipay.trade.query"
CLOSE = "alipay.trade.close"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
PAGE_PAY_PRODUCT = "FAST_INSTANT_TRADE_PAY"

STATUS: Mapping[str, Status] = MappingProxyType({
    "WAIT_BUYER_PAY": Status.WAITING,  # trade created at the cashier, not paid
    "TRADE_SUCCESS": Status.SUCCEEDED,  # paid; refundable
    "TRADE_FINISHED": Status.SUCCEEDED,  # paid; refund window over
    "TRADE_CLOSED": Status.CLOSED,  # unpaid and closed/expired, or fully refunded (never a move back)
})

SUCCESS_CODE = "10000"
BUSINESS_FAILED = "40004"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"  # page pay: the customer never opened the cashier
TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"  # close: the trade is paid (or closed) already
UNAVAILABLE_CODES = frozenset({"20000"})  # "Service Currently Unavailable"
UNAVAILABLE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error"})


def status_of(trade_status: str) -> Status:
    return map_state(STATUS, trade_status, GATEWAY)


def china_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, CHINA).strftime(TIME_FORMAT)


def time_expire(expires_at: int, now: float) -> str:
    """``expires_at`` (unix seconds) as Alipay's time_expire, clamped to what Alipay takes."""
    clamped = min(max(expires_at, int(now) + EXPIRE_MIN_LEAD), int(now) + EXPIRE_MAX_LEAD)
    return china_time(clamped)


def subject(description: str, payment_id: str) -> str:
    """The order title the cashier shows: the description cut to 256 UTF-16 units, which fits
    Alipay's limit whether it counts those or code points; never empty."""
    return cut_utf16(description.strip() or f"Payment {payment_id}", SUBJECT_LIMIT)


def page_pay_params(request: CreateRequest, notify_url: str, now: float) -> dict[str, str]:
    """Keyword arguments of ``AliPay.api_alipay_trade_page_pay`` for one payment."""
    if not request.online:
        raise UnsupportedOperation("Alipay page pay has no off-session charge", param="onlineScenario")
    if request.save_method:
        raise UnsupportedOperation("Alipay page pay cannot save a payment method",
                                   param="supportOfflineScenario")
    if request.amount.currency != CURRENCY:
        raise UnsupportedOperation(f"Alipay page pay takes {CURRENCY} only, not {request.amount.currency}",
                                   param="currency")
    if not MIN_FEN <= request.amount.minor <= MAX_FEN:
        raise UnsupportedOperation("Alipay takes 0.01 to 100000000.00 CNY", param="amount")
    return {
        "subject": subject(request.description, request.payment_id),
        "out_trade_no": request.payment_id,
        "total_amount": to_major(request.amount.minor, CURRENCY),
        "return_url": request.complete_url,
        "notify_url": notify_url,
        "time_expire": time_expire(request.expires_at, now),
    }


def page_pay_body(params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``page_pay_params`` as alipay.trade.page.pay's (biz_content, other request parameters),
    in the order python-alipay-sdk's ``api_alipay_trade_page_pay`` hands them to ``build_body``."""
    biz = {name: params[name] for name in ("subject", "out_trade_no", "total_amount")}
    biz |= {"product_code": PAGE_PAY_PRODUCT, "time_expire": params["time_expire"]}
    return biz, {"return_url": params["return_url"], "notify_url": params["notify_url"]}


def _amount(value: object) -> Money:
    if not isinstance(value, str):
        raise AmountError("missing")
    return Money(to_minor(value, CURRENCY), CURRENCY)


def _answer_amount(answer: Mapping[str, Any], name: str, operation: str) -> Money:
    try:
        return _amount(answer.get(name))
    except AmountError as exc:
        raise GatewayProtocolError(f"Alipay's {operation} answer has a bad {name}: {exc}") from exc


# -- synchronous answers ----------------------------------------------------------------------------


def signed_answer(operation: str, method: str, raw: str) -> tuple[str, str, dict[str, Any]]:
    """(the text Alipay signed, its signature, the answer object) of a synchronous answer to
    ``method``: Alipay signs the exact JSON text of ``"<method>_response"``'s value. An answer
    without a signature (Alipay leaves its gateway-level errors unsigned) raises what it says;
    anything else unusable raises GatewayProtocolError. The object is trusted only once the
    caller has verified the signature."""
    unreadable = GatewayProtocolError(f"Alipay answered the {operation} with something unreadable")
    try:
        document = wire.loads(raw)
    except ValueError:
        raise unreadable from None
    if not isinstance(document, dict):
        raise unreadable
    if "sign" not in document or "error_response" in document:
        raise unsigned_error(operation, raw)
    key = method.replace(".", "_") + "_response"
    sign = document["sign"]
    start = raw.find("{", raw.find(f'"{key}"'))
    if not isinstance(sign, str) or key not in document or start < 0:
        raise unreadable
    try:
        answer, end = wire.value_at(raw, start)
    except ValueError:
        raise unreadable from None
    if not isinstance(answer, dict):
        raise unreadable
    return raw[start:end], sign, answer


def trade_state(payment_id: str, answer: Mapping[str, Any]) -> GatewayState:
    """A signature-checked ``alipay_trade_query_response`` as our state; errors raise GatewayError."""
    if answer.get("code") != SUCCESS_CODE:
        if answer.get("code") == BUSINESS_FAILED and answer.get("sub_code") == TRADE_NOT_EXIST:
            return GatewayState(payment_id, None, TRADE_NOT_EXIST)
        raise business_error("query", answer)
    _same_trade(payment_id, answer)
    trade_status = answer.get("trade_status")
    if not isinstance(trade_status, str):
        raise GatewayProtocolError("Alipay's query answer has no trade_status")
    amount = _answer_amount(answer, "total_amount", "query")
    return GatewayState(
        payment_id=payment_id,
        status=status_of(trade_status),
        gateway_state=trade_status,
        gateway_reference=_text(answer.get("trade_no")),
        amount=amount,
    )


def close_outcome(payment_id: str, answer: Mapping[str, Any]) -> GatewayState | None:
    """A signature-checked ``alipay_trade_close_response``: the state after closing, or None when the
    trade's status forbids closing (paid or closed already: the caller asks what it is)."""
    code, sub_code = answer.get("code"), answer.get("sub_code")
    if code == SUCCESS_CODE:
        _same_trade(payment_id, answer)
        return GatewayState(payment_id, Status.CLOSED, "TRADE_CLOSED", _text(answer.get("trade_no")))
    if code == BUSINESS_FAILED and sub_code == TRADE_NOT_EXIST:
        return GatewayState(payment_id, None, TRADE_NOT_EXIST)
    if code == BUSINESS_FAILED and sub_code == TRADE_STATUS_ERROR:
        return None
    raise business_error("close", answer)


def business_error(operation: str, answer: Mapping[str, Any]) -> GatewayError:
    """An Alipay error answer (``code`` other than 10000) as one of our errors."""
    code = str(answer.get("code") or "?")
    sub_code = str(answer.get("sub_code") or "")
    detail = " ".join(str(part) for part in (answer.get("msg"), answer.get("sub_msg")) if part)
    message = f"Alipay refused the {operation}: {code} {sub_code} {detail}".replace("  ", " ").strip()
    if code in UNAVAILABLE_CODES or sub_code in UNAVAILABLE_SUB_CODES:
        return GatewayUnavailable(message, code=sub_code or code)
    return GatewayRefused(message, code=sub_code or code)


def unsigned_error(operation: str, raw: str) -> GatewayError:
    """An answer that carries no signature (Alipay leaves its gateway-level errors, e.g.
    isv.invalid-signature, unsigned). Read only to say why; never trusted as state."""
    try:
        document = wire.loads(raw[raw.index("{"):])
        answer = next(value for value in document.values() if isinstance(value, dict))
    except (ValueError, StopIteration, AttributeError):
        return GatewayProtocolError(f"Alipay answered the {operation} with something unreadable")
    if answer.get("code") == SUCCESS_CODE:
        return GatewayProtocolError(f"Alipay's answer to the {operation} is not signed")
    return business_error(operation, answer)


def _same_trade(payment_id: str, answer: Mapping[str, Any]) -> None:
    out_trade_no = answer.get("out_trade_no")
    if out_trade_no is not None and out_trade_no != payment_id:
        raise GatewayProtocolError(f"Alipay answered about trade {out_trade_no!r}, not {payment_id!r}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- asynchronous notifications -------------------------------------------------------------------


def signed_content(fields: Mapping[str, str]) -> str:
    """What Alipay signs in a notification: every field but sign and sign_type, sorted by name,
    as raw ``k=v`` joined by ``&`` (blank values included, as python-alipay-sdk's verify does)."""
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type"))


def notification_event(fields: Mapping[str, str], app_id: str, seller_id: str | None) -> WebhookEvent:
    """A notification whose signature was verified, as an event; unusable content raises
    WebhookPayloadError, one about another app or merchant (Alipay asks merchants to check
    ``app_id`` and, where they know it, ``seller_id``) WebhookMismatch."""
    if fields.get("app_id") != app_id:
        raise WebhookMismatch("notification is for another app_id")
    if seller_id is not None and fields.get("seller_id") != seller_id:
        raise WebhookMismatch("notification is for another seller_id (PAYRELAY_ALIPAY_SELLER_ID)")
    payment_id = fields.get("out_trade_no")
    if not payment_id:
        raise WebhookPayloadError("notification has no out_trade_no")
    trade_status = fields.get("trade_status", "")
    try:
        status = status_of(trade_status)
    except GatewayProtocolError as exc:
        raise WebhookPayloadError(f"notification has an unknown trade_status {trade_status!r}") from exc
    try:
        amount = _amount(fields.get("total_amount"))
    except AmountError as exc:
        raise WebhookPayloadError(f"notification has a bad total_amount: {exc}") from exc
    refund = notified_refund(fields, payment_id, trade_status)
    event_id = fields.get("notify_id") or "{}:{}:{}".format(
        payment_id, trade_status,
        f"{refund.refund_no}:{fields.get('gmt_refund')}" if refund is not None
        else fields.get("gmt_payment") or fields.get("gmt_close") or "",
    )
    state = GatewayState(
        payment_id=payment_id,
        status=status,
        gateway_state=trade_status,
        gateway_reference=fields.get("trade_no") or None,
        amount=amount,
    )
    return WebhookEvent(event_id=event_id, state=state, refund=refund)


# -- refunds ----------------------------------------------------------------------------------------
# alipay.trade.refund answers synchronously: 10000 with fund_change, or a business error (nothing
# refunded). alipay.trade.fastpay.refund.query tells whether one out_request_no was refunded.
# Sources: Alipay open platform, alipay.trade.refund and alipay.trade.fastpay.refund.query
# (docs.open.alipay.com/api_1/…), and the asynchronous-notification parameters of page pay.

# fund_change of a 10000 answer to alipay.trade.refund: "本次退款是否发生了资金变化". Y: this call
# moved the money, the refund is made. N: this call moved nothing — the out_request_no was refunded
# by an earlier call, or the refund is not done yet; only the refund query can tell which.
FUND_CHANGE: Mapping[str, RefundStatus] = MappingProxyType({
    "Y": RefundStatus.SUCCEEDED,
    "N": RefundStatus.PROCESSING,  # the adapter asks the refund query at once
})
# refund_status of alipay.trade.fastpay.refund.query, its one documented value; an answer without
# it means "退款请求未收到或者退款失败" (not received, or failed): no refund under the out_request_no.
REFUND_STATUS: Mapping[str, RefundStatus] = MappingProxyType({
    "REFUND_SUCCESS": RefundStatus.SUCCEEDED,
})
# trade_status of a notification that carries refund fields (out_biz_no, refund_fee, gmt_refund):
# Alipay notifies a refund once it is made — a partial one with the trade still TRADE_SUCCESS, the
# one that refunds the rest with TRADE_CLOSED ("支付完成后全额退款"). It sends none for a failure.
REFUND_NOTIFIED: Mapping[str, RefundStatus] = MappingProxyType({
    "TRADE_SUCCESS": RefundStatus.SUCCEEDED,
    "TRADE_CLOSED": RefundStatus.SUCCEEDED,
})
REFUND_REASON_LIMIT = 256  # refund_reason: String(256)
# alipay.trade.refund's business errors (sub_code) → what a person can do about it. From the API's
# error table; ACQ.SYSTEM_ERROR ("use the same parameters to try again") is GatewayUnavailable.
REFUND_REMEDIES: Mapping[str, str] = MappingProxyType({
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": "the merchant's Alipay balance cannot cover the refund: top it up, "
                                     "then send the refund again under the same refund id",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "the amount is more than the payment has left to refund",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": "the refund amount is invalid (more than is left to refund?)",
    "ACQ.REASON_TRADE_BEEN_FREEZEN": "Alipay has frozen this trade: ask Alipay support about it",
    "ACQ.TRADE_NOT_EXIST": "Alipay holds no trade for this payment",
    "ACQ.TRADE_HAS_FINISHED": "the trade is finished (TRADE_FINISHED: the refund period of the merchant's "
                              "contract is over): refund outside Alipay",
    "ACQ.TRADE_STATUS_ERROR": "the trade cannot be refunded in its state (not paid, or refunded in full)",
    "ACQ.DISCORDANT_REPEAT_REQUEST": "this refund id was used at Alipay with another amount: send the "
                                     "same amount, or refund under a new id",
    "ACQ.TRADE_NOT_ALLOW_REFUND": "Alipay does not allow refunds of this trade (check the merchant's "
                                  "contract)",
    "ACQ.INVALID_PARAMETER": "Alipay found a parameter invalid",
})


def refund_biz(request: RefundRequest) -> dict[str, str]:
    """alipay.trade.refund's biz_content for one refund, as python-alipay-sdk's
    ``api_alipay_trade_refund(refund_amount, out_trade_no=…, out_request_no=…, refund_reason=…)``
    builds it."""
    if request.amount.currency != CURRENCY:
        raise UnsupportedOperation(f"Alipay refunds {CURRENCY} only, not {request.amount.currency}",
                                   param="currency")
    if not MIN_FEN <= request.amount.minor <= MAX_FEN:
        raise UnsupportedOperation("Alipay refunds 0.01 to 100000000.00 CNY", param="amount")
    biz = {
        "refund_amount": to_major(request.amount.minor, CURRENCY),
        # out_request_no is what makes the call idempotent, and partial refunds need it
        "out_request_no": request.refund_no,
        "out_trade_no": request.payment.payment_id,
    }
    reason = (request.reason or "").strip()
    if reason:
        biz["refund_reason"] = cut_utf16(reason, REFUND_REASON_LIMIT)
    return biz


def refund_answer(request: RefundRequest, answer: Mapping[str, Any]) -> RefundState:
    """A signature-checked ``alipay_trade_refund_response``: the refund made (fund_change Y) or
    PROCESSING (N: the caller asks the refund query); a business error raises GatewayRefused with
    Alipay's sub_code, ACQ.SYSTEM_ERROR GatewayUnavailable."""
    if answer.get("code") != SUCCESS_CODE:
        raise refund_refusal(answer)
    _same_trade(request.payment.payment_id, answer)
    fund_change = answer.get("fund_change")
    if not isinstance(fund_change, str):
        raise GatewayProtocolError("Alipay's refund answer has no fund_change")
    return RefundState(
        refund_no=request.refund_no,
        status=map_state(FUND_CHANGE, fund_change, GATEWAY, "refund state"),
        gateway_state=f"fund_change={fund_change}",
        # Alipay refunds exactly refund_amount or refuses; the answer's refund_fee is the trade's
        # running total of refunds, not this one
        amount=request.amount,
        payment_id=request.payment.payment_id,
    )


def refund_query_state(request: RefundRequest, answer: Mapping[str, Any]) -> RefundState | None:
    """A signature-checked ``alipay_trade_fastpay_refund_query_response``: the refund, or None when
    Alipay holds none under the out_request_no (no refund fields, or no such trade)."""
    if answer.get("code") != SUCCESS_CODE:
        if answer.get("code") == BUSINESS_FAILED and answer.get("sub_code") == TRADE_NOT_EXIST:
            return None
        raise business_error("refund query", answer)
    _same_trade(request.payment.payment_id, answer)
    refund_status = answer.get("refund_status")
    if refund_status is None and answer.get("refund_amount") is None:
        return None
    out_request_no = answer.get("out_request_no")
    if out_request_no is not None and out_request_no != request.refund_no:
        raise GatewayProtocolError(f"Alipay answered about refund {out_request_no!r}, not {request.refund_no!r}")
    if not isinstance(refund_status, str):
        raise GatewayProtocolError("Alipay's refund query answer has a refund_amount but no refund_status")
    amount = _answer_amount(answer, "refund_amount", "refund query")
    return RefundState(
        refund_no=request.refund_no,
        status=map_state(REFUND_STATUS, refund_status, GATEWAY, "refund state"),
        gateway_state=refund_status,
        amount=amount,
        payment_id=request.payment.payment_id,
    )


def refund_refusal(answer: Mapping[str, Any]) -> GatewayError:
    """An error answer to alipay.trade.refund, with what a person can do about it."""
    error = business_error("refund", answer)
    remedy = REFUND_REMEDIES.get(str(answer.get("sub_code") or ""))
    if remedy is None or not isinstance(error, GatewayRefused):
        return error
    sub_msg = answer.get("sub_msg")
    said = f"{error.code} {sub_msg}" if sub_msg else str(error.code)
    return GatewayRefused(f"Alipay refused the refund: {remedy} ({said})", code=error.code)


def notified_refund(fields: Mapping[str, str], payment_id: str, trade_status: str) -> RefundState | None:
    """The refund a verified notification reports, or None when it carries no refund fields (or
    no out_biz_no: payrelay sends one with every refund, so a refund without is not ours). The
    notification's refund_fee is the trade's total refunded ("总退款金额"), not this refund's
    amount, so ``amount`` stays None."""
    refund_no = fields.get("out_biz_no")
    if not refund_no or not (fields.get("refund_fee") or fields.get("gmt_refund")):
        return None
    try:
        status = map_state(REFUND_NOTIFIED, trade_status, GATEWAY, "refund state")
    except GatewayProtocolError as exc:
        raise WebhookPayloadError(f"refund notification with trade_status {trade_status!r}") from exc
    return RefundState(refund_no=refund_no, status=status, gateway_state=trade_status, payment_id=payment_id)
