"""The transaction request: every field rule of DESIGN.md, each failure naming its field."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from adapters import money
from adapters.base import Adapter
from adapters.registry import GATEWAY_TYPES
from service import errors
from service.listing import FLAGS, ListQuery
from service.states import PUBLIC, PaymentState

FIELDS = frozenset({
    "transactionId", "amount", "currency", "date", "paymentGatewayType", "completePayRedirectUrl",
    "cancelPayRedirectUrl", "onlineScenario", "supportOfflineScenario", "customerIdentifier",
    "description", "notifyUrl",
})
MAX_TRANSACTION_ID = 64
TRANSACTION_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_TRANSACTION_ID}}}")  # printable ASCII, no spaces
CURRENCY = re.compile(r"[A-Z]{3}")
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f-\x9f]{1,64}"  # the local part: no spaces, no controls
                    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{5,22}[0-9]")
CONTROLS = r"\x00-\x1f"  # C0: never in a text field
_CONTROL = re.compile(f"[{CONTROLS}]")
_URL_CONTROL = re.compile("[\x7f-\x9f]")  # DEL, C1: never raw in a URL (RFC 3986); C0 and spaces are refused already
MAX_DESCRIPTION = 1000
MAX_URL = 2048


@dataclass(frozen=True)
class TransactionRequest:
    transaction_id: str
    amount_minor: int
    currency: str
    date: str
    gateway: str
    complete_url: str
    cancel_url: str
    online: bool
    save_method: bool
    customer: str | None
    description: str
    notify_url: str | None

    def fingerprint(self) -> str:
        """Identifies the request's content, for idempotent replays and 409 on changes: 128 bits
        (the first half of the digest payrelay stored before; create.lua compares prefixes)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _invalid(param: str, detail: str, code: str = "invalid_field") -> errors.InvalidRequest:
    return errors.InvalidRequest(code, f"{param} {detail}", param)


def _object(body: Any, fields: frozenset[str], what: str) -> dict[str, Any]:
    """A JSON object with none but these fields."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest("invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise _invalid(unknown[0], f"is not a field of {what}", "unknown_field")
    return body


def _string(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(name, "is required", "missing_field")
        return None
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    return _text(name, value)


def _identifier(name: str, value: str) -> None:
    """A storage app's own id (transactionId, refundId)."""
    if not TRANSACTION_ID.fullmatch(value):
        raise _invalid(name, f"must be 1 to {MAX_TRANSACTION_ID} printable ASCII characters without spaces")


def _text(name: str, value: str) -> str:
    """Every string field must be text: a JSON escape can make a lone surrogate (``\\ud800``),
    which no UTF-8 encoder (Redis, the gateways' SDKs) takes, and no field has a use for C0 control
    characters (NUL would cut C strings, CR/LF split headers and log lines)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(name, "is not text: it holds a lone surrogate (U+D800 to U+DFFF)") from None
    if _CONTROL.search(value):
        raise _invalid(name, "must not contain control characters")
    return value


def _boolean(body: dict[str, Any], name: str, required: bool) -> bool:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(name, "is required", "missing_field")
        return False
    if not isinstance(value, bool):
        raise _invalid(name, "must be true or false")
    return value


def check_url(name: str, value: str, allowed_hosts: frozenset[str], https_only: bool = False) -> str:
    _text(name, value)
    if len(value) > MAX_URL or any(c.isspace() for c in value) or _URL_CONTROL.search(value):
        raise _invalid(name, f"must be a URL of at most {MAX_URL} characters without spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _invalid(name, "is not a valid URL") from None
    schemes = ("https",) if https_only else ("http", "https")
    if parts.scheme not in schemes or not host:
        need = "an absolute https URL" if https_only else "an absolute http(s) URL"
        raise _invalid(name, f"must be {need}")
    if allowed_hosts and host.lower() not in allowed_hosts:
        raise _invalid(name, f"host {host!r} is not in PAYRELAY_REDIRECT_HOSTS", "host_not_allowed")
    return value


def _amount(value: Any, currency: str, unit: str) -> int:
    try:
        if unit == "minor":
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise money.AmountError("must be a whole number of minor units")
            return money.parse_minor(value)
        if not isinstance(value, str):
            raise money.AmountError('must be a string such as "25.00" (numbers lose precision)')
        return money.to_minor(value, currency)
    except money.AmountError as exc:
        raise _invalid("amount", str(exc), "invalid_amount") from None


def _date(value: str) -> str:
    try:
        if "T" in value or " " in value:
            dt.datetime.fromisoformat(value)
        else:
            dt.date.fromisoformat(value)
    except ValueError:
        raise _invalid("date", "must be an ISO 8601 date or date-time") from None
    return value


def _customer(value: str, adapter: Adapter) -> str:
    is_email = _EMAIL.fullmatch(value) is not None
    if adapter.customer_must_be_email and not is_email:
        raise _invalid("customerIdentifier", f"must be an email address for {adapter.gateway_type}")
    if is_email or _PHONE.fullmatch(value):
        return value
    try:
        uuid.UUID(value)
    except ValueError:
        raise _invalid("customerIdentifier", "must be a phone number, an email address or a UUID") from None
    return value


def parse_transaction(
    body: Any, adapters: dict[str, Adapter], *, amount_unit: str, allowed_hosts: frozenset[str]
) -> TransactionRequest:
    body = _object(body, FIELDS, "a transaction request")

    transaction_id = _string(body, "transactionId")
    assert transaction_id is not None
    _identifier("transactionId", transaction_id)

    gateway = _string(body, "paymentGatewayType")
    assert gateway is not None
    if gateway not in GATEWAY_TYPES:
        raise _invalid("paymentGatewayType", f"must be one of {', '.join(GATEWAY_TYPES)}")
    adapter = adapters.get(gateway)
    if adapter is None:
        raise _invalid("paymentGatewayType", f"{gateway} is not configured on this payrelay",
                       "gateway_not_configured")

    currency = _string(body, "currency")
    assert currency is not None
    if not CURRENCY.fullmatch(currency) or currency not in money.EXPONENTS:
        raise _invalid("currency", "must be an ISO 4217 code in upper case, such as USD")
    if adapter.currencies is not None and currency not in adapter.currencies:
        takes = sorted(adapter.currencies)
        said = f"takes only {', '.join(takes)}" if len(takes) <= 5 else f"does not take {currency}"
        raise _invalid("currency", f"{gateway} {said}", "currency_not_supported")
    if "amount" not in body or body["amount"] is None:
        raise _invalid("amount", "is required", "missing_field")
    amount_minor = _amount(body["amount"], currency, amount_unit)
    step = adapter.amount_steps.get(currency, 1)
    if amount_minor % step:
        raise _invalid("amount", f"{gateway} takes {currency} amounts only in steps of "
                                 f"{money.to_major(step, currency)}", "invalid_amount")

    date = _date(_string(body, "date") or "")
    complete_url = _string(body, "completePayRedirectUrl")
    cancel_url = _string(body, "cancelPayRedirectUrl")
    assert complete_url is not None and cancel_url is not None
    https = adapter.requires_https_redirects
    check_url("completePayRedirectUrl", complete_url, allowed_hosts, https)
    check_url("cancelPayRedirectUrl", cancel_url, allowed_hosts, https)

    online = _boolean(body, "onlineScenario", required=True)
    save_method = _boolean(body, "supportOfflineScenario", required=False)
    if (not online or save_method) and not adapter.supports_offline:
        param = "onlineScenario" if not online else "supportOfflineScenario"
        raise _invalid(param, f"is not available: {gateway} has no off-session charge",
                       "unsupported_by_gateway")

    customer = _string(body, "customerIdentifier", required=False)
    if customer is not None:
        customer = _customer(customer, adapter)
    elif not online or save_method:
        raise _invalid("customerIdentifier", "is required to save or charge a payment method",
                       "missing_field")

    description = _string(body, "description", required=False) or ""
    if len(description) > MAX_DESCRIPTION:
        raise _invalid("description", f"must be at most {MAX_DESCRIPTION} characters")

    notify_url = _string(body, "notifyUrl", required=False)
    if notify_url is not None:
        check_url("notifyUrl", notify_url, allowed_hosts)

    return TransactionRequest(
        transaction_id=transaction_id, amount_minor=amount_minor, currency=currency, date=date,
        gateway=gateway, complete_url=complete_url, cancel_url=cancel_url, online=online,
        save_method=save_method, customer=customer, description=description, notify_url=notify_url,
    )


REFUND_FIELDS = frozenset({"refundId", "amount", "reason"})
MAX_REASON = 256


@dataclass(frozen=True)
class RefundBody:
    refund_id: str
    amount_minor: int | None  # None: what remains
    reason: str | None

    @property
    def fingerprint(self) -> str:
        """Of the request: the same refundId with another amount or reason is a conflict."""
        return hashlib.sha256(json.dumps([self.amount_minor, self.reason]).encode()).hexdigest()[:32]


def parse_refund(body: Any, currency: str, *, amount_unit: str) -> RefundBody:
    """``POST /api/transactions/{paymentId}/refunds``: ``refundId`` by the rules of a
    transactionId, ``amount`` (optional) in the payment's currency and the client's unit."""
    body = _object(body, REFUND_FIELDS, "a refund request")
    refund_id = _string(body, "refundId")
    assert refund_id is not None
    _identifier("refundId", refund_id)
    amount = None if body.get("amount") is None else _amount(body["amount"], currency, amount_unit)
    reason = _string(body, "reason", required=False) or None
    if reason is not None and len(reason) > MAX_REASON:
        raise _invalid("reason", f"must be at most {MAX_REASON} characters")
    return RefundBody(refund_id, amount, reason)


LIST_PARAMS = frozenset({"page_size", "order_direction", "next_page_token", "status", "paymentGatewayType",
                         "createdFrom", "createdTo", "flag"})
PAGE_SIZES = range(10, 101)  # Cloudreve's pagination: 10–100, default 50


def _instant(params: Mapping[str, str], name: str) -> int | None:
    """An ISO 8601 date-time with its offset (``2026-12-01T10:00:00Z``), as epoch ms."""
    value = params.get(name)
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _invalid(name, "must be an ISO 8601 date-time with its offset, e.g. 2026-12-01T10:00:00Z",
                       "invalid_query")
    return int(moment.timestamp() * 1000)


def parse_list_query(params: Mapping[str, str], client: str, adapters: Mapping[str, Adapter]) -> ListQuery:
    """``GET /api/transactions`` without transactionId: the listing's parameters (DESIGN.md), each
    checked; an unknown one is refused rather than ignored."""
    unknown = sorted(set(params) - LIST_PARAMS - {"transactionId"})
    if unknown:
        raise _invalid(unknown[0], f"unknown parameter; the listing takes {', '.join(sorted(LIST_PARAMS))}",
                       "invalid_query")

    def choice(name: str, allowed: Iterable[str]) -> str | None:
        value = params.get(name)
        if value is not None and value not in allowed:
            raise _invalid(name, f"must be one of {', '.join(allowed)}", "invalid_query")
        return value

    size = params.get("page_size", "50")
    if not size.isdigit() or int(size) not in PAGE_SIZES:
        raise _invalid("page_size", "must be an integer from 10 to 100", "invalid_query")
    created_from, created_to = _instant(params, "createdFrom"), _instant(params, "createdTo")
    if created_from is not None and created_to is not None and created_from >= created_to:
        raise _invalid("createdTo", "must be after createdFrom", "invalid_query")
    return ListQuery(
        client=client,
        status=choice("status", [state.value for state in PaymentState if state not in PUBLIC]),
        gateway=choice("paymentGatewayType", sorted(GATEWAY_TYPES)),
        created_from=created_from,
        created_to=created_to,
        flag=choice("flag", FLAGS),
        page_size=int(size),
        descending=choice("order_direction", ("asc", "desc")) != "asc",
        token=params.get("next_page_token", ""),
    )
