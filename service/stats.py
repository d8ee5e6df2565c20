"""Counts by hour for the console's charts, kept in Redis by the scripts that make the changes
(``tally`` in ``service/lua/lib.lua``), in each bucket's hash of the hour (``keys.stats``):

- ``opened:<gateway>``: payments opened at the gateway;
- ``status:<status>:<gateway>``: transitions into a status;
- ``applied:n``, ``applied:ms`` and ``applied:le:<ms>`` (10, 50, 250, 1000; cumulative like
  Prometheus buckets): webhooks from their arrival to their word applied;
- ``delivery:delivered``, ``delivery:failed``, ``delivery:dead``: notification attempts.

A chart reads every bucket's hashes of the hours it shows and sums them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service import keys
from service.store import guarded

LATENCY_BOUNDS_MS = (10, 50, 250, 1000)  # as in transition.lua


@dataclass(frozen=True)
class Hour:
    start: int  # epoch ms of the hour's start (UTC)
    counts: Mapping[str, int]


class Stats:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def hours(self, now_ms: int, hours: int = 24) -> list[Hour]:
        """The last ``hours`` hours up to the one ``now_ms`` is in, oldest first."""
        current = now_ms // keys.HOUR_MS * keys.HOUR_MS
        starts = [current - back * keys.HOUR_MS for back in range(hours - 1, -1, -1)]

        async def read() -> list[dict[str, str]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for start in starts:
                    for bucket in range(keys.BUCKETS):
                        pipe.hgetall(keys.stats(bucket, start))
                return list(await pipe.execute())

        found = await guarded(read())
        result = []
        for index, start in enumerate(starts):
            total: Counter[str] = Counter()
            for counts in found[index * keys.BUCKETS:(index + 1) * keys.BUCKETS]:
                total.update({name: int(value) for name, value in counts.items()})
            result.append(Hour(start, dict(total)))
        return result
