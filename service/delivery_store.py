"""The notifications' side of the store: every read and write of a delivery hash, the outbox and
the dead set that is not part of a transition (the transition script enqueues a delivery together
with the change it tells of; see ``service/lua/transition.lua``). Key names are ``service.keys``';
a delivery hash is a ``service.model.Delivery``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from redis.exceptions import WatchError

from service import errors, keys
from service.model import Delivery, DeliveryState
from service.store import guarded, load_script

# what one attempt writes (``record_attempt``) and a re-send (``resend``)
ATTEMPT = ("attempts", "window_attempts", "last_attempt_at", "state", "next_at", "last_status_code", "last_error")
RESEND = ("state", "next_at", "window_start", "window_attempts")


class DeliveryStore:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._attempt = redis.register_script(load_script("delivery_attempt"))

    async def of_payment(self, bucket: int, payment_id: str) -> list[Delivery]:
        """A payment's deliveries, oldest first."""
        async def read() -> list[dict[str, str]]:
            ids = await self.redis.lrange(keys.deliveries(bucket, payment_id), 0, -1)
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hgetall(keys.delivery(bucket, id_))
                return [found for found in await pipe.execute() if found]

        return [Delivery.from_hash(found) for found in await guarded(read())]

    async def record_attempt(self, bucket: int, delivery: Delivery, outcome: str, answer: str, now: int, *,
                             claim: str) -> bool:
        """Write one attempt's outcome (``delivery`` as it is after the attempt: its ``ATTEMPT``
        fields, ``next_at`` when to try again; ``outcome`` delivered, failed or dead; ``answer``
        the receiver's, or why none) with its entry in the payment's timeline, and end the
        sender's ``claim`` (``service/lua/delivery_attempt.lua``); False: the claim was no longer
        the sender's."""
        fields, cleared = delivery.spelled(*ATTEMPT)
        pid = delivery.payment_id
        return bool(await guarded(self._attempt(
            keys=[keys.delivery(bucket, delivery.delivery_id), keys.dead(bucket), keys.payment(bucket, pid),
                  keys.events(bucket, pid), keys.stats(bucket, now), keys.outbox(bucket)],
            args=[now, outcome, answer, claim, "" if delivery.next_at is None else delivery.next_at,
                  len(cleared), *cleared, *[v for pair in fields.items() for v in pair]],
        )))

    async def resend(self, bucket: int, payment_id: str, delivery_id: str, now: int) -> Delivery:
        """Make a pending or dead delivery of this payment due now, with a fresh retry window."""
        key, outbox = keys.delivery(bucket, delivery_id), keys.outbox(bucket)

        async def resend(pipe: Any) -> None:
            found = await pipe.hgetall(key)
            delivery = Delivery.from_hash(found) if found else None
            if delivery is None or delivery.payment_id != payment_id:
                raise errors.NotFound("delivery_not_found", f"payment {payment_id} has no delivery "
                                      f"{delivery_id!r}", "deliveryId")
            if delivery.state is DeliveryState.DELIVERED:
                raise errors.Conflict("delivery_delivered", "the notification was delivered already")
            score = await pipe.zscore(outbox, delivery_id)
            if delivery.claim and score is not None and score > now:
                raise errors.Conflict("delivery_in_flight",
                                      "the notification is being sent right now; look again shortly")
            fields, _ = dataclasses.replace(delivery, state=DeliveryState.PENDING, next_at=now, window_start=now,
                                            window_attempts=0).spelled(*RESEND)
            pipe.multi()
            pipe.hset(key, mapping=fields)
            pipe.zadd(outbox, {delivery_id: now})
            pipe.zrem(keys.dead(bucket), delivery_id)

        async def run() -> Delivery:
            try:
                await self.redis.transaction(resend, key, outbox)
            except WatchError as exc:  # a RedisError, but a race, not an outage
                raise errors.Conflict("delivery_in_flight",
                                      "the notification changed while re-sending it; try again") from exc
            await self.redis.publish(keys.wake("outbox"), now)  # due now: wake the senders
            return Delivery.from_hash(await self.redis.hgetall(key))

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

    async def dead(self, limit: int) -> list[Delivery]:
        """The ``limit`` deliveries given up last, across every bucket, the latest first."""
        async def read() -> list[dict[str, str]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in range(keys.BUCKETS):
                    pipe.zrevrange(keys.dead(bucket), 0, limit - 1, withscores=True)
                replies = await pipe.execute()
            latest = sorted(((score, bucket, id_) for bucket, entries in enumerate(replies) for id_, score in entries),
                            reverse=True)[:limit]
            if not latest:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, bucket, id_ in latest:
                    pipe.hgetall(keys.delivery(bucket, id_))
                return [found for found in await pipe.execute() if found]

        return [Delivery.from_hash(found) for found in await guarded(read())]
