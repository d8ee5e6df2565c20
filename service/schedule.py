"""Leased claims on the per-bucket schedules (the due set and the outbox), shared by all workers.

Any number of processes sweep the same schedules: a claim moves an entry's score to the end of
its lease, so nobody else sees it as due; ending the claim reschedules or drops it. A process that
dies simply lets its leases run out, and the entries fall due again for the others.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service import keys
from service.store import as_hash, guarded, load_script, run_many


@dataclass(frozen=True)
class Look:
    counts: dict[int, int]  # bucket → entries due now
    oldest_due: int | None  # the score of the longest-waiting due entry
    soonest: int | None  # the first score of all, due or not (None: the schedule is empty)


@dataclass(frozen=True)
class Claim:
    bucket: int
    id: str
    # the entry's hash as of the claim (the claim's own token in it), for its handler
    record: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)


def backoff_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    """Exponential backoff with full jitter in its upper half."""
    delay = min(cap_ms, base_ms * 2 ** min(attempt, 30))
    return delay // 2 + random.randint(0, delay // 2)


class Schedule:
    """One kind of schedule across all buckets: ``zset(bucket)`` and ``entry(bucket, id)``."""

    def __init__(self, redis: Any, zset: Callable[[int], str], entry_prefix: Callable[[int], str],
                 done_field: str, done_values: tuple[str, ...], lease_ms: int) -> None:
        self.redis = redis
        self.zset = zset
        self.entry_prefix = entry_prefix
        self.done_field = done_field
        self.done_values = done_values
        self.lease_ms = lease_ms
        self.token = secrets.token_hex(8)  # this process's claims
        self.held: set[Claim] = set()
        self._claim = redis.register_script(load_script("claim"))
        self._reschedule = redis.register_script(load_script("reschedule"))

    @property
    def channel(self) -> str:
        """Where the scripts announce an entry due soon in this schedule (``keys.wake``)."""
        return keys.wake(self.zset(0).rpartition(":")[2])

    async def look(self, now_ms: int) -> Look:
        """How many entries are due per bucket, the oldest due score, and the soonest score of
        all: one round trip (the first entry of each bucket), two when something is due."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in range(keys.BUCKETS):
                pipe.zrange(self.zset(bucket), 0, 0, withscores=True)
            firsts = await guarded(pipe.execute())
        scores = {bucket: int(first[0][1]) for bucket, first in enumerate(firsts) if first}
        due = [bucket for bucket, score in scores.items() if score <= now_ms]
        counts: dict[int, int] = {}
        if due:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in due:
                    pipe.zcount(self.zset(bucket), "-inf", now_ms)
                counts = {bucket: int(n) for bucket, n in zip(due, await guarded(pipe.execute()), strict=True) if n}
        soonest = min(scores.values(), default=None)
        return Look(counts, soonest if due else None, soonest)

    async def claim(self, bucket: int, now_ms: int, limit: int) -> list[Claim]:
        return await self.claim_due({bucket: limit}, now_ms, limit)

    async def claim_due(self, counts: Mapping[int, int], now_ms: int, room: int) -> list[Claim]:
        """Claims of at most ``room`` due entries, ``counts[bucket]`` at most of each bucket, the
        buckets taken in a random order (none starves the others): one round trip."""
        takes: list[tuple[int, int]] = []
        buckets = list(counts)
        random.shuffle(buckets)
        for bucket in buckets:
            if room <= 0:
                break
            take = min(room, counts[bucket])
            takes.append((bucket, take))
            room -= take
        if not takes:
            return []
        answers = await run_many(self.redis, self._claim, [
            ([self.zset(bucket)], [now_ms, self.lease_ms, take, self.entry_prefix(bucket), self.token])
            for bucket, take in takes])
        claims = [Claim(bucket, id_, as_hash(flat))
                  for (bucket, _), claimed in zip(takes, answers, strict=True) for id_, flat in claimed]
        self.held.update(claims)
        return claims

    async def finish(self, claim: Claim, next_ms: int | None) -> bool:
        """Reschedule at ``next_ms`` (None: drop); the entry is dropped anyway once done."""
        self.held.discard(claim)
        ours = await guarded(self._reschedule(
            keys=[self.zset(claim.bucket), self.entry_prefix(claim.bucket) + claim.id],
            args=[claim.id, self.token, "" if next_ms is None else next_ms, self.done_field,
                  *self.done_values],
        ))
        return bool(ours)

    def forget(self, claim: Claim) -> None:
        """A claim its handler ended itself (in the script that recorded its outcome)."""
        self.held.discard(claim)

    async def release_all(self, now_ms: int) -> None:
        """Hand back every claim still held (shutdown): due again at once for the others."""
        for claim in list(self.held):
            await self.finish(claim, now_ms)
