"""A payment's timeline: what happened to it, oldest first (``GET /api/transactions/{id}/events``).

Its first two entries, created and opened at the gateway, are read from the payment's record
(``createdAt``, ``previous``, ``openedAt``, ``gatewayReference``), so that a payment nothing more
has happened to keeps no timeline of its own. The scripts that change a payment append the rest
in the same write (``note`` in ``service/lua/lib.lua``): every transition with its source and
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
from service.model import Payment, name_of
from service.store import guarded, load_script
from service.views import iso

RECORDED = tuple(name_of(Payment, attr) for attr in ("created_at", "previous", "opened_at", "gateway_reference"))


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
        """Oldest first (none for a payment that is not there)."""
        bucket = keys.bucket_of(payment_id)
        if bucket is None:
            return []

        async def read() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.payment(bucket, payment_id), *RECORDED)
                pipe.lrange(keys.events(bucket, payment_id), 0, -1)
                return list(await pipe.execute())

        (created, previous, opened, reference), stored = await guarded(read())
        if created is None:
            return []
        events = [Event(int(created), "created", {"previous": previous} if previous else {}),
                  *(_event(raw) for raw in stored)]  # in the order they were written
        if opened is not None:  # before what came after it (a create's troubles come before)
            at = int(opened)
            place = next((i for i, event in enumerate(events) if i and event.at >= at), len(events))
            events.insert(place, Event(at, "opened", {"gatewayReference": reference or ""}))
        return events

    async def record(self, payment_id: str, type_: str, **fields: str) -> None:
        """Append one entry (nothing when the payment is gone)."""
        bucket = keys.bucket_of(payment_id)
        assert bucket is not None
        pairs = [item for pair in fields.items() for item in pair]
        await guarded(self._record(keys=[keys.payment(bucket, payment_id), keys.events(bucket, payment_id)],
                                   args=[now_ms(), type_, *pairs]))
