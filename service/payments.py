"""The payment service: create, look up, sync and close payments, and apply gateway evidence.

``Payments.apply`` is the one function through which any gateway's word (webhook, query, close,
expiry sweep, off-session result) becomes a status; the transition itself is one Lua script, so a
webhook and a query racing each other give one transition.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from adapters.base import (
    Adapter,
    Created,
    CreateRequest,
    GatewayState,
    Money,
    PaymentRef,
    Status,
    WebhookReply,
)
from adapters.errors import GatewayError, GatewayUnavailable, WebhookError, WebhookMismatch
from service import errors, keys
from service.metrics import Metrics
from service.settings import Client, Settings
from service.states import OPEN, PaymentState
from service.store import Applied, Record, Store, StoreUnavailable
from service.validation import TransactionRequest

log = logging.getLogger("payrelay.payments")
T = TypeVar("T")

FIRST_SYNC_MS = 60_000  # a processing payment is first asked about after a minute
WAIT_POLL_S = 0.02
# after a create's gateway call failed without a clear answer, the sweeper asks the gateway what
# it made this long after (unless a retry of the same request does it first)
RESUME_AFTER_MS = 5_000


def now_ms() -> int:
    return int(time.time() * 1000)


def ref_of(record: Record) -> PaymentRef:
    return PaymentRef(
        payment_id=record["paymentId"],
        gateway_reference=record.get("gatewayReference") or None,
        amount=Money(int(record["amount"]), record["currency"]),
    )


class Payments:
    def __init__(self, settings: Settings, store: Store, adapters: Mapping[str, Adapter],
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.adapters = dict(adapters)
        self.by_webhook = {a.webhook_name: a for a in adapters.values()}
        self.metrics = metrics

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
                     notify_kind: str = "generic") -> Record:
        adapter = self.adapters[request.gateway]
        bucket = keys.bucket_for(client.name, request.transaction_id)
        fingerprint = request.fingerprint()
        while True:
            now = now_ms()
            payment_id = keys.new_payment_id(bucket)
            expires_at = now + self.settings.payment_ttl * 1000
            new_record = self._new_record(client, request, payment_id, now, expires_at, notify_kind)
            reservation = await self.store.reserve(
                client=client.name, transaction_id=request.transaction_id, fingerprint=fingerprint,
                payment_id=payment_id, now_ms=now, record=new_record,
            )
            if reservation.outcome == "conflict":
                raise errors.Conflict(
                    "transaction_conflict",
                    f"transaction {request.transaction_id!r} already has a payment with different "
                    "fields; use a new transactionId or send the same request",
                    "transactionId",
                )
            if reservation.outcome == "new":  # what the script just wrote is all the gateway call reads:
                return await self._open_at_gateway(adapter, new_record)  # no read back (bench/README.md)
            if reservation.outcome == "wait":  # a concurrent duplicate is creating it right now
                record = await self._await_create(reservation.payment_id)
                if record is None:  # its create was refused meanwhile: start over
                    continue
                return record
            record = await self.store.get(reservation.payment_id)
            if record is None:  # its create was refused in the meantime: start over
                continue
            if reservation.outcome == "existing":
                return record
            return await self._open_at_gateway(adapter, record)

    async def _await_create(self, payment_id: str) -> Record | None:
        """Wait for the create a duplicate holds, and answer what it got. Never take it over: the
        holder's gateway call is as long as a call gets (one gateway timeout), and when it fails
        without an answer, this duplicate answers as it does instead of paying a timeout of its
        own (the next request, or the sweeper, asks the gateway again under the same id).
        None: the create was refused for good and the payment is gone."""
        while True:
            await asyncio.sleep(WAIT_POLL_S)
            record = await self.store.get(payment_id)
            if record is None or record["status"] != PaymentState.CREATING:
                return record
            if int(record.get("creatingUntil") or 0) <= now_ms():
                raise GatewayUnavailable("the gateway did not answer the create of this payment in time; "
                                         "send the same request again")

    def _new_record(self, client: Client, request: TransactionRequest, payment_id: str,
                    now: int, expires_at: int, notify_kind: str) -> Record:
        return {
            "paymentId": payment_id,
            "client": client.name,
            "transactionId": request.transaction_id,
            "gateway": request.gateway,
            "amount": str(request.amount_minor),
            "currency": request.currency,
            "date": request.date,
            "description": request.description,
            "customerIdentifier": request.customer or "",
            "completeUrl": request.complete_url,
            "cancelUrl": request.cancel_url,
            "online": "1" if request.online else "0",
            "saveMethod": "1" if request.save_method else "0",
            "notifyUrl": request.notify_url or client.notify_url or "",
            "notifyKind": notify_kind,
            "createdAt": str(now),
            "updatedAt": str(now),
            "expiresAt": str(expires_at),
        }

    @staticmethod
    def _create_request(record: Record) -> CreateRequest:
        return CreateRequest(
            payment_id=record["paymentId"],
            amount=Money(int(record["amount"]), record["currency"]),
            description=record["description"],
            complete_url=record["completeUrl"],
            cancel_url=record["cancelUrl"],
            expires_at=int(record["expiresAt"]) // 1000,
            customer=record["customerIdentifier"] or None,
            online=record["online"] == "1",
            save_method=record["saveMethod"] == "1",
            created_at=int(record["createdAt"]) // 1000,
        )

    async def _open_at_gateway(self, adapter: Adapter, record: Record) -> Record:
        payment_id = record["paymentId"]
        try:
            created = await self.gateway_call(adapter, "create", adapter.create(self._create_request(record)))
        except GatewayError as exc:
            await self._create_failed(payment_id, record, exc)
            log.warning("gateway create failed", extra={"paymentId": payment_id,
                        "gateway": adapter.gateway_type, "outcome": type(exc).__name__})
            raise
        return await self._settle_create(adapter, payment_id, created, source="create")

    async def _create_failed(self, payment_id: str, record: Record, exc: GatewayError) -> None:
        if exc.outcome_unknown:  # the gateway may have made it: keep the paymentId (its idempotency
            await self.store.release(payment_id, now_ms() + RESUME_AFTER_MS)  # key) for the retry
        else:  # refused for good: as if it never was, a retry starts afresh
            await self.store.abort(payment_id, record["client"], record["transactionId"])

    async def _settle_create(self, adapter: Adapter, payment_id: str, created: Created | None, *,
                             source: str) -> Record:
        """Write what a create made, in one script: an open order becomes waiting with its URL;
        one that ended at once (an off-session charge, an order found paid or closed) moves
        straight from creating to its status, notified like any transition; None (the gateway
        holds nothing) is closed: nobody can pay it."""
        if created is None:
            await self.apply(GatewayState(payment_id, Status.CLOSED, "not_created"), adapter, source=source)
        elif created.status is Status.WAITING:
            await self.store.finalize(payment_id, created.payment_url or "", created.gateway_reference or "",
                                      now_ms())
        else:
            await self.apply(GatewayState(payment_id, created.status, created.gateway_state,
                                          created.gateway_reference, created.amount, created.failure_reason),
                             adapter, source=source)
        record = await self._must_get(payment_id)
        log.info("payment created", extra={"paymentId": payment_id, "gateway": adapter.gateway_type,
                                           "outcome": record["status"], "source": source})
        return record

    async def recover(self, record: Record) -> Record:
        """Resolve a create whose holder is gone (its process died, or its gateway call ended
        without a clear answer): ask the gateway what that create made, under the same identity,
        and move the payment to what the gateway says. A live create is left alone."""
        payment_id = record["paymentId"]
        taken = await self.store.take_over(payment_id, now_ms())
        if taken != "taken":
            return await self._must_get(payment_id) if taken else record
        adapter = self._adapter_of(record)
        try:
            created = await self.gateway_call(adapter, "recover", adapter.recover(self._create_request(record)))
        except GatewayError as exc:
            if exc.outcome_unknown:
                await self.store.release(payment_id, now_ms() + RESUME_AFTER_MS)
                raise
            # refused for good: the gateway made nothing and will not; the payment ends failed
            created = Created(None, None, Status.FAILED, f"the gateway refused the payment: {exc.message}",
                              exc.code or "refused")
        return await self._settle_create(adapter, payment_id, created, source="recovery")

    async def _must_get(self, payment_id: str) -> Record:
        record = await self.store.get(payment_id)
        if record is None:
            raise StoreUnavailable(f"payment {payment_id} vanished")
        return record

    # -- look up --------------------------------------------------------------------------------

    async def get(self, client: Client, payment_id: str) -> Record:
        record = await self.store.get(payment_id)
        if record is None or record["client"] != client.name:
            raise errors.NotFound("payment_not_found", f"no payment {payment_id!r}", "paymentId")
        return record

    async def find(self, client: Client, transaction_id: str) -> Record:
        record = await self.store.find(client.name, transaction_id)
        if record is None:
            raise errors.NotFound("payment_not_found", f"no payment for transaction {transaction_id!r}",
                           "transactionId")
        return record

    # -- the gateway's word ---------------------------------------------------------------------

    async def apply(self, state: GatewayState, adapter: Adapter, *, source: str,
                    event_id: str | None = None) -> Applied:
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
            delivery_id="dlv_" + secrets.token_urlsafe(12),
        )
        extra = {"paymentId": state.payment_id, "gateway": adapter.gateway_type,
                 "outcome": applied.outcome, "source": source}
        if applied.changed:
            target = state.status.value if state.status else ""
            self.metrics.transitions.labels(applied.previous, target).inc()
            if applied.outcome == "late":
                self.metrics.late_payments.labels(adapter.gateway_type).inc()
                log.warning("payment succeeded after it was closed", extra=extra)
            else:
                log.info("payment %s", target, extra=extra)
        elif applied.outcome == "integrity":
            self.metrics.integrity_errors.labels(adapter.gateway_type).inc()
            log.error("gateway amount or currency differs from the payment's", extra=extra)
        elif applied.outcome == "mismatch":
            self.metrics.evidence_mismatches.labels(adapter.gateway_type, source).inc()
            log.error("gateway evidence names another %s object than the payment's (%s): not applied",
                      adapter.gateway_type, state.gateway_reference, extra=extra)
        return applied

    def _adapter_of(self, record: Record) -> Adapter:
        adapter = self.adapters.get(record["gateway"])
        if adapter is None:
            raise errors.NotConfigured("gateway_not_configured", f"{record['gateway']} is not configured")
        return adapter

    async def sync(self, record: Record) -> Record:
        """Ask the gateway about one payment and apply its answer (for one still being
        created: what its create made, once no create holds it)."""
        adapter = self._adapter_of(record)
        if record["status"] == PaymentState.CREATING:
            return await self.recover(record)
        state = await self.gateway_call(adapter, "query", adapter.query(ref_of(record)))
        if state.status is not None:
            await self.apply(state, adapter, source="query")
        return await self._must_get(record["paymentId"])

    async def close(self, record: Record) -> Record:
        """Close a payment: ask first, close at the gateway if nobody paid, then mark what the
        gateway says. The same path serves close requests and the expiry sweep. One still being
        created is first resolved; a live create (it holds its lease) cannot be closed yet."""
        adapter = self._adapter_of(record)
        if record["status"] == PaymentState.CREATING:
            record = await self.recover(record)
            if record["status"] == PaymentState.CREATING:
                raise errors.Conflict("payment_creating", "the payment is still being opened; retry shortly")
            if record["status"] not in OPEN:
                return record
        ref = ref_of(record)
        state = await self.gateway_call(adapter, "query", adapter.query(ref))
        if state.status in (None, Status.WAITING):
            state = await self.gateway_call(adapter, "close", adapter.close(ref))
        if state.status is None:  # the gateway holds no order under this id: nobody can pay it
            state = GatewayState(ref.payment_id, Status.CLOSED, state.gateway_state)
        await self.apply(state, adapter, source="close")
        return await self._must_get(ref.payment_id)

    # -- webhooks -------------------------------------------------------------------------------

    async def webhook(self, name: str, headers: Mapping[str, str], body: bytes) -> WebhookReply | None:
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
            if keys.bucket_of(event.state.payment_id) is not None:  # else not one of ours at all
                applied = await self.apply(event.state, adapter, source="webhook", event_id=event.event_id)
        except StoreUnavailable:
            self.metrics.webhooks.labels(adapter.gateway_type, "unavailable").inc()
            log.error("webhook not stored: Redis unavailable", extra={"gateway": adapter.gateway_type,
                                                                      "outcome": "unavailable"})
            return adapter.webhook_fail(503, "temporarily unable to store the event")
        if applied is None or applied.outcome in ("missing", "foreign"):
            self.metrics.webhooks.labels(adapter.gateway_type, "unknown").inc()
            log.info("webhook for an unknown payment acknowledged",
                     extra={"paymentId": event.state.payment_id, "gateway": adapter.gateway_type,
                            "outcome": "unknown"})
            return adapter.webhook_ok()
        outcome = {"integrity": "integrity_error", "duplicate": "duplicate",
                   "mismatch": "mismatch"}.get(applied.outcome, "verified")
        self.metrics.webhooks.labels(adapter.gateway_type, outcome).inc()
        return adapter.webhook_ok()
