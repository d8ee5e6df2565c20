"""The refunds' side of the store: a refund reserved against what its payment has left
(``service/lua/refund.lua``), the gateway's word applied with the payment's sums and the storage
app's notification (``service/lua/refund_apply.lua``), and the reads. Key names are
``service.keys``'; a refund hash is a ``service.model.Refund``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.base import RefundLimits
from service import keys
from service.model import Refund, name_of
from service.store import Applied, guarded, load_script


@dataclass(frozen=True)
class RefundReservation:
    outcome: str  # see refund.lua: new | existing | conflict | missing | not_refundable | exhausted | …
    refund_no: str
    number: int  # new: the refund's amount; over: what remains; below_minimum, too_many: the limit; else 0
    status: str = ""  # not_refundable: the payment's status


def bucket_of(refund_no: str) -> int | None:
    return keys.bucket_of(refund_no, keys.REFUND_NO)


class RefundStore:
    def __init__(self, redis: Any, retention_seconds: int) -> None:
        self.redis = redis
        self.retention_ms = retention_seconds * 1000
        self._reserve = redis.register_script(load_script("refund"))
        self._apply = redis.register_script(load_script("refund_apply"))

    async def reserve(self, *, client: str, payment_id: str, refund_id: str, refund_no: str,
                      amount: int | None, reason: str | None, fingerprint: str, limits: RefundLimits,
                      now_ms: int, lease_ms: int) -> RefundReservation:
        bucket = keys.bucket_of(payment_id)
        assert bucket is not None and bucket_of(refund_no) == bucket
        outcome, found, *number = await guarded(self._reserve(
            keys=[keys.payment(bucket, payment_id), keys.refunds(bucket, payment_id),
                  keys.refund(bucket, refund_no), keys.refund_due(bucket), keys.refund_prefix(bucket),
                  keys.events(bucket, payment_id)],
            args=[now_ms, refund_id, refund_no, "" if amount is None else amount, reason or "", fingerprint,
                  limits.minimum_minor, "1" if limits.partial else "0",
                  "" if limits.max_per_payment is None else limits.max_per_payment, lease_ms, client,
                  payment_id, self.retention_ms],
        ))
        if outcome == "not_refundable":
            return RefundReservation(outcome, "", 0, status=str(found))
        return RefundReservation(str(outcome), str(found), int(number[0]) if number else 0)

    async def apply(self, refund_no: str, *, gateway: str, now_ms: int, status: str, gateway_state: str,
                    reference: str | None = None, failure_reason: str | None = None,
                    amount: int | None = None, event: tuple[str, str] | None = None,
                    next_look_ms: int = 0, delivery_id: str = "", source: str) -> Applied:
        bucket = bucket_of(refund_no)
        assert bucket is not None
        refund_key = keys.refund(bucket, refund_no)
        payment_id = await guarded(self.redis.hget(refund_key, name_of(Refund, "payment_id")))
        if payment_id is None:
            return Applied("missing", "", 0)
        outcome, previous, version = await guarded(self._apply(
            keys=[refund_key, keys.payment(bucket, payment_id), keys.refund_due(bucket), keys.outbox(bucket),
                  keys.event(bucket, *event) if event else refund_key, keys.delivery(bucket, delivery_id),
                  keys.deliveries(bucket, payment_id), keys.events(bucket, payment_id), keys.index_prefix(bucket)],
            args=[now_ms, status, gateway_state, reference or "", failure_reason or "",
                  keys.EVENT_TTL if event else "", self.retention_ms, delivery_id, gateway, next_look_ms,
                  "" if amount is None else amount, source],
        ))
        return Applied(str(outcome), str(previous), int(version or 0))

    async def get(self, refund_no: str) -> Refund | None:
        bucket = bucket_of(refund_no)
        if bucket is None:
            return None
        found: dict[str, str] = await guarded(self.redis.hgetall(keys.refund(bucket, refund_no)))
        return Refund.from_hash(found) if found else None

    async def number_of(self, payment_id: str, refund_id: str) -> str | None:
        bucket = keys.bucket_of(payment_id)
        if bucket is None:
            return None
        found: str | None = await guarded(self.redis.hget(keys.refunds(bucket, payment_id), refund_id))
        return found

    async def of_payment(self, payment_id: str) -> list[Refund]:
        """A payment's refunds, oldest first."""
        bucket = keys.bucket_of(payment_id)
        if bucket is None:
            return []
        numbers = list((await guarded(self.redis.hgetall(keys.refunds(bucket, payment_id)))).values())
        if not numbers:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hgetall(keys.refund(bucket, number))
            found = await guarded(pipe.execute())
        refunds = [Refund.from_hash(one) for one in found if one]
        return sorted(refunds, key=lambda refund: refund.sequence)

    async def count_sweep_attempt(self, refund_no: str) -> int:
        bucket = bucket_of(refund_no)
        assert bucket is not None
        key = keys.refund(bucket, refund_no)
        return int(await guarded(self.redis.hincrby(key, name_of(Refund, "sweep_attempts"), 1)))
