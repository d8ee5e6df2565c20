"""The adapter interface: what payrelay needs from a payment gateway, and nothing more.

Data crossing the interface are frozen dataclasses; money is integer minor units plus currency.
Each adapter declares its capabilities as class data and keeps its gateway-state table next to
its code, looked up through :func:`map_state`, which raises on a state it does not know.
"""

from __future__ import annotations

import abc
import enum
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from adapters.errors import GatewayProtocolError


class Status(enum.StrEnum):
    WAITING = "waiting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"




@dataclass(frozen=True)
class Money:
    minor: int
    currency: str


@dataclass(frozen=True)
class CreateRequest:
    payment_id: str  # our order number: out_trade_no / client_reference_id / idempotency key
    amount: Money
    description: str
    complete_url: str
    cancel_url: str
    expires_at: int  # unix seconds; adapters clamp to their gateway's window
    customer: str | None = None
    online: bool = True
    save_method: bool = False
    # unix seconds the payment was created (None: now): a create sent again must be the same
    # request, so whatever an adapter derives from "now" it derives from this
    created_at: int | None = None


@dataclass(frozen=True)
class Created:
    """What a create (or the recovery of an interrupted one) made at the gateway. An order that
    ended at once (an off-session charge, or one found paid on recovery) carries its status, the
    gateway's raw state and the amount the gateway charged."""

    payment_url: str | None
    gateway_reference: str | None
    status: Status = Status.WAITING
    failure_reason: str | None = None
    gateway_state: str = "created"
    amount: Money | None = None


@dataclass(frozen=True)
class PaymentRef:
    """What an adapter needs to find a payment at its gateway again."""

    payment_id: str
    gateway_reference: str | None
    amount: Money


@dataclass(frozen=True)
class GatewayState:
    """The gateway's word about one payment, from a query, a close or a verified webhook.

    ``status`` is None when the gateway holds no order under this payment id (it never existed,
    e.g. an Alipay cashier that was never opened). After a close that is as closed as the gateway
    can make it; where the gateway creates orders lazily (Alipay), its own time_expire refuses
    payment later, and a payment made before that arrives as a late payment.
    ``amount`` is what the gateway says was (or is to be) charged; the service compares it with
    the payment and flags an integrity error on a mismatch.
    """

    payment_id: str
    status: Status | None
    gateway_state: str
    gateway_reference: str | None = None
    amount: Money | None = None
    failure_reason: str | None = None


class RefundStatus(enum.StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundLimits:
    """What a gateway takes, as data next to its adapter: refunds outside it are refused before
    any gateway call, with the reason."""

    window_days: int | None  # refunds accepted this long after the payment (None: the gateway judges)
    minimum_minor: int  # the smallest refund, in minor units
    partial: bool  # less than the whole payment
    max_per_payment: int | None  # refunds one payment can have (None: no limit known)


@dataclass(frozen=True)
class RefundRequest:
    """One refund of a paid payment. ``refund_no`` is payrelay's id for it at the gateway (Alipay
    ``out_request_no``, WeChat ``out_refund_no``, Stripe's idempotency key and ``metadata``): the
    same ``refund_no`` sent again refunds nothing more, a new one would be a second refund."""

    refund_no: str  # rf_…, 29 characters of [0-9A-Za-z_]
    payment: PaymentRef  # the payment as the gateway knows it (amount: what it took)
    amount: Money  # this refund
    reason: str | None = None


@dataclass(frozen=True)
class RefundState:
    """The gateway's word about one refund, from the refund call, a query or a verified webhook.
    ``payment_id`` is set when the gateway says which payment (webhooks); ``amount`` is what it
    says is refunded by this refund."""

    refund_no: str
    status: RefundStatus
    gateway_state: str
    gateway_reference: str | None = None  # the gateway's own refund id, once known
    amount: Money | None = None
    failure_reason: str | None = None
    payment_id: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified notification: about a payment (``state``), a refund (``refund``), or both (an
    Alipay notification of a refunded trade carries the trade's state and the refund)."""

    event_id: str  # the gateway's id for this notification, for dedupe
    state: GatewayState | None = None
    refund: RefundState | None = None


@dataclass(frozen=True)
class WebhookReply:
    """The acknowledgement in the gateway's own format."""

    status_code: int
    body: bytes = b""
    media_type: str | None = None


S = TypeVar("S", "Status", "RefundStatus")


def map_state(table: Mapping[str, S], state: str, gateway: str, what: str = "state") -> S:
    """Look a gateway state up in an adapter's table (of payment or refund statuses); an
    unknown state is a protocol error, never a guess."""
    try:
        return table[state]
    except KeyError:
        raise GatewayProtocolError(f"{gateway} answered an unknown {what} {state!r}") from None


class Adapter(abc.ABC):
    """One gateway. Instances are built from settings once and shared by all requests."""

    gateway_type: ClassVar[str]  # the paymentGatewayType, e.g. "stripe-connect"
    webhook_name: ClassVar[str]  # the path segment of its webhook, e.g. "stripe"
    currencies: ClassVar[frozenset[str] | None]  # None: any ISO 4217 currency
    # currency → the gateway takes only amounts that are multiples of this many minor units
    amount_steps: ClassVar[Mapping[str, int]] = types.MappingProxyType({})
    supports_offline: ClassVar[bool]
    requires_https_redirects: ClassVar[bool] = False
    customer_must_be_email: ClassVar[bool] = False
    payment_url_is_a_code: ClassVar[bool] = False  # paymentUrl is a code to show as a QR code (weixin://)
    # its create makes no gateway call (it signs a URL), and makes the same URL again for the same
    # request: payrelay opens the payment in the write that stores it, and a resumed create is
    # opened again the same way
    creates_offline: ClassVar[bool] = False

    @abc.abstractmethod
    async def create(self, request: CreateRequest) -> Created: ...

    def payment_url(self, request: CreateRequest) -> str | None:
        """The payment URL ``create`` answers for ``request``, made again, byte for byte: only an
        adapter that creates offline can (its records then keep no URL: payrelay asks here); the
        others answer None, and their URL is kept as the gateway gave it."""
        return None

    async def recover(self, request: CreateRequest) -> Created | None:
        """What an interrupted create of ``request`` made at the gateway; None when the gateway
        holds nothing under the payment's id (nobody can pay it). The default sends the same
        create again, under the same identity (idempotency key, out_trade_no): gateways answer
        what they made the first time, or make it now."""
        return await self.create(request)

    @abc.abstractmethod
    async def query(self, ref: PaymentRef) -> GatewayState: ...

    @abc.abstractmethod
    async def close(self, ref: PaymentRef) -> GatewayState:
        """Close the order so it can no longer be paid; answer the gateway's state afterwards.

        When the order turns out to be paid already, answer that state (status succeeded)
        instead of raising: the caller applies whatever the gateway says.
        """

    refund_limits: ClassVar[RefundLimits]

    @abc.abstractmethod
    async def refund(self, request: RefundRequest) -> RefundState:
        """Refund at the gateway, idempotently under ``request.refund_no``. A gateway's refusal
        (nothing refunded) is GatewayRefused; an unknown outcome (timeout, outage) is
        GatewayUnavailable, and the caller asks again with ``query_refund``, never a new id."""

    @abc.abstractmethod
    async def query_refund(self, request: RefundRequest) -> RefundState | None:
        """The gateway's word about the refund; None when it holds no refund under
        ``request.refund_no`` (the refund call never reached it, or, at Alipay, it failed: the
        same refund sent again under the same number then says which)."""

    @abc.abstractmethod
    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
        """Verify and parse one webhook. None: verified but not about a payment we track
        (an event type we do not use). Raises WebhookSignatureError / WebhookPayloadError."""

    @classmethod
    @abc.abstractmethod
    def webhook_ok(cls) -> WebhookReply:
        """Handled: verified and applied, or a duplicate, stale or unknown event."""

    @classmethod
    @abc.abstractmethod
    def webhook_fail(cls, status_code: int, message: str) -> WebhookReply:
        """Not handled: 400 rejected (forged, malformed), 503 not stored (the gateway retries)."""

    async def aclose(self) -> None:  # noqa: B027 - optional: adapters without connections keep it
        """Release connections."""
