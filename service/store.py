"""The Redis store: payments, their idempotency index, due set and outbox, written by Lua.

All reads and writes of payment state go through :class:`Store`, as ``service.model.Payment``.
Key names are in ``service.keys``; the scripts in ``service/lua/``. The same code runs on Redis, Redis Cluster and
the embedded in-process store (fakeredis with Lua), which is for trying payrelay out only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from service import keys, states
from service.model import Payment, name_of
from service.states import PaymentState

log = logging.getLogger("payrelay.store")

T = TypeVar("T")
CLUSTER_CONCURRENCY = 16  # scripts in flight at once on a cluster, well inside its connection pools
SWEEP_ATTEMPTS = name_of(Payment, "sweep_attempts")


class StoreUnavailable(Exception):
    """Redis could not be reached or did not answer in time (→ 503)."""


async def guarded(call: Awaitable[T]) -> T:
    """Await one Redis call; Redis out of reach, or failing, is StoreUnavailable (→ 503)."""
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}") from exc


def as_hash(flat: list[str]) -> dict[str, str]:
    """A hash as a script answers it (HGETALL's field, value list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def run_many(redis: Any, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
    """One script run with each (keys, args), as one pipeline on a single Redis, each on its
    keys' node on Redis Cluster (``CLUSTER_CONCURRENCY`` at a time); the answers in order."""
    if isinstance(redis, RedisCluster):
        room = asyncio.Semaphore(CLUSTER_CONCURRENCY)

        async def one(k: list[str], a: list[Any]) -> Any:
            async with room:
                return await script(keys=k, args=a)

        return list(await guarded(asyncio.gather(*(one(k, a) for k, a in calls))))

    async def pipelined() -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            for k, a in calls:
                await script(keys=k, args=a, client=pipe)
            return list(await pipe.execute())

    return await guarded(pipelined())


def load_script(name: str) -> str:
    """A script of ``service/lua/``, after the state tables it reads (``service.states``), the
    limits of ``service.keys`` and the functions the scripts share (``lib.lua``)."""
    lua = resources.files("service").joinpath("lua")
    limits = (f"local TIMELINE_MAX, STATS_TTL = {keys.TIMELINE_MAX}, {keys.STATS_TTL}\n"
              f"local WAKE_PREFIX, WAKE_HORIZON_MS = {keys.wake('')!r}, {keys.WAKE_HORIZON_MS}\n")
    return states.lua_tables() + limits + lua.joinpath("lib.lua").read_text(encoding="utf-8") + \
        lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def connect(redis_url: str | None) -> Any:
    """A Redis client for the URL (``redis+cluster://host:port``: Redis Cluster, any node), or
    the embedded in-process store when there is none."""
    if redis_url is None:
        import fakeredis

        log.warning(
            "PAYRELAY_REDIS_URL is not set: using the embedded in-process store. "
            "It is not durable: every payment is lost when payrelay stops."
        )
        return fakeredis.FakeAsyncRedis(decode_responses=True)
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 5, "socket_connect_timeout": 5,
                               "health_check_interval": 30}
    scheme, _, rest = redis_url.partition("://")
    if scheme in ("redis+cluster", "rediss+cluster"):
        # redis+cluster://host:port (rediss+cluster:// with TLS): any node; the client finds the rest
        plain = scheme.replace("+cluster", "") + "://" + rest
        return RedisCluster.from_url(plain, **options)
    return aioredis.from_url(redis_url, **options)


@dataclass(frozen=True)
class Reservation:
    outcome: str  # new | existing | conflict | wait | resume
    payment_id: str


@dataclass(frozen=True)
class Applied:
    outcome: str  # missing | foreign | duplicate | mismatch | integrity | unchanged | stale | transitioned | late
    previous: str  # the status before
    version: int
    payment: Payment | None = None  # the payment as the transition left it, when asked for

    @property
    def changed(self) -> bool:
        return self.outcome in ("transitioned", "late")


class Store:
    def __init__(self, redis: Any, retention_seconds: int) -> None:
        self.redis = redis
        self.retention_ms = retention_seconds * 1000
        self._create = redis.register_script(load_script("create"))
        self._finalize = redis.register_script(load_script("finalize"))
        self._abort = redis.register_script(load_script("abort"))
        self._transition = redis.register_script(load_script("transition"))
        self._release = redis.register_script(load_script("release"))
        self._takeover = redis.register_script(load_script("takeover"))

    async def _run(self, script: Any, keys_: list[str], args: list[Any]) -> Any:
        return await guarded(script(keys=keys_, args=args))

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def reserve(self, payment: Payment, *, now_ms: int) -> Reservation:
        """Store a new payment for its transaction, unless one already answers that transaction:
        then say which, and whether the request is the same. The new payment is creating (its
        create holds it while it talks to the gateway), or waiting already when its gateway's
        create makes no call (the payment comes with its paymentUrl, unless its record keeps none:
        ``service.urls``)."""
        bucket = _bucket(payment.payment_id)
        flat = [item for pair in payment.to_hash().items() for item in pair]
        opened = "1" if payment.status is PaymentState.WAITING else ""
        outcome, pid = await self._run(
            self._create,
            [keys.transaction(bucket, payment.client, payment.transaction_id),
             keys.payment(bucket, payment.payment_id), keys.due(bucket), keys.payment_prefix(bucket),
             keys.index_prefix(bucket), keys.stats(bucket, now_ms), keys.reference_prefix(bucket)],
            [now_ms, payment.fingerprint, payment.payment_id, keys.CREATING_LEASE_MS, opened, *flat],
        )
        return Reservation(outcome, pid)

    async def finalize(self, payment_id: str, payment_url: str, reference: str, now_ms: int) -> Payment:
        """The gateway took the order: the payment is waiting (unless a racing create finalized
        it first); answer it as it is now."""
        bucket = _bucket(payment_id)
        flat = await self._run(
            self._finalize, [keys.payment(bucket, payment_id), keys.due(bucket), keys.index_prefix(bucket),
                             keys.stats(bucket, now_ms), keys.reference_prefix(bucket)],
            [now_ms, payment_url, reference],
        )
        return Payment.from_hash(as_hash(flat))

    async def release(self, payment_id: str, look_at_ms: int, *, now_ms: int, why: str) -> None:
        """Give a create's lease back after a gateway call without a clear answer (``why``): the
        next duplicate resumes it at once, else the sweeper asks the gateway at ``look_at_ms``."""
        bucket = _bucket(payment_id)
        await self._run(self._release,
                        [keys.payment(bucket, payment_id), keys.due(bucket), keys.events(bucket, payment_id)],
                        [payment_id, look_at_ms, now_ms, why])

    async def take_over(self, payment_id: str, now_ms: int) -> str:
        """Take the lease of a create whose holder is gone: 'taken', 'held', or the status now."""
        bucket = _bucket(payment_id)
        return str(await self._run(self._takeover, [keys.payment(bucket, payment_id), keys.due(bucket)],
                                   [now_ms, keys.CREATING_LEASE_MS, payment_id]))

    async def abort(self, payment_id: str, client: str, transaction_id: str) -> None:
        bucket = _bucket(payment_id)
        await self._run(
            self._abort,
            [keys.payment(bucket, payment_id), keys.transaction(bucket, client, transaction_id),
             keys.due(bucket), keys.payment_prefix(bucket), keys.index_prefix(bucket),
             keys.events(bucket, payment_id)],
            [payment_id],
        )

    async def apply(
        self, payment_id: str, *, gateway: str, now_ms: int, status: str | None, gateway_state: str,
        reference: str | None = None, amount: tuple[int, str] | None = None,
        failure_reason: str | None = None, event: tuple[str, str] | None = None,
        next_sync_ms: int = 0, delivery_id: str = "", source: str, received_ms: int | None = None,
        answer: bool = False,
    ) -> Applied:
        """Apply the gateway's word (from ``source``; a webhook's arrives at ``received_ms``);
        ``answer``: with the payment as it is then (no read of its own)."""
        bucket = _bucket(payment_id)
        payment_key = keys.payment(bucket, payment_id)
        event_key = keys.event(bucket, *event) if event else payment_key
        outcome, previous, version, *record = await self._run(
            self._transition,
            [payment_key, keys.due(bucket), keys.outbox(bucket), event_key, keys.delivery(bucket, delivery_id),
             keys.deliveries(bucket, payment_id), keys.transaction_prefix(bucket), keys.index_prefix(bucket),
             keys.events(bucket, payment_id), keys.stats(bucket, now_ms), keys.reference_prefix(bucket)],
            [now_ms, status or "", gateway_state, reference or "",
             str(amount[0]) if amount else "", amount[1] if amount else "", failure_reason or "",
             keys.EVENT_TTL if event else "", self.retention_ms, next_sync_ms, delivery_id, gateway, source,
             "" if received_ms is None else received_ms, "1" if answer else ""],
        )
        return Applied(outcome, previous, int(version or 0), Payment.from_hash(as_hash(record[0])) if record else None)

    async def count_sweep_attempt(self, payment_id: str) -> int:
        """One more failed look at a due payment (gateway trouble): how many in a row now."""
        key = keys.payment(_bucket(payment_id), payment_id)
        return int(await guarded(self.redis.hincrby(key, SWEEP_ATTEMPTS, 1)))

    async def clear_sweep_attempts(self, payment_id: str) -> None:
        await guarded(self.redis.hdel(keys.payment(_bucket(payment_id), payment_id), SWEEP_ATTEMPTS))

    async def get(self, payment_id: str) -> Payment | None:
        """The payment as its record keeps it: where that is without its paymentUrl, whoever shows
        the payment makes it again (``service.urls``)."""
        bucket = keys.bucket_of(payment_id)
        if bucket is None:
            return None
        found: dict[str, str] = await guarded(self.redis.hgetall(keys.payment(bucket, payment_id)))
        return Payment.from_hash(found) if found else None

    async def find(self, client: str, transaction_id: str) -> Payment | None:
        """The latest payment of a business transaction."""
        bucket = keys.bucket_for(client, transaction_id)
        payment_id = await guarded(self.redis.get(keys.transaction(bucket, client, transaction_id)))
        return await self.get(payment_id) if payment_id else None


def _bucket(payment_id: str) -> int:
    bucket = keys.bucket_of(payment_id)
    if bucket is None:
        raise ValueError(f"not a payrelay payment id: {payment_id!r}")
    return bucket
