"""The expiry sweeper and the sync of in-flight payments.

Every open payment has an entry in its bucket's due set: for ``waiting`` its expiry, for
``processing`` its next sync. Due entries are claimed with a lease (``service.schedule``), so any
number of processes sweep without doing a payment twice. A due payment is settled through
``Payments.close`` / ``Payments.sync``: ask the gateway first (paid → succeeded; in flight → keep
watching), otherwise close the order at the gateway, then mark what the gateway says. Gateway
trouble reschedules with backoff; nothing is marked closed without the gateway's word.
"""

from __future__ import annotations

from typing import Any

from adapters.errors import GatewayError
from service import keys, states
from service.metrics import Metrics
from service.model import Payment, name_of
from service.payments import Payments
from service.schedule import Claim, Schedule, backoff_ms
from service.workers import FINISHED, Finished, Worker

FINAL = tuple(sorted(state.value for state in states.FINAL))
SYNC_SOON_MS = 5 * 60_000  # processing: every 5 min for its first hour, then hourly
SYNC_LATER_MS = 60 * 60_000
RETRY_BASE_MS = 5_000
RETRY_CAP_MS = 10 * 60_000
LEASE_MS = 120_000


def next_sync_ms(payment: Payment, now: int) -> int:
    in_flight_ms = now - payment.updated_at
    return now + (SYNC_SOON_MS if in_flight_ms < SYNC_LATER_MS else SYNC_LATER_MS)


class ExpirySweeper(Worker):
    name = "expiry"

    def __init__(self, redis: Any, payments: Payments, metrics: Metrics, lease_ms: int = LEASE_MS) -> None:
        super().__init__()
        self.payments = payments
        self.metrics = metrics
        self.schedule = Schedule(redis, keys.due, keys.payment_prefix, name_of(Payment, "status"), FINAL,
                                 lease_ms)

    async def report(self, backlog: int, oldest_due_ms: int | None, now: int) -> None:
        await self.payments.listing.trim(now)  # hourly: the listing's entries of payments gone
        self.metrics.due_backlog.set(backlog)
        self.metrics.due_oldest_age.set(0 if oldest_due_ms is None else max(0, now - oldest_due_ms) / 1000)

    async def handle(self, claim: Claim, now: int) -> int | Finished | None:
        payment = Payment.from_hash(claim.record)
        if payment.status in states.FINAL:
            return None
        status = payment.status
        holder_until = payment.creating_until or 0
        if status == states.S.CREATING and holder_until > now:  # a create still talking to the gateway
            return holder_until
        if status == states.S.CREATING:  # its process died, or its gateway call ended without an answer
            payment = await self.payments.recover(payment)
        elif status == states.S.PROCESSING:
            payment = await self.payments.sync(payment, source="sweep")
        elif payment.expires_at > now:
            return payment.expires_at
        else:
            payment = await self.payments.close(payment, source="sweep")
        if payment.sweep_attempts:
            await self.payments.store.clear_sweep_attempts(claim.id)
        if payment.status in states.FINAL:  # the transition took it off the due set, its claim too
            return FINISHED
        if payment.status == states.S.CREATING:  # another process took the create over meanwhile
            return payment.creating_until if payment.creating_until is not None else now
        if payment.status == states.S.WAITING and payment.expires_at > now:
            return payment.expires_at
        return next_sync_ms(payment, now)

    async def retry_at(self, claim: Claim, now: int, exc: Exception) -> int:
        attempt = await self.payments.store.count_sweep_attempt(claim.id)
        if isinstance(exc, GatewayError):  # the gateway's trouble, for whoever looks at the payment
            await self.payments.timeline.record(claim.id, "gateway_error", source="sweep", detail=exc.message)
        return now + backoff_ms(attempt - 1, RETRY_BASE_MS, RETRY_CAP_MS)
