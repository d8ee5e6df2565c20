"""Refunds: money back on a succeeded payment, fully or in parts, exactly once.

A refund is reserved against what its payment has left, refunds in flight counted, in one script
(``RefundStore.reserve``): concurrent refunds that together exceed the payment cannot both be
accepted, and a refund refused there is not kept at all. Its gateway call goes out under
payrelay's own number for it (``rf_…``: out_request_no, out_refund_no, Stripe's idempotency key),
which every later look reuses. A call that ends without an answer leaves the refund
``processing``; the refund sweep (``RefundSweeper``) then asks the gateway about that number and,
only when the gateway holds nothing under it, sends the same refund again under the same number.
No path ever sends a refund under a new number. Duplicates of a refundId wait for the call in
flight and answer what it got.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from adapters.base import Adapter, Money, RefundRequest, RefundState, RefundStatus, WebhookEvent
from adapters.errors import GatewayError, GatewayRefused
from service import errors, keys, states
from service.clock import now_ms
from service.metrics import Metrics
from service.model import Payment, Refund, name_of, ref_of
from service.refund_store import RefundReservation, RefundStore
from service.schedule import Claim, Schedule, backoff_ms
from service.settings import Client
from service.store import Applied
from service.validation import parse_refund
from service.views import amount_in
from service.workers import Worker

if TYPE_CHECKING:
    from service.payments import Payments

log = logging.getLogger("payrelay.refunds")

CALL_LEASE_MS = 30_000  # a refund call's hold on its refund; past it, the sweep asks the gateway
ASK_AFTER_MS = 5_000  # after a call without an answer, the sweep asks this soon
LOOK_SOON_MS = 60_000  # a refund the gateway still processes: asked every minute for an hour,
LOOK_LATER_MS = 3_600_000  # then hourly (its webhook usually comes first)
RETRY_BASE_MS = 5_000
RETRY_CAP_MS = 10 * 60_000
LEASE_MS = 120_000
WAIT_POLL_S = 0.02
FINAL = tuple(sorted(status.value for status in states.REFUND_FINAL))


def refund_request(refund: Refund, payment: Payment) -> RefundRequest:
    return RefundRequest(refund_no=refund.refund_no, payment=ref_of(payment),
                         amount=Money(refund.amount, refund.currency), reason=refund.reason)


def next_look_ms(refund: Refund, now: int) -> int:
    return now + (LOOK_SOON_MS if now - refund.created_at < LOOK_LATER_MS else LOOK_LATER_MS)


class Refunds:
    """The refunds of the payments of ``payments`` (whose store, adapters, metrics and gateway
    calls they share)."""

    def __init__(self, payments: Payments, store: RefundStore) -> None:
        self.payments = payments
        self.settings = payments.settings
        self.metrics = payments.metrics
        self.gateway_call = payments.gateway_call
        self.store = store

    # -- the API --------------------------------------------------------------------------------

    async def create(self, client: Client, payment_id: str, body: Any) -> Refund:
        payment = await self.payments.get(client, payment_id)
        adapter = self.payments.adapter_of(payment)
        request = parse_refund(body, payment.currency, amount_unit=self.settings.amount_unit)
        limits = adapter.refund_limits
        now = now_ms()
        known = await self.store.number_of(payment_id, request.refund_id)
        if known is None and limits.window_days is not None and payment.paid_at is not None \
                and now > payment.paid_at + limits.window_days * 86_400_000:
            raise errors.Conflict("refund_window_passed", f"{adapter.gateway_type} refunds payments for "
                                  f"{limits.window_days} days after they were paid; this one is older")
        bucket = keys.bucket_of(payment_id)
        assert bucket is not None
        reservation = await self.store.reserve(
            client=client.name, payment_id=payment_id, refund_id=request.refund_id,
            refund_no=keys.new_refund_no(bucket), amount=request.amount_minor, reason=request.reason,
            fingerprint=request.fingerprint, limits=limits, now_ms=now, lease_ms=CALL_LEASE_MS,
        )
        self._refuse(reservation, payment, adapter)
        if reservation.outcome == "existing":
            return await self._await_call(reservation.refund_no)
        refund = await self._must_get(reservation.refund_no)
        log.info("refund %s reserved", refund.refund_no, extra={"paymentId": payment_id, "refundNo": refund.refund_no,
                                           "gateway": adapter.gateway_type})
        return await self._call(adapter, refund, payment, source="refund")

    def _refuse(self, reservation: RefundReservation, payment: Payment, adapter: Adapter) -> None:
        """The script's refusals, in words (nothing was kept)."""

        def amount(minor: int) -> str:
            return amount_in(minor, payment.currency, self.settings.amount_unit)

        outcome, gateway = reservation.outcome, adapter.gateway_type
        if outcome == "missing":
            raise errors.NotFound("payment_not_found", f"no payment {payment.payment_id!r}", "paymentId")
        if outcome == "conflict":
            raise errors.Conflict("refund_conflict", "this refundId already has a refund with another amount "
                                  "or reason; use a new refundId or send the same request", "refundId")
        if outcome == "not_refundable":
            raise errors.Conflict("payment_not_refundable", f"the payment is {reservation.status}: only a "
                                  "succeeded payment can be refunded")
        if outcome == "exhausted":
            raise errors.Conflict("nothing_to_refund", "the payment is refunded in full (refunds in flight "
                                  "count)")
        if outcome == "over":
            raise errors.Conflict("refund_exceeds_remaining", f"at most {amount(reservation.number)} "
                                  f"{payment.currency} remains to refund (refunds in flight count)", "amount")
        if outcome == "below_minimum":
            raise errors.InvalidRequest("refund_below_minimum", f"{gateway} refunds at least "
                                        f"{amount(reservation.number)} {payment.currency}", "amount")
        if outcome == "partial_refused":
            raise errors.InvalidRequest("partial_refund_not_supported", f"{gateway} refunds a payment only "
                                        "in full", "amount")
        if outcome == "too_many":
            raise errors.Conflict("too_many_refunds", f"{gateway} takes at most {reservation.number} refunds "
                                  "of one payment")

    async def get(self, client: Client, payment_id: str, refund_id: str) -> Refund:
        await self.payments.get(client, payment_id)
        number = await self.store.number_of(payment_id, refund_id)
        refund = await self.store.get(number) if number else None
        if refund is None:
            raise errors.NotFound("refund_not_found", f"no refund {refund_id!r} of this payment", "refundId")
        return refund

    async def of_payment(self, client: Client, payment_id: str) -> list[Refund]:
        await self.payments.get(client, payment_id)
        return await self.store.of_payment(payment_id)

    async def _must_get(self, refund_no: str) -> Refund:
        refund = await self.store.get(refund_no)
        if refund is None:
            raise errors.InternalError("refund_vanished", f"refund {refund_no} vanished")
        return refund

    async def _await_call(self, refund_no: str) -> Refund:
        """The refund of a duplicate request: once no call holds it, as it is. A duplicate waits
        for the call in flight (at most one gateway timeout) and never makes one of its own."""
        while True:
            refund = await self._must_get(refund_no)
            if (refund.calling_until or 0) <= now_ms():
                return refund
            await asyncio.sleep(WAIT_POLL_S)

    # -- the gateway ----------------------------------------------------------------------------

    async def _call(self, adapter: Adapter, refund: Refund, payment: Payment, *, source: str) -> Refund:
        """Send the refund (under its own number, as every time) and apply the answer. A refusal
        ends it failed (nothing was refunded); no answer leaves it processing for the sweep."""
        request = refund_request(refund, payment)
        try:
            state = await self.gateway_call(adapter, "refund", adapter.refund(request))
        except GatewayRefused as exc:
            state = RefundState(refund.refund_no, RefundStatus.FAILED, exc.code or "refused",
                                failure_reason=f"the gateway refused the refund: {exc.message}")
        except GatewayError as exc:
            log.warning("refund call without an answer: the sweep will ask the gateway",
                        extra={"refundNo": refund.refund_no, "gateway": adapter.gateway_type,
                               "outcome": type(exc).__name__})
            state = RefundState(refund.refund_no, RefundStatus.PROCESSING, "no_answer")
            await self.apply(state, adapter, source=source, next_look_ms=now_ms() + ASK_AFTER_MS)
            return await self._must_get(refund.refund_no)
        await self.apply(state, adapter, source=source)
        return await self._must_get(refund.refund_no)

    async def sync(self, refund: Refund) -> Refund:
        """``?sync=true``: a processing refund whose call is over is resolved now."""
        if refund.status is not RefundStatus.PROCESSING or (refund.calling_until or 0) > now_ms():
            return refund
        return await self.resolve(refund)

    async def resolve(self, refund: Refund) -> Refund:
        """Learn what became of a processing refund whose call is over: ask the gateway under its
        number; when the gateway holds nothing under it, the call never reached it, and the same
        refund goes out now, under the same number."""
        payment = await self.payments.store.get(refund.payment_id)
        if payment is None:
            raise errors.InternalError("payment_vanished", f"the payment of refund {refund.refund_no} vanished")
        adapter = self.payments.adapter_of(payment)
        state = await self.gateway_call(adapter, "query_refund", adapter.query_refund(refund_request(refund, payment)))
        if state is None:
            return await self._call(adapter, refund, payment, source="resend")
        await self.apply(state, adapter, source="sync")
        return await self._must_get(refund.refund_no)

    async def apply(self, state: RefundState, adapter: Adapter, *, source: str, event_id: str | None = None,
                    next_look_ms: int | None = None) -> Applied:
        now = now_ms()
        applied = await self.store.apply(
            state.refund_no, gateway=adapter.gateway_type, now_ms=now, status=state.status.value,
            gateway_state=state.gateway_state, reference=state.gateway_reference,
            failure_reason=state.failure_reason,
            amount=state.amount.minor if state.amount else None,
            event=(adapter.gateway_type, "refund:" + event_id) if event_id else None,
            next_look_ms=next_look_ms or now + LOOK_SOON_MS,
            delivery_id="dlv_" + secrets.token_urlsafe(12), source=source,
        )
        extra = {"refundNo": state.refund_no, "gateway": adapter.gateway_type, "outcome": applied.outcome,
                 "source": source}
        if applied.changed:
            self.metrics.refunds.labels(adapter.gateway_type, state.status.value).inc()
            if state.status is RefundStatus.SUCCEEDED:
                refund = await self._must_get(state.refund_no)
                self.metrics.refunded_minor.labels(adapter.gateway_type, refund.currency).inc(refund.amount)
            log.info("refund %s %s → %s", state.refund_no, applied.previous, state.status.value, extra=extra)
        elif applied.outcome == "integrity":
            self.metrics.integrity_errors.labels(adapter.gateway_type).inc()
            log.error("gateway refund amount differs from the refund's", extra=extra)
        return applied

    async def apply_event(self, adapter: Adapter, event: WebhookEvent) -> Applied:
        """A verified refund webhook. A number that is not one of ours is acknowledged, unknown."""
        assert event.refund is not None
        if keys.bucket_of(event.refund.refund_no, keys.REFUND_NO) is None:
            return Applied("missing", "", 0)
        return await self.apply(event.refund, adapter, source="webhook", event_id=event.event_id)


class RefundSweeper(Worker):
    """Resolves processing refunds whose call is over (``Refunds.resolve``), leased like the
    expiry sweep, so any number of processes share the work and none asks twice at once."""

    name = "refunds"

    def __init__(self, redis: Any, refunds: Refunds, metrics: Metrics, lease_ms: int = LEASE_MS) -> None:
        super().__init__()
        self.refunds = refunds
        self.metrics = metrics
        self.schedule = Schedule(redis, keys.refund_due, keys.refund_prefix, name_of(Refund, "status"), FINAL,
                                 lease_ms)

    async def report(self, backlog: int, oldest_due_ms: int | None, now: int) -> None:
        self.metrics.refunds_due.set(backlog)

    async def handle(self, claim: Claim, now: int) -> int | None:
        refund = Refund.from_hash(claim.record)
        if refund.status in states.REFUND_FINAL:
            return None
        if (refund.calling_until or 0) > now:  # its first call is still talking to the gateway
            return refund.calling_until
        refund = await self.refunds.resolve(refund)
        return None if refund.status in states.REFUND_FINAL else next_look_ms(refund, now)

    async def retry_at(self, claim: Claim, now: int, exc: Exception) -> int:
        attempt = await self.refunds.store.count_sweep_attempt(claim.id)
        return now + backoff_ms(attempt - 1, RETRY_BASE_MS, RETRY_CAP_MS)
