"""The payment service: create, look up, sync and close payments, and apply gateway evidence.

``Payments.apply`` is the one function through which any gateway's word (webhook, query, close,
expiry sweep, off-session result) becomes a status; the transition itself is one Lua script, so a
webhook and a query racing each other give one transition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from adapters.base import (
    Adapter,
    Created,
    GatewayState,
    Status,
    WebhookReply,
)
from adapters.errors import GatewayError, GatewayUnavailable, WebhookError, WebhookMismatch
from service import errors, keys
from service.clock import now_ms
from service.listing import Listing
from service.metrics import Metrics
from service.model import Payment, ref_of
from service.refund_store import RefundStore
from service.refunds import Refunds
from service.settings import Client, Settings
from service.states import NOTIFY_DEFAULT, OPEN, PaymentState
from service.stats import Stats
from service.store import Applied, Store, StoreUnavailable
from service.timeline import Timeline
from service.urls import PaymentUrls, create_request_of
from service.validation import TransactionRequest

log = logging.getLogger("payrelay.payments")
T = TypeVar("T")

FIRST_SYNC_MS = 60_000  # a processing payment is first asked about after a minute
WAIT_POLL_S = 0.02
# after a create's gateway call failed without a clear answer, the sweeper asks the gateway what
# it made this long after (unless a retry of the same request does it first)
RESUME_AFTER_MS = 5_000


class Payments:
    def __init__(self, settings: Settings, store: Store, adapters: Mapping[str, Adapter],
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.adapters = dict(adapters)
        self.by_webhook = {a.webhook_name: a for a in adapters.values()}
        self.metrics = metrics
        self.urls = PaymentUrls(self.adapters)  # what shows a payment shows it through urls.shown
        self.refunds = Refunds(self, RefundStore(store.redis, settings.retention_seconds))
        self.listing = Listing(store, [client.name for client in settings.all_clients])
        self.timeline = Timeline(store.redis)
        self.stats = Stats(store.redis)

    async def gateway_call(self, adapter: Adapter, operation: str, call: Awaitable[T]) -> T:
        """Every gateway call goes through here: timed, counted and logged by outcome."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await call
        except GatewayError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            labels = (adapter.gateway_type, operation)
            self.metrics.gateway_calls.labels(*labels, outcome).inc()
            self.metrics.gateway_latency.labels(*labels).observe(time.perf_counter() - started)

    # -- create ---------------------------------------------------------------------------------

    async def create(self, client: Client, request: TransactionRequest, *,
                     notify_kind: str = NOTIFY_DEFAULT) -> Payment:
        adapter = self.adapters[request.gateway]
        bucket = keys.bucket_for(client.name, request.transaction_id)
        while True:
            now = now_ms()
            payment_id = keys.new_payment_id(bucket)
            expires_at = now + self.settings.payment_ttl * 1000
            new_payment = self._new_payment(client, request, payment_id, now, expires_at, notify_kind)
            if adapter.creates_offline:  # opened before it is stored: one write (bench/README.md)
                new_payment = await self._opened_offline(adapter, new_payment)
            reservation = await self.store.reserve(self.urls.kept(new_payment), now_ms=now)
            if reservation.outcome == "conflict":
                raise errors.Conflict(
                    "transaction_conflict",
                    f"transaction {request.transaction_id!r} already has a payment with different "
                    "fields; use a new transactionId or send the same request",
                    "transactionId",
                )
            if reservation.outcome == "new" and new_payment.status is PaymentState.WAITING:
                return self._created(new_payment, "create")
            if reservation.outcome == "new":  # what the script just wrote is all the gateway call reads:
                return await self._open_at_gateway(adapter, new_payment)  # no read back (bench/README.md)
            if reservation.outcome == "wait":  # a concurrent duplicate is creating it right now
                payment = await self._await_create(reservation.payment_id)
                if payment is None:  # its create was refused meanwhile: start over
                    continue
                return payment
            payment = await self.store.get(reservation.payment_id)
            if payment is None:  # its create was refused in the meantime: start over
                continue
            if reservation.outcome == "existing":
                return payment
            return await self._open_at_gateway(adapter, payment)

    async def _await_create(self, payment_id: str) -> Payment | None:
        """Wait for the create a duplicate holds, and answer what it got. Never take it over: the
        holder's gateway call is as long as a call gets (one gateway timeout), and when it fails
        without an answer, this duplicate answers as it does instead of paying a timeout of its
        own (the next request, or the sweeper, asks the gateway again under the same id).
        None: the create was refused for good and the payment is gone."""
        while True:
            await asyncio.sleep(WAIT_POLL_S)
            payment = await self.store.get(payment_id)
            if payment is None or payment.status != PaymentState.CREATING:
                return payment
            if (payment.creating_until or 0) <= now_ms():
                raise GatewayUnavailable("the gateway did not answer the create of this payment in time; "
                                         "send the same request again")

    @staticmethod
    def _new_payment(client: Client, request: TransactionRequest, payment_id: str,
                     now: int, expires_at: int, notify_kind: str) -> Payment:
        """The payment a create reserves: creating, under its lease (as create.lua stores it)."""
        return Payment(
            payment_id=payment_id,
            client=client.name,
            transaction_id=request.transaction_id,
            gateway=request.gateway,
            amount=request.amount_minor,
            currency=request.currency,
            date=request.date,
            description=request.description,
            customer_identifier=request.customer or None,
            complete_url=request.complete_url,
            cancel_url=request.cancel_url,
            online=request.online,
            save_method=request.save_method,
            notify_url=request.notify_url or client.notify_url or None,
            notify_kind=notify_kind,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            status=PaymentState.CREATING,
            version=0,
            fingerprint=request.fingerprint(),
            creating_until=now + keys.CREATING_LEASE_MS,
        )

    async def _opened_offline(self, adapter: Adapter, payment: Payment) -> Payment:
        """A payment whose gateway's create makes no call (it signs a URL), opened before it is
        stored. A refusal here stores nothing."""
        created = await self.gateway_call(adapter, "create", adapter.create(create_request_of(payment)))
        if created.status is not Status.WAITING or not created.payment_url:
            raise GatewayError(f"{adapter.gateway_type} opened no payment page")
        return dataclasses.replace(payment, status=PaymentState.WAITING, payment_url=created.payment_url,
                                   gateway_reference=created.gateway_reference, creating_until=None,
                                   opened_at=payment.created_at)

    async def _open_at_gateway(self, adapter: Adapter, payment: Payment) -> Payment:
        payment_id = payment.payment_id
        try:
            created = await self.gateway_call(adapter, "create", adapter.create(create_request_of(payment)))
        except GatewayError as exc:
            await self._create_failed(payment, exc)
            log.warning("gateway create failed", extra={"paymentId": payment_id,
                        "gateway": adapter.gateway_type, "outcome": type(exc).__name__})
            raise
        return await self._settle_create(adapter, payment_id, created, source="create")

    async def _create_failed(self, payment: Payment, exc: GatewayError) -> None:
        if exc.outcome_unknown:  # the gateway may have made it: keep the paymentId (its idempotency
            now = now_ms()  # key) for the retry
            await self.store.release(payment.payment_id, now + RESUME_AFTER_MS, now_ms=now, why=exc.message)
        else:  # refused for good: as if it never was, a retry starts afresh
            await self.store.abort(payment.payment_id, payment.client, payment.transaction_id)

    async def _settle_create(self, adapter: Adapter, payment_id: str, created: Created | None, *,
                             source: str) -> Payment:
        """Write what a create made, in one script: an open order becomes waiting with its URL;
        one that ended at once (an off-session charge, an order found paid or closed) moves
        straight from creating to its status, notified like any transition; None (the gateway
        holds nothing) is closed: nobody can pay it."""
        if created is not None and created.status is Status.WAITING:
            payment = await self.store.finalize(payment_id, created.payment_url or "",
                                                created.gateway_reference or "", now_ms())
        else:
            state = GatewayState(payment_id, Status.CLOSED, "not_created") if created is None else GatewayState(
                payment_id, created.status, created.gateway_state, created.gateway_reference, created.amount,
                created.failure_reason)
            payment = await self._applied(state, adapter, source=source)
        return self._created(payment, source)

    @staticmethod
    def _created(payment: Payment, source: str) -> Payment:
        log.info("payment created", extra={"paymentId": payment.payment_id, "gateway": payment.gateway,
                                           "outcome": payment.status, "source": source})
        return payment

    async def recover(self, payment: Payment) -> Payment:
        """Resolve a create whose holder is gone (its process died, or its gateway call ended
        without a clear answer): ask the gateway what that create made, under the same identity,
        and move the payment to what the gateway says. A live create is left alone."""
        payment_id = payment.payment_id
        taken = await self.store.take_over(payment_id, now_ms())
        if taken != "taken":
            return await self._must_get(payment_id) if taken else payment
        adapter = self.adapter_of(payment)
        try:
            created = await self.gateway_call(adapter, "recover", adapter.recover(create_request_of(payment)))
        except GatewayError as exc:
            if exc.outcome_unknown:
                now = now_ms()
                await self.store.release(payment_id, now + RESUME_AFTER_MS, now_ms=now, why=exc.message)
                raise
            # refused for good: the gateway made nothing and will not; the payment ends failed
            created = Created(None, None, Status.FAILED, f"the gateway refused the payment: {exc.message}",
                              exc.code or "refused")
        return await self._settle_create(adapter, payment_id, created, source="recovery")

    async def _must_get(self, payment_id: str) -> Payment:
        payment = await self.store.get(payment_id)
        if payment is None:
            raise StoreUnavailable(f"payment {payment_id} vanished")
        return payment

    # -- look up --------------------------------------------------------------------------------

    async def get(self, client: Client, payment_id: str) -> Payment:
        payment = await self.store.get(payment_id)
        if payment is None or payment.client != client.name:
            raise errors.NotFound("payment_not_found", f"no payment {payment_id!r}", "paymentId")
        return payment

    async def find(self, client: Client, transaction_id: str) -> Payment:
        payment = await self.store.find(client.name, transaction_id)
        if payment is None:
            raise errors.NotFound("payment_not_found", f"no payment for transaction {transaction_id!r}",
                           "transactionId")
        return payment

    # -- the gateway's word ---------------------------------------------------------------------

    async def apply(self, state: GatewayState, adapter: Adapter, *, source: str,
                    event_id: str | None = None, received_ms: int | None = None, answer: bool = False) -> Applied:
        """Apply the gateway's word; ``source`` (webhook, sync, sweep, close, create, recovery) goes
        to the timeline, and a webhook's ``received_ms`` to the latency the console charts;
        ``answer``: with the payment as it is then."""
        now = now_ms()
        applied = await self.store.apply(
            state.payment_id,
            gateway=adapter.gateway_type,
            now_ms=now,
            status=state.status.value if state.status else None,
            gateway_state=state.gateway_state,
            reference=state.gateway_reference,
            amount=(state.amount.minor, state.amount.currency) if state.amount else None,
            failure_reason=state.failure_reason,
            event=(adapter.gateway_type, event_id) if event_id else None,
            next_sync_ms=now + FIRST_SYNC_MS,
            delivery_id="dlv_" + secrets.token_urlsafe(12), source=source, received_ms=received_ms,
            answer=answer,
        )
        extra = {"paymentId": state.payment_id, "gateway": adapter.gateway_type,
                 "outcome": applied.outcome, "source": source}
        if applied.changed:
            target = state.status.value if state.status else ""
            self.metrics.transitions.labels(applied.previous, target).inc()
            if applied.outcome == "late":
                self.metrics.late_payments.labels(adapter.gateway_type).inc()
                log.warning("%s → %s: paid after it was closed (late payment)", applied.previous, target,
                            extra=extra)
            else:
                log.info("%s → %s", applied.previous, target, extra=extra)
        elif applied.outcome == "integrity":
            self.metrics.integrity_errors.labels(adapter.gateway_type).inc()
            log.error("gateway amount or currency differs from the payment's", extra=extra)
        elif applied.outcome == "mismatch":
            self.metrics.evidence_mismatches.labels(adapter.gateway_type, source).inc()
            log.error("gateway evidence names another %s object than the payment's (%s): not applied",
                      adapter.gateway_type, state.gateway_reference, extra=extra)
        return applied

    async def _applied(self, state: GatewayState, adapter: Adapter, *, source: str) -> Payment:
        """Apply the gateway's word, and answer the payment as it is then."""
        applied = await self.apply(state, adapter, source=source, answer=True)
        return applied.payment if applied.payment is not None else await self._must_get(state.payment_id)

    def adapter_of(self, payment: Payment) -> Adapter:
        adapter = self.adapters.get(payment.gateway)
        if adapter is None:
            raise errors.NotConfigured("gateway_not_configured", f"{payment.gateway} is not configured")
        return adapter

    async def sync(self, payment: Payment, *, source: str = "sync") -> Payment:
        """Ask the gateway about one payment and apply its answer (for one still being
        created: what its create made, once no create holds it)."""
        adapter = self.adapter_of(payment)
        if payment.status == PaymentState.CREATING:
            return await self.recover(payment)
        state = await self.gateway_call(adapter, "query", adapter.query(ref_of(payment)))
        if state.status is None:
            return await self._must_get(payment.payment_id)
        return await self._applied(state, adapter, source=source)

    async def close(self, payment: Payment, *, source: str = "close") -> Payment:
        """Close a payment: ask first, close at the gateway if nobody paid, then mark what the
        gateway says. The same path serves close requests and the expiry sweep. One still being
        created is first resolved; a live create (it holds its lease) cannot be closed yet."""
        adapter = self.adapter_of(payment)
        if payment.status == PaymentState.CREATING:
            payment = await self.recover(payment)
            if payment.status == PaymentState.CREATING:
                raise errors.Conflict("payment_creating", "the payment is still being opened; retry shortly")
            if payment.status not in OPEN:
                return payment
        ref = ref_of(payment)
        state = await self.gateway_call(adapter, "query", adapter.query(ref))
        if state.status in (None, Status.WAITING):
            state = await self.gateway_call(adapter, "close", adapter.close(ref))
        if state.status is None:  # the gateway holds no order under this id: nobody can pay it
            state = GatewayState(ref.payment_id, Status.CLOSED, state.gateway_state)
        return await self._applied(state, adapter, source=source)

    # -- webhooks -------------------------------------------------------------------------------

    async def webhook(self, name: str, headers: Mapping[str, str], body: bytes) -> WebhookReply | None:
        received = now_ms()
        adapter = self.by_webhook.get(name)
        if adapter is None:
            return None
        try:
            event = await adapter.parse_webhook(headers, body)
        except WebhookMismatch as exc:
            self.metrics.webhooks.labels(adapter.gateway_type, "mismatch").inc()
            log.warning("webhook about another merchant or app acknowledged: %s", exc,
                        extra={"gateway": adapter.gateway_type, "outcome": "mismatch"})
            return adapter.webhook_ok()
        except WebhookError as exc:
            self.metrics.webhooks.labels(adapter.gateway_type, "rejected").inc()
            log.warning("webhook rejected: %s", exc, extra={"gateway": adapter.gateway_type,
                                                            "outcome": "rejected"})
            return adapter.webhook_fail(400, str(exc))
        if event is None:
            self.metrics.webhooks.labels(adapter.gateway_type, "ignored").inc()
            return adapter.webhook_ok()
        try:
            applied = None
            if event.refund is not None:
                applied = await self.refunds.apply_event(adapter, event)
            state = event.state
            if state is not None and keys.bucket_of(state.payment_id) is not None:  # else not one of ours
                paid = await self.apply(state, adapter, source="webhook", event_id=event.event_id,
                                        received_ms=received)
                applied = paid if applied is None or applied.outcome == "missing" else applied
        except StoreUnavailable:
            self.metrics.webhooks.labels(adapter.gateway_type, "unavailable").inc()
            log.error("webhook not stored: Redis unavailable", extra={"gateway": adapter.gateway_type,
                                                                      "outcome": "unavailable"})
            return adapter.webhook_fail(503, "temporarily unable to store the event")
        if applied is None or applied.outcome in ("missing", "foreign"):
            self.metrics.webhooks.labels(adapter.gateway_type, "unknown").inc()
            about = event.state.payment_id if event.state else event.refund.refund_no if event.refund else ""
            log.info("webhook for an unknown payment or refund acknowledged",
                     extra={"paymentId": about, "gateway": adapter.gateway_type, "outcome": "unknown"})
            return adapter.webhook_ok()
        outcome = {"integrity": "integrity_error", "duplicate": "duplicate",
                   "mismatch": "mismatch"}.get(applied.outcome, "verified")
        self.metrics.webhooks.labels(adapter.gateway_type, outcome).inc()
        return adapter.webhook_ok()
