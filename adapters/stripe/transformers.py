"""Everything shaped like Stripe's API: request parameters, the status tables, answers and events.

Stripe facts kept here as data: the ``expires_at`` window of a Checkout Session, the product name
limit, how session states, PaymentIntent states and ``checkout.session.*`` events map to ours, and
the same for refunds: ``Refund.status`` and the ``refund.*`` events that carry a Refund.
Objects come in as plain dicts (``StripeObject.to_dict()``, or a verified event's JSON); anything
without the fields we rely on is a protocol error, never a guess.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from typing import Any

from stripe.params import PaymentIntentCreateParams, RefundCreateParams
from stripe.params.checkout import SessionCreateParams

from adapters import money
from adapters.base import (
    Created,
    CreateRequest,
    GatewayState,
    Money,
    RefundLimits,
    RefundRequest,
    RefundState,
    RefundStatus,
    Status,
    WebhookEvent,
    map_state,
)
from adapters.errors import GatewayProtocolError, UnsupportedOperation, WebhookPayloadError

GATEWAY = "Stripe"
MIN_EXPIRY = 30 * 60  # Stripe: expires_at 30 minutes …
MAX_EXPIRY = 24 * 3600  # … to 24 hours after the session is created
EXPIRY_MARGIN = 60  # our clock and Stripe's, and the request's time in flight
# The clamped bounds are rounded to this grid so that a retried create (same idempotency key)
# sends the same expires_at: Stripe refuses a key reused with different parameters.
EXPIRY_GRID = 300
PRODUCT_NAME_LIMIT = 5000  # line_items[].price_data.product_data.name, in characters
INTENT_DESCRIPTION_LIMIT = 1000  # a PaymentIntent's description, in characters
DEFAULT_PRODUCT_NAME = "Payment"

# Stripe's amounts are in "the currency's smallest unit", which is not always ISO 4217's minor unit.
# Stripe's own lists (docs.stripe.com/currencies), kept as data: its zero-decimal currencies count
# whole units (MGA too, which has two decimals in ISO 4217); its three-decimal currencies count
# thousandths; ISK, zero-decimal in ISO 4217, counts hundredths (1 ISK is 100 at Stripe); every
# other two-decimal currency counts hundredths. A currency in none of these (IQD and LYD, which
# have three decimals in ISO 4217 but are not Stripe's; the fund codes CLF, UYI, UYW) has no
# known unit at Stripe: payrelay refuses it rather than guess by a factor of ten.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
                          "XAF", "XOF", "XPF"})
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
HUNDREDTHS = frozenset({"ISK"})
# Stripe takes amounts only in multiples of this many of its units: three-decimal currencies in
# whole hundredths (the last digit 0), ISK in whole krónur.
STRIPE_MULTIPLES: Mapping[str, int] = types.MappingProxyType(
    {**{currency: 10 for currency in THREE_DECIMAL}, "ISK": 100})


def stripe_exponent(currency: str) -> int | None:
    """How many decimals Stripe's amounts in ``currency`` carry; None where Stripe has no rule."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    if currency in HUNDREDTHS or money.EXPONENTS.get(currency) == 2:
        return 2
    return None


CURRENCIES = frozenset(currency for currency in money.EXPONENTS if stripe_exponent(currency) is not None)


def _shift(currency: str) -> int:
    """Stripe's decimals less ISO 4217's: +2 for ISK, -2 for MGA, 0 for most."""
    stripe = stripe_exponent(currency)
    if stripe is None:
        raise UnsupportedOperation(f"{GATEWAY} takes no {currency}", param="currency")
    return stripe - money.exponent(currency)


def _amount_step(currency: str) -> int:
    """The fewest ISO minor units that make a whole amount at Stripe, in Stripe's multiples."""
    shift = _shift(currency)
    multiple = STRIPE_MULTIPLES.get(currency, 1)
    if shift >= 0:
        return multiple // math.gcd(multiple, 10**shift)
    return multiple * 10**-shift


# currency → Stripe takes only multiples of this many ISO minor units (payrelay refuses the rest
# with a 400 before asking): 10 for the three-decimal ones, 100 for MGA, none for ISK.
AMOUNT_STEPS: Mapping[str, int] = types.MappingProxyType({
    currency: step for currency in sorted(CURRENCIES) if (step := _amount_step(currency)) > 1
})

# Checkout Session: status, or status/payment_status once complete; "…/payment_failed" is a
# complete but unpaid session whose delayed payment failed (its PaymentIntent went back to
# requires_payment_method: Stripe leaves the session itself at complete/unpaid).
SESSION_STATES: Mapping[str, Status] = types.MappingProxyType({
    "open": Status.WAITING,
    "complete/paid": Status.SUCCEEDED,
    "complete/no_payment_required": Status.SUCCEEDED,
    "complete/unpaid": Status.PROCESSING,
    "complete/unpaid/payment_failed": Status.FAILED,
    "expired": Status.CLOSED,
})

# PaymentIntent.status, for off-session charges (and a delayed session payment's outcome)
INTENT_STATES: Mapping[str, Status] = types.MappingProxyType({
    "requires_payment_method": Status.FAILED,  # confirmed by us, then declined: it went back here
    "requires_confirmation": Status.WAITING,
    "requires_action": Status.WAITING,
    "processing": Status.PROCESSING,
    "requires_capture": Status.PROCESSING,
    "succeeded": Status.SUCCEEDED,
    "canceled": Status.CLOSED,
})

# checkout.session.* events; completed is keyed with the session's payment_status
EVENT_STATES: Mapping[str, Status] = types.MappingProxyType({
    "checkout.session.completed/paid": Status.SUCCEEDED,
    "checkout.session.completed/no_payment_required": Status.SUCCEEDED,
    "checkout.session.completed/unpaid": Status.PROCESSING,
    "checkout.session.async_payment_succeeded": Status.SUCCEEDED,
    "checkout.session.async_payment_failed": Status.FAILED,
    "checkout.session.expired": Status.CLOSED,
})
EVENT_TYPES = frozenset(key.partition("/")[0] for key in EVENT_STATES)

# Refund.status (docs.stripe.com/api/refunds/object#refund_object-status; the SDK's Refund.status
# docstring lists the same five). A succeeded refund can still become failed later, when the
# customer's bank returns it (docs.stripe.com/refunds#failed-refunds): that arrives as an event.
REFUND_STATES: Mapping[str, RefundStatus] = types.MappingProxyType({
    "pending": RefundStatus.PROCESSING,
    "requires_action": RefundStatus.PROCESSING,  # the customer must give refund details (some methods)
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,  # canceled before it went out: nothing was refunded
})
# Events whose data.object is a Refund (docs.stripe.com/api/refunds: "Events"); since API version
# 2024-10-28.acacia refund.* are sent for every refund (docs.stripe.com/changelog/acacia/2024-10-28/
# refund-webhook-update). charge.refunded is not among them: its Charge names no refund (its
# refunds list is not included) and every refund it announces also comes as refund.created.
REFUND_EVENT_TYPES = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
# Refund.reason values a caller may send; any other reason goes in metadata
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
LIST_LIMIT = 100  # the most objects one list call answers (RefundListParams.limit: "between 1 and 100")
METADATA_VALUE_LIMIT = 500  # characters of one metadata value (docs.stripe.com/api/metadata)

REFUND_LIMITS = RefundLimits(
    # no general limit in time: Stripe documents refunds of "any successful payment" and judges per
    # payment method (docs.stripe.com/refunds); a refusal comes back as Stripe's own error
    window_days=None,
    # "a positive integer in cents" (docs.stripe.com/api/refunds/create#create_refund-amount)
    minimum_minor=1,
    # "You can optionally refund only part of a charge. You can do so multiple times, until the
    # entire charge has been refunded." (the SDK's RefundService.create docstring, = the API reference)
    partial=True,
    # "You can issue more than one refund against a charge, but you can't refund a total greater
    # than the original charge amount." (docs.stripe.com/refunds): no count is documented
    max_per_payment=None,
)


# -- requests -----------------------------------------------------------------------------------

def gateway_expiry(expires_at: int, now: int) -> int:
    """``expires_at`` moved into Stripe's window (with a margin), bounds rounded to the grid."""
    low = -(-(now + MIN_EXPIRY + EXPIRY_MARGIN) // EXPIRY_GRID) * EXPIRY_GRID
    high = (now + MAX_EXPIRY - EXPIRY_MARGIN) // EXPIRY_GRID * EXPIRY_GRID
    return min(max(expires_at, low), high)


def product_name(description: str) -> str:
    return description.strip()[:PRODUCT_NAME_LIMIT] or DEFAULT_PRODUCT_NAME


def stripe_amount(amount: Money) -> int:
    """ISO minor units → Stripe's units; an amount off ``AMOUNT_STEPS`` is refused, never rounded."""
    shift = _shift(amount.currency)
    if shift >= 0:
        return amount.minor * 10**shift
    whole, rest = divmod(amount.minor, 10**-shift)
    if rest:
        raise UnsupportedOperation(f"{GATEWAY} takes {amount.currency} in whole units of "
                                   f"{money.to_major(10**-shift, amount.currency)} only", param="amount")
    return whole


def session_params(request: CreateRequest, now: int) -> SessionCreateParams:
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": [{
            "price_data": {
                "currency": request.amount.currency.lower(),
                "unit_amount": stripe_amount(request.amount),
                "product_data": {"name": product_name(request.description)},
            },
            "quantity": 1,
        }],
        "success_url": request.complete_url,
        "cancel_url": request.cancel_url,
        "client_reference_id": request.payment_id,
        "metadata": {"paymentId": request.payment_id},
        "expires_at": gateway_expiry(request.expires_at, now),
        "payment_intent_data": {"metadata": {"paymentId": request.payment_id}},
    }
    if request.customer:
        params["customer_email"] = request.customer
    if request.save_method:
        params["payment_intent_data"]["setup_future_usage"] = "off_session"
        params["customer_creation"] = "always"
    return params


def off_session_params(request: CreateRequest, customer: str, payment_method: str) -> PaymentIntentCreateParams:
    return {
        "amount": stripe_amount(request.amount),
        "currency": request.amount.currency.lower(),
        "customer": customer,
        "payment_method": payment_method,
        "off_session": True,
        "confirm": True,
        "description": product_name(request.description)[:INTENT_DESCRIPTION_LIMIT],
        "metadata": {"paymentId": request.payment_id},
    }


def refund_params(request: RefundRequest, payment_intent: str) -> RefundCreateParams:
    """A refund on the payment's PaymentIntent, found again by ``metadata[refund_no]``."""
    metadata = {"refund_no": request.refund_no, "paymentId": request.payment.payment_id}
    params: RefundCreateParams = {"payment_intent": payment_intent, "amount": stripe_amount(request.amount)}
    if request.reason in REFUND_REASONS:
        params["reason"] = request.reason
    elif request.reason:
        metadata["reason"] = request.reason[:METADATA_VALUE_LIMIT]
    params["metadata"] = metadata
    return params


# -- answers ------------------------------------------------------------------------------------

def _field(obj: Mapping[str, Any], name: str, kind: type, what: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GatewayProtocolError(f"{GATEWAY} answered a {what} without a usable {name!r}")
    return value


def _money(obj: Mapping[str, Any], amount_field: str, what: str) -> Money:
    """A Stripe amount in ISO 4217 minor units, as payments hold it."""
    amount, currency = _field(obj, amount_field, int, what), _field(obj, "currency", str, what).upper()
    if currency not in CURRENCIES:
        raise GatewayProtocolError(f"{GATEWAY} answered a {what} in {currency!r}, which payrelay does not take")
    shift = -_shift(currency)
    if shift >= 0:
        return Money(amount * 10**shift, currency)
    whole, rest = divmod(amount, 10**-shift)
    if rest:
        raise GatewayProtocolError(f"{GATEWAY} answered a {what} {amount_field} of {amount} {currency}, "
                                   f"which is no whole amount of {currency}")
    return Money(whole, currency)


def created_session(session: Mapping[str, Any]) -> Created:
    session_id = _field(session, "id", str, "Checkout Session")
    url = _field(session, "url", str, "Checkout Session")
    if not session_id.startswith("cs_"):
        raise GatewayProtocolError(f"{GATEWAY} answered a Checkout Session id {session_id!r}")
    return Created(payment_url=url, gateway_reference=session_id)


def session_state_key(session: Mapping[str, Any]) -> str:
    status = _field(session, "status", str, "Checkout Session")
    if status != "complete":
        return status
    key = f"complete/{_field(session, 'payment_status', str, 'Checkout Session')}"
    intent = session.get("payment_intent")
    if key == "complete/unpaid" and isinstance(intent, Mapping) and intent.get("status") in (
            "requires_payment_method", "canceled"):
        key += "/payment_failed"
    return key


def session_state(payment_id: str, session: Mapping[str, Any]) -> GatewayState:
    """A retrieved (or expired) session; ``payment_intent`` expanded tells a failed delayed payment."""
    reference = session.get("client_reference_id")
    if reference is not None and reference != payment_id:
        raise GatewayProtocolError(f"{GATEWAY} answered the session of another payment ({reference!r})")
    key = session_state_key(session)
    status = map_state(SESSION_STATES, key, GATEWAY)
    reason = None
    if status is Status.FAILED:
        reason = _failure_reason(session.get("payment_intent")) or "the delayed payment failed"
    return GatewayState(payment_id, status, key, _field(session, "id", str, "Checkout Session"),
                        _money(session, "amount_total", "Checkout Session"), reason)


def intent_state(payment_id: str, intent: Mapping[str, Any]) -> GatewayState:
    key = _field(intent, "status", str, "PaymentIntent")
    status = map_state(INTENT_STATES, key, GATEWAY)
    return GatewayState(payment_id, status, key, _field(intent, "id", str, "PaymentIntent"),
                        _money(intent, "amount", "PaymentIntent"),
                        _failure_reason(intent) if status is Status.FAILED else None)


def charged(intent: Mapping[str, Any]) -> Created:
    """An off-session PaymentIntent as created (and confirmed)."""
    state = intent_state("", intent)
    if state.status is None:  # pragma: no cover - INTENT_STATES maps every state to a status
        raise GatewayProtocolError(f"{GATEWAY} answered a PaymentIntent without a status")
    return Created(None, state.gateway_reference, state.status, state.failure_reason, state.gateway_state,
                   state.amount)


def declined(error_body: Any) -> Created:
    """A 402 card error to an off-session charge: a result (status failed), not an exception."""
    error = error_body.get("error") if isinstance(error_body, Mapping) else None
    if not isinstance(error, Mapping):
        raise GatewayProtocolError(f"{GATEWAY} declined without an error object")
    intent = error.get("payment_intent")
    reference = intent.get("id") if isinstance(intent, Mapping) else None
    return Created(None, reference if isinstance(reference, str) else None, Status.FAILED, _reason(error),
                   "requires_payment_method")


def _reason(error: Mapping[str, Any]) -> str:
    code = error.get("decline_code") or error.get("code") or "declined"
    message = error.get("message") or "the payment was declined"
    return f"{code}: {message}"


def _failure_reason(intent: Any) -> str | None:
    if not isinstance(intent, Mapping):
        return None
    error = intent.get("last_payment_error")
    return _reason(error) if isinstance(error, Mapping) else None


def ids(listing: Mapping[str, Any], what: str) -> list[str]:
    """The ids in a list answer, in Stripe's order (newest first)."""
    data = listing.get("data")
    if not isinstance(data, list):
        raise GatewayProtocolError(f"{GATEWAY} answered a {what} list without data")
    return [_field(item, "id", str, what) for item in data if isinstance(item, Mapping)]


# Refund.failure_reason (the SDK's Refund.failure_reason docstring) in words a person can act on
_REFUND_FAILURES: Mapping[str, str] = types.MappingProxyType({
    "lost_or_stolen_card": "the card was reported lost or stolen; refund the customer another way",
    "expired_or_canceled_card": "the card expired or was canceled; refund the customer another way",
    "charge_for_pending_refund_disputed": "the customer disputed the charge while the refund was pending",
    "insufficient_funds": "the Stripe balance could not cover the refund",
    "declined": "the customer's bank declined the refund",
    "merchant_request": "the refund was canceled on request",
    "canceled": "the refund was canceled before any money moved",
    "unknown": "Stripe could not return the money; the amount is back on the Stripe balance",
})


def refund_state(refund: Mapping[str, Any]) -> RefundState:
    """A Refund as Stripe answers it (create, list, or an event's object)."""
    metadata = refund.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    refund_no, payment_id = metadata.get("refund_no"), metadata.get("paymentId")
    if not isinstance(refund_no, str) or not refund_no:
        raise GatewayProtocolError(f"{GATEWAY} answered a Refund without metadata[refund_no]")
    key = _field(refund, "status", str, "Refund")
    status = map_state(REFUND_STATES, key, GATEWAY, "refund status")
    reason = None
    if status is RefundStatus.FAILED:
        code = (refund.get("failure_reason") or "unknown") if key == "failed" else "canceled"
        reason = f"{code}: {_REFUND_FAILURES.get(code, _REFUND_FAILURES['unknown'])}"
    return RefundState(refund_no, status, key, _field(refund, "id", str, "Refund"), _money(refund, "amount", "Refund"),
                       reason, payment_id if isinstance(payment_id, str) and payment_id else None)


def refund_in(listing: Mapping[str, Any], refund_no: str) -> Mapping[str, Any] | None:
    """The Refund in a list answer made under ``refund_no`` (``metadata[refund_no]``)."""
    data = listing.get("data")
    if not isinstance(data, list):
        raise GatewayProtocolError(f"{GATEWAY} answered a Refund list without data")
    for item in data:
        metadata = item.get("metadata") if isinstance(item, Mapping) else None
        if isinstance(metadata, Mapping) and metadata.get("refund_no") == refund_no:
            return item
    return None


# -- events -------------------------------------------------------------------------------------

def event_state(event: Any, account: str | None) -> WebhookEvent | None:
    """A verified event → our state; None for event types we do not use and for events of
    another account than ours (``account``: the connected account payrelay charges on, None for
    the platform's own): one Connect endpoint receives the events of every connected account."""
    if not isinstance(event, Mapping) or event.get("object") != "event":
        raise WebhookPayloadError("the body is not a Stripe event")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise WebhookPayloadError("the event has no id or type")
    if (event_type not in EVENT_TYPES and event_type not in REFUND_EVENT_TYPES) or (
            event.get("account") or None) != account:
        return None
    if event_type in REFUND_EVENT_TYPES:
        return _refund_event(event_id, event_type, event.get("data"))
    data = event.get("data")
    session = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(session, Mapping):
        raise WebhookPayloadError(f"{event_type} {event_id} carries no Checkout Session")
    metadata = session.get("metadata")
    payment_id = session.get("client_reference_id") or (
        metadata.get("paymentId") if isinstance(metadata, Mapping) else None)
    if not isinstance(payment_id, str) or not payment_id:
        raise WebhookPayloadError(f"{event_type} {event_id} names no payment (client_reference_id)")
    key = event_type
    if event_type == "checkout.session.completed":
        key += f"/{session.get('payment_status')}"
    try:
        status = map_state(EVENT_STATES, key, GATEWAY)
        amount = _money(session, "amount_total", "Checkout Session")
        reference = _field(session, "id", str, "Checkout Session")
    except GatewayProtocolError as exc:
        raise WebhookPayloadError(f"{event_type} {event_id}: {exc}") from None
    reason = "the delayed payment failed" if status is Status.FAILED else None
    return WebhookEvent(event_id, GatewayState(payment_id, status, key, reference, amount, reason))


def _refund_event(event_id: str, event_type: str, data: Any) -> WebhookEvent | None:
    """A refund.* event: the Refund it carries is the state (its status, not the event's type,
    says what happened: refund.updated also reports a succeeded refund that failed later). A
    refund without our metadata was made elsewhere (the Dashboard): not ours, None."""
    refund = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(refund, Mapping) or refund.get("object") != "refund":
        raise WebhookPayloadError(f"{event_type} {event_id} carries no Refund")
    metadata = refund.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("refund_no"):
        return None
    try:
        state = refund_state(refund)
    except GatewayProtocolError as exc:
        raise WebhookPayloadError(f"{event_type} {event_id}: {exc}") from None
    if state.payment_id is None:
        raise WebhookPayloadError(f"{event_type} {event_id} names no payment (metadata[paymentId])")
    return WebhookEvent(event_id, refund=state)
