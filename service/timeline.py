"""A payment's timeline: what happened to it, oldest first (``GET /api/transactions/{id}/events``).

The scripts that change a payment append to it in the same write (``note`` in
``service/lua/lib.lua``): created, opened at the gateway, every transition with its source and
the gateway's raw state, every word of a gateway that changed nothing and why (a duplicate, a
stale or foreign word, evidence about another gateway object), integrity errors, refunds, and each
delivery attempt. What happens outside those scripts, an operator's action or a re-send asked
for, is appended here (``record``). A timeline keeps its newest ``keys.TIMELINE_MAX`` entries,
as long as its payment. Each entry is a JSON object of strings with ``at`` (ms) and ``type``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service import keys
from service.clock import now_ms
from service.store import guarded, load_script
from service.views import iso


@dataclass(frozen=True)
class Event:
    at: int  # epoch ms
    type: str  # created | opened | transition | ignored | integrity | refund | delivery | operator | …
    fields: Mapping[str, str]


def event_view(event: Event) -> dict[str, Any]:
    return {"at": iso(event.at), "type": event.type, **event.fields}


def _event(raw: str) -> Event:
    entry = json.loads(raw)
    at, type_ = int(entry.pop("at")), str(entry.pop("type"))
    return Event(at, type_, {name: str(value) for name, value in entry.items()})


class Timeline:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._record = redis.register_script(load_script("event"))

    async def of_payment(self, payment_id: str) -> list[Event]:
        bucket = keys.bucket_of(payment_id)
        if bucket is None:
            return []
        return [_event(raw) for raw in await guarded(self.redis.lrange(keys.events(bucket, payment_id), 0, -1))]

    async def record(self, payment_id: str, type_: str, **fields: str) -> None:
        """Append one entry (nothing when the payment is gone)."""
        bucket = keys.bucket_of(payment_id)
        assert bucket is not None
        pairs = [item for pair in fields.items() for item in pair]
        await guarded(self._record(keys=[keys.payment(bucket, payment_id), keys.events(bucket, payment_id)],
                                   args=[now_ms(), type_, *pairs]))
