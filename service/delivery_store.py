"""The notifications' side of the store: every read and write of a delivery hash, the outbox and
the dead set that is not part of a transition (the transition script enqueues a delivery together
with the change it tells of; see ``service/lua/transition.lua``). Key names are ``service.keys``'.

A delivery hash: ``id``, ``paymentId``, ``kind`` (generic | cloudreve), ``url``, ``type``,
``version``, ``createdAt``, ``snapshot`` (the payment as of the transition), ``state`` (pending |
delivered | dead), ``nextAt``, ``attempts``, and once attempted ``lastAttemptAt``,
``lastStatusCode``, ``lastError``, ``windowStart``, ``windowAttempts`` (a re-send opens a new
retry window), ``claim`` (the sender holding it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.exceptions import WatchError

from service import errors, keys
from service.store import Record, guarded


class DeliveryStore:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def get(self, bucket: int, delivery_id: str) -> Record | None:
        found: Record = await guarded(self.redis.hgetall(keys.delivery(bucket, delivery_id)))
        return found or None

    async def of_payment(self, bucket: int, payment_id: str) -> list[Record]:
        """A payment's deliveries, oldest first."""
        async def read() -> list[Record]:
            ids = await self.redis.lrange(keys.deliveries(bucket, payment_id), 0, -1)
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hgetall(keys.delivery(bucket, id_))
                return [found for found in await pipe.execute() if found]

        return await guarded(read())

    async def record_attempt(self, bucket: int, delivery_id: str, fields: Mapping[str, Any],
                             cleared: list[str], dead_at: int | None) -> None:
        """Write one attempt's outcome: ``fields`` set, ``cleared`` removed, and the dead set
        told when the delivery is given up (``dead_at``)."""
        key = keys.delivery(bucket, delivery_id)

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=dict(fields))
                if cleared:
                    pipe.hdel(key, *cleared)
                if dead_at is not None:
                    pipe.zadd(keys.dead(bucket), {delivery_id: dead_at})
                await pipe.execute()

        await guarded(write())

    async def resend(self, bucket: int, payment_id: str, delivery_id: str, now: int) -> Record:
        """Make a pending or dead delivery of this payment due now, with a fresh retry window."""
        key, outbox = keys.delivery(bucket, delivery_id), keys.outbox(bucket)

        async def resend(pipe: Any) -> None:
            delivery = await pipe.hgetall(key)
            if not delivery or delivery.get("paymentId") != payment_id:
                raise errors.NotFound("delivery_not_found", f"payment {payment_id} has no delivery "
                                      f"{delivery_id!r}", "deliveryId")
            if delivery.get("state") == "delivered":
                raise errors.Conflict("delivery_delivered", "the notification was delivered already")
            score = await pipe.zscore(outbox, delivery_id)
            if delivery.get("claim") and score is not None and score > now:
                raise errors.Conflict("delivery_in_flight",
                                      "the notification is being sent right now; look again shortly")
            pipe.multi()
            pipe.hset(key, mapping={"state": "pending", "nextAt": now, "windowStart": now, "windowAttempts": 0})
            pipe.zadd(outbox, {delivery_id: now})
            pipe.zrem(keys.dead(bucket), delivery_id)

        async def run() -> Record:
            try:
                await self.redis.transaction(resend, key, outbox)
            except WatchError as exc:  # a RedisError, but a race, not an outage
                raise errors.Conflict("delivery_in_flight",
                                      "the notification changed while re-sending it; try again") from exc
            found: Record = await self.redis.hgetall(key)
            return found

        return await guarded(run())

    async def count_dead(self, oldest_kept: int) -> int:
        """Dead deliveries still kept, across every bucket (older ones are trimmed first)."""
        async def count() -> int:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in range(keys.BUCKETS):
                    pipe.zremrangebyscore(keys.dead(bucket), "-inf", f"({oldest_kept}")
                    pipe.zcard(keys.dead(bucket))
                replies = await pipe.execute()
            return sum(int(n) for n in replies[1::2])

        return await guarded(count())
