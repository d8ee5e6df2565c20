"""Listing payments: a client's (or, for the console, every client's), newest or oldest first,
in cursor pages (Cloudreve's pagination: ``page_size``, ``next_page_token``) that stay stable
while payments are written, and finding one by any id it has.

Each bucket keeps, per client, indexes of its payments scored by createdAt: all of them, those of
each status, those of each flag (``keys.index``), kept by the scripts that change the payment. A
page merges the buckets: each bucket's ``list.lua`` answers the entries after the position that
pass the filters, the page takes the first ``page_size`` in (createdAt, paymentId) order, and never
passes the point up to which a bucket that has more has answered. The position a page ends at is
the (createdAt, paymentId) of its last payment, which nothing changes afterwards: a payment created
while a client walks newest-first is newer than the walk's position (a new walk shows it), and an
oldest-first walk meets it at its end, so no payment is skipped or repeated. A page costs, per
bucket, a range lookup in an index and at most a page of entries: not the number stored.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from service import errors, keys
from service.model import Payment
from service.states import OPEN, PUBLIC, PaymentState
from service.store import Store, guarded, load_script, run_many

FLAGS = ("latePayment", "integrityError", "refunded")
DIMENSIONS = ("all", *(f"status:{state.value}" for state in PaymentState), *(f"flag:{flag}" for flag in FLAGS))
OVERDUE_AFTER_MS = 5 * 60_000  # the sweep closes an expired payment within seconds; later needs a person
TRIM_EVERY_MS = 3_600_000
TRIM_BATCH = 1000


@dataclass(frozen=True)
class ListQuery:
    client: str | None = None  # None: every client's payments (the console)
    status: str | None = None
    gateway: str | None = None
    created_from: int | None = None  # epoch ms, inclusive
    created_to: int | None = None  # epoch ms, exclusive
    flag: str | None = None  # one of FLAGS
    page_size: int = 50
    descending: bool = True
    token: str = ""  # the next_token of the page before ("" = the first page)


@dataclass(frozen=True)
class Page:
    payments: list[Payment]
    next_token: str  # "" when there is no further page


@dataclass(frozen=True, order=True)
class Position:
    created_at: int
    payment_id: str


def encode_token(position: Position, descending: bool) -> str:
    raw = f"{'d' if descending else 'a'}:{position.created_at}:{position.payment_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, descending: bool) -> Position | None:
    if not token:
        return None
    bad = errors.InvalidRequest("invalid_page_token", "next_page_token is not one this listing gave",
                                "next_page_token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    direction, _, rest = raw.partition(":")
    created, _, payment_id = rest.partition(":")
    if direction != ("d" if descending else "a") or not created.isdigit() or \
            keys.bucket_of(payment_id) is None:
        raise bad
    return Position(int(created), payment_id)


class Listing:
    def __init__(self, store: Store, clients: Sequence[str]) -> None:
        self.store = store
        self.redis = store.redis
        self.clients = tuple(clients)
        self._list = self.redis.register_script(load_script("list"))
        self._trim = self.redis.register_script(load_script("trim"))
        self._trimmed_at = 0

    async def trim(self, now_ms: int) -> int:
        """Drop index entries of payments gone with their retention (created more than the
        retention and a day ago), at most hourly a process; answer how many."""
        if now_ms - self._trimmed_at < TRIM_EVERY_MS:
            return 0
        self._trimmed_at = now_ms
        before = now_ms - self.store.retention_ms - 86_400_000

        counts = await run_many(self.redis, self._trim, [
            ([keys.index(bucket, client, dimension), keys.payment_prefix(bucket)], [before, TRIM_BATCH])
            for bucket in range(keys.BUCKETS) for client in self.clients for dimension in DIMENSIONS])
        return sum(int(n) for n in counts)

    async def page(self, query: ListQuery) -> Page:
        descending = query.descending
        start = decode_token(query.token, descending)
        dimensions, checks = _plan(query)
        clients = self.clients if query.client is None else (query.client,)
        sources = [(bucket, client, dimension) for bucket in range(keys.BUCKETS) for client in clients
                   for dimension in dimensions]
        reached: dict[tuple[int, str, str], Position | None] = dict.fromkeys(sources, start)
        found: list[Position] = []
        size = query.page_size
        # the first round asks each bucket for its share of the page (payments are spread evenly),
        # a further one for a whole page from the buckets that bound it
        for want in (math.ceil(2 * size / len(sources)) + 2, size, size):
            replies = await self._run([(source, reached[source], want) for source in reached], checks, query)
            for source, (done, last, matches) in zip(list(reached), replies, strict=True):
                found.extend(matches)
                if done:
                    del reached[source]
                elif last is not None:
                    reached[source] = last
            bound = self._bound(reached.values(), descending)
            known = sorted((e for e in found if bound is None or _not_past(e, bound, descending)),
                           reverse=descending)
            if len(known) >= size or not reached:
                break
        page = known[:size]
        if len(known) > size or (len(known) == size and reached):
            next_token = encode_token(page[-1], descending)
        elif reached:  # buckets stopped looking (their filter's budget) before a page was found
            assert bound is not None
            next_token = encode_token(bound, descending)
        else:
            next_token = ""
        payments = await self._read([entry.payment_id for entry in page])
        return Page(payments, next_token)

    @staticmethod
    def _bound(reached: Iterable[Position | None], descending: bool) -> Position | None:
        """How far every bucket with more has answered: nothing past it is known yet."""
        points = [point for point in reached if point is not None]
        if not points:
            return None
        return max(points) if descending else min(points)

    async def _run(self, calls: list[tuple[tuple[int, str, str], Position | None, int]], checks: list[tuple[str, str]],
                   query: ListQuery) -> list[tuple[bool, Position | None, list[Position]]]:
        fields = [item for pair in checks for item in pair]
        created = ["" if query.created_from is None else query.created_from,
                   "" if query.created_to is None else query.created_to]

        def args(position: Position | None, want: int) -> list[Any]:
            return ["desc" if query.descending else "asc",
                    "" if position is None else position.created_at,
                    "" if position is None else position.payment_id,
                    *created, want, want * 8 + 64, *fields]

        def call_keys(bucket: int, client: str, dimension: str) -> list[str]:
            return [keys.index(bucket, client, dimension), keys.payment_prefix(bucket)]

        replies = await run_many(self.redis, self._list, [(call_keys(*source), args(position, want))
                                                          for source, position, want in calls])
        return [_reply(reply) for reply in replies]

    async def _read(self, payment_ids: list[str]) -> list[Payment]:
        async def read() -> list[dict[str, str]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for payment_id in payment_ids:
                    bucket = keys.bucket_of(payment_id)
                    assert bucket is not None
                    pipe.hgetall(keys.payment(bucket, payment_id))
                return list(await pipe.execute())

        return [Payment.from_hash(found) for found in await guarded(read()) if found] if payment_ids else []

    async def search(self, text: str, clients: Iterable[str]) -> list[Payment]:
        """The payments ``text`` names: as a paymentId, a gateway's reference, or a transactionId
        of one of ``clients`` (its latest payment)."""
        text = text.strip()
        if not text:
            return []
        found: dict[str, Payment] = {}
        if (payment := await self.store.get(text)) is not None:
            found[payment.payment_id] = payment

        async def by_reference() -> list[str | None]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in range(keys.BUCKETS):
                    pipe.get(keys.reference_prefix(bucket) + text)
                return list(await pipe.execute())

        named = [pid for pid in await guarded(by_reference()) if pid]
        for payment_id in named:
            if (payment := await self.store.get(payment_id)) is not None:
                found[payment.payment_id] = payment
        for client in clients:
            if (payment := await self.store.find(client, text)) is not None:
                found[payment.payment_id] = payment
        return sorted(found.values(), key=lambda p: (p.created_at, p.payment_id), reverse=True)

    async def overdue(self, now_ms: int, limit: int = 100) -> list[Payment]:
        """Payments past their expiry by ``OVERDUE_AFTER_MS`` and still not final, oldest first.
        Each open status is walked oldest first up to its first payment that is not overdue: with
        one PAYRELAY_PAYMENT_TTL, none created after it is, so the walk costs what it finds."""
        cutoff = now_ms - OVERDUE_AFTER_MS
        late: list[Payment] = []
        for status in OPEN:  # waiting reads creating too (states.PUBLIC)
            token = ""
            while len(late) < limit:
                page = await self.page(ListQuery(status=status, descending=False, token=token,
                                                 created_to=cutoff, page_size=100))
                late.extend(p for p in page.payments if p.expires_at < cutoff)
                token = page.next_token
                if not token or any(p.expires_at >= cutoff for p in page.payments):
                    break
        return sorted(late, key=lambda p: p.expires_at)[:limit]


def _plan(query: ListQuery) -> tuple[list[str], list[tuple[str, str]]]:
    """The indexes a query reads (a status reads those of the states it stands for: waiting is
    creating too), and the fields the records must have besides."""
    checks = [] if query.gateway is None else [("gateway", query.gateway)]
    if query.flag is not None:
        if query.status is not None:
            checks.append(("status", query.status))
        return [f"flag:{query.flag}"], checks
    if query.status is None:
        return ["all"], checks
    states = [query.status, *(inner.value for inner, public in PUBLIC.items() if public.value == query.status)]
    return [f"status:{state}" for state in states], checks


def _not_past(entry: Position, bound: Position, descending: bool) -> bool:
    return entry >= bound if descending else entry <= bound


def _reply(reply: list[Any]) -> tuple[bool, Position | None, list[Position]]:
    done, last_score, last_id, *pairs = reply
    last = Position(int(float(last_score)), str(last_id)) if last_id else None
    matches = [Position(int(float(pairs[i])), str(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    return bool(int(done)), last, matches
