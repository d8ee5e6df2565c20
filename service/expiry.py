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

from service import keys, states
from service.metrics import Metrics
from service.payments import Payments
from service.schedule import Claim, Schedule, backoff_ms
from service.workers import Worker

FINAL = tuple(sorted(state.value for state in states.FINAL))
SYNC_SOON_MS = 5 * 60_000  # processing: every 5 min for its first hour, then hourly
SYNC_LATER_MS = 60 * 60_000
RETRY_BASE_MS = 5_000
RETRY_CAP_MS = 10 * 60_000
LEASE_MS = 120_000


def next_sync_ms(record: dict[str, str], now: int) -> int:
    in_flight_ms = now - int(record.get("updatedAt") or record["createdAt"])
    return now + (SYNC_SOON_MS if in_flight_ms < SYNC_LATER_MS else SYNC_LATER_MS)


class ExpirySweeper(Worker):
    name = "expiry"

    def __init__(self, redis: Any, payments: Payments, metrics: Metrics, lease_ms: int = LEASE_MS) -> None:
        self.payments = payments
        self.metrics = metrics
        self.schedule = Schedule(redis, keys.due, keys.payment_prefix, "status", FINAL,
                                 lease_ms)

    async def report(self, backlog: int, oldest_due_ms: int | None, now: int) -> None:
        self.metrics.due_backlog.set(backlog)
        self.metrics.due_oldest_age.set(0 if oldest_due_ms is None else max(0, now - oldest_due_ms) / 1000)

    async def handle(self, claim: Claim, now: int) -> int | None:
        record = await self.payments.store.get(claim.id)
        if record is None or record["status"] in FINAL:
            return None
        status = record["status"]
        holder_until = int(record.get("creatingUntil") or 0)
        if status == states.S.CREATING and holder_until > now:  # a create still talking to the gateway
            return holder_until
        if status == states.S.CREATING:  # its process died, or its gateway call ended without an answer
            record = await self.payments.recover(record)
        elif status == states.S.PROCESSING:
            record = await self.payments.sync(record)
        elif int(record["expiresAt"]) > now:
            return int(record["expiresAt"])
        else:
            record = await self.payments.close(record)
        if record.get("sweepAttempts"):
            await self.payments.store.clear_sweep_attempts(claim.id)
        if record["status"] in FINAL:
            return None
        if record["status"] == states.S.CREATING:  # another process took the create over meanwhile
            return int(record.get("creatingUntil") or now)
        if record["status"] == states.S.WAITING and int(record["expiresAt"]) > now:
            return int(record["expiresAt"])
        return next_sync_ms(record, now)

    async def retry_at(self, claim: Claim, now: int, exc: Exception) -> int:
        attempt = await self.payments.store.count_sweep_attempt(claim.id)
        return now + backoff_ms(attempt - 1, RETRY_BASE_MS, RETRY_CAP_MS)
