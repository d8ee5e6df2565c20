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
from adapters.errors import GatewayError, WebhookError
from service import keys
from service.metrics import Metrics
from service.problems import ApiError
from service.settings import Client, Settings
from service.store import Applied, Record, Store, StoreUnavailable
from service.validation import TransactionRequest

log = logging.getLogger("payrelay.payments")
T = TypeVar("T")

FIRST_SYNC_MS = 60_000  # a processing payment is first asked about after a minute
WAIT_POLL_S = 0.02


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
                payment_id=payment_id, deadline_ms=expires_at, now_ms=now, record=new_record,
            )
            if reservation.outcome == "conflict":
                raise ApiError(
                    409, "transaction_conflict",
                    f"transaction {request.transaction_id!r} already has a payment with different "
                    "fields; use a new transactionId or send the same request",
                    "transactionId",
                )
            if reservation.outcome == "wait":  # a concurrent duplicate is creating it right now
                await asyncio.sleep(WAIT_POLL_S)
                continue
            if reservation.outcome == "new":  # what the script just wrote is all the gateway call reads:
                return await self._open_at_gateway(adapter, new_record)  # no read back (bench/README.md)
            record = await self.store.get(reservation.payment_id)
            if record is None:  # its create was refused in the meantime: start over
                continue
            if reservation.outcome == "existing":
                return record
            return await self._open_at_gateway(adapter, record)

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

    async def _open_at_gateway(self, adapter: Adapter, record: Record) -> Record:
        payment_id = record["paymentId"]
        request = CreateRequest(
            payment_id=payment_id,
            amount=Money(int(record["amount"]), record["currency"]),
            description=record["description"],
            complete_url=record["completeUrl"],
            cancel_url=record["cancelUrl"],
            expires_at=int(record["expiresAt"]) // 1000,
            customer=record["customerIdentifier"] or None,
            online=record["online"] == "1",
            save_method=record["saveMethod"] == "1",
        )
        try:
            created: Created = await self.gateway_call(adapter, "create", adapter.create(request))
        except GatewayError as exc:
            if exc.retryable:  # the reservation stays, free at once: a retry reuses paymentId
                await self.store.release(payment_id)  # (the gateway's idempotency key)
            else:  # refused for good: as if it never was, a retry starts afresh
                await self.store.abort(payment_id, record["client"], record["transactionId"])
            log.warning("gateway create failed", extra={"paymentId": payment_id,
                        "gateway": adapter.gateway_type, "outcome": type(exc).__name__})
            raise
        await self.store.finalize(payment_id, created.payment_url or "", created.gateway_reference or "",
                                  now_ms())
        if created.status is not Status.WAITING:  # an off-session charge ends at once
            await self.apply(GatewayState(payment_id, created.status, "create",
                                          created.gateway_reference, failure_reason=created.failure_reason),
                             adapter, source="create")
        log.info("payment created", extra={"paymentId": payment_id, "gateway": adapter.gateway_type,
                                           "outcome": created.status.value})
        return await self._must_get(payment_id)

    async def _must_get(self, payment_id: str) -> Record:
        record = await self.store.get(payment_id)
        if record is None:
            raise StoreUnavailable(f"payment {payment_id} vanished")
        return record

    # -- look up --------------------------------------------------------------------------------

    async def get(self, client: Client, payment_id: str) -> Record:
        record = await self.store.get(payment_id)
        if record is None or record["client"] != client.name:
            raise ApiError(404, "payment_not_found", f"no payment {payment_id!r}", "paymentId")
        return record

    async def find(self, client: Client, transaction_id: str) -> Record:
        record = await self.store.find(client.name, transaction_id)
        if record is None:
            raise ApiError(404, "payment_not_found", f"no payment for transaction {transaction_id!r}",
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
            event=(adapter.webhook_name, event_id) if event_id else None,
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
        return applied

    async def sync(self, record: Record) -> Record:
        """Ask the gateway about one payment and apply its answer."""
        adapter = self.adapters.get(record["gateway"])
        if adapter is None:
            raise ApiError(503, "gateway_not_configured", f"{record['gateway']} is not configured")
        if record["status"] == "creating":
            return record
        state = await self.gateway_call(adapter, "query", adapter.query(ref_of(record)))
        if state.status is not None:
            await self.apply(state, adapter, source="query")
        return await self._must_get(record["paymentId"])

    async def close(self, record: Record) -> Record:
        """Close a payment: ask first, close at the gateway if nobody paid, then mark what the
        gateway says. The same path serves close requests and the expiry sweep."""
        adapter = self.adapters.get(record["gateway"])
        if adapter is None:
            raise ApiError(503, "gateway_not_configured", f"{record['gateway']} is not configured")
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
        except WebhookError as exc:
            self.metrics.webhooks.labels(name, "rejected").inc()
            log.warning("webhook rejected: %s", exc, extra={"gateway": adapter.gateway_type,
                                                            "outcome": "rejected"})
            return adapter.webhook_fail(400, str(exc))
        if event is None:
            self.metrics.webhooks.labels(name, "ignored").inc()
            return adapter.webhook_ok()
        try:
            applied = None
            if keys.bucket_of(event.state.payment_id) is not None:  # else not one of ours at all
                applied = await self.apply(event.state, adapter, source="webhook", event_id=event.event_id)
        except StoreUnavailable:
            self.metrics.webhooks.labels(name, "unavailable").inc()
            log.error("webhook not stored: Redis unavailable", extra={"gateway": adapter.gateway_type,
                                                                      "outcome": "unavailable"})
            return adapter.webhook_fail(503, "temporarily unable to store the event")
        if applied is None or applied.outcome in ("missing", "foreign"):
            self.metrics.webhooks.labels(name, "unknown").inc()
            log.info("webhook for an unknown payment acknowledged",
                     extra={"paymentId": event.state.payment_id, "gateway": adapter.gateway_type,
                            "outcome": "unknown"})
            return adapter.webhook_ok()
        outcome = {"integrity": "integrity_error", "duplicate": "duplicate"}.get(applied.outcome, "verified")
        self.metrics.webhooks.labels(name, outcome).inc()
        return adapter.webhook_ok()
