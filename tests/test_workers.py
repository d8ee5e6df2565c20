"""service/workers.py: a worker claims due entries and handles each once; its pool keeps a
heartbeat in Redis and hands everything back on stop (real Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
import redis

from service import keys
from service.clock import now_ms
from service.runtime import Runtime
from service.schedule import Claim, Schedule
from service.settings import Settings
from service.store import Store
from service.workers import IDLE_SECONDS, Worker, WorkerPool
from tests.helpers import due, eventually, record


class Recorder(Worker):
    name = "recorder"

    def __init__(self, redis: Any, fail: bool = False) -> None:
        super().__init__()
        self.schedule = Schedule(redis, keys.due, keys.payment_prefix, "status", ("closed",), 60_000)
        self.handled: list[Claim] = []
        self.fail = fail

    async def handle(self, claim: Claim, now: int) -> int | None:
        self.handled.append(claim)
        if self.fail:
            raise RuntimeError("the gateway is down")
        return None

    async def retry_at(self, claim: Claim, now: int, exc: Exception) -> int:
        return now + 1_000_000


async def test_a_tick_handles_each_due_entry_once_and_drops_it(redis_client: Any) -> None:
    await due(redis_client, 1, {"pr_a": 0, "pr_b": 0})
    await due(redis_client, 2, {"pr_c": 0})
    worker = Recorder(redis_client)
    assert await worker.tick() == 3
    assert sorted(c.id for c in worker.handled) == ["pr_a", "pr_b", "pr_c"]
    assert await worker.tick() == 0
    assert await redis_client.zcard(keys.due(1)) == await redis_client.zcard(keys.due(2)) == 0


class Slow(Recorder):
    """Handles pr_slow in 0.5 s, every other entry at once; four at a time."""

    concurrency = 4

    async def handle(self, claim: Claim, now: int) -> int | None:
        if claim.id == "pr_slow":
            await asyncio.sleep(0.5)
        return await super().handle(claim, now)


async def test_a_backlog_is_claimed_on_while_a_slow_entry_is_in_hand(redis_client: Any) -> None:
    await due(redis_client, 1, {"pr_slow": 0, **{f"pr_{n:02d}": 1 for n in range(12)}})
    worker = Slow(redis_client)
    started = time.monotonic()
    handled_by: dict[str, float] = {}
    while len(worker.handled) < 13:
        assert await worker.tick() <= 4  # never more in hand than its room
        handled_by.update({c.id: time.monotonic() - started for c in worker.handled if c.id not in handled_by})
    assert handled_by["pr_slow"] >= 0.5
    # while more was due than it had room for, it claimed on: the quick ones did not wait for the
    # slow one (a batch that waits for its slowest would have handled three)
    assert sum(1 for t in handled_by.values() if t < 0.4) >= 8
    assert await worker.tick() == 0 and await redis_client.zcard(keys.due(1)) == 0


async def test_a_failure_reschedules_at_retry_at(redis_client: Any) -> None:
    await due(redis_client, 1, {"pr_a": 0})
    worker = Recorder(redis_client, fail=True)
    assert await worker.tick() == 1
    assert await redis_client.zscore(keys.due(1), "pr_a") > 1_000_000


async def test_the_pool_beats_while_alive_and_cleans_up_on_stop(redis_client: Any) -> None:
    worker = Recorder(redis_client)
    pool = WorkerPool(redis_client, [worker], idle_seconds=0.05)
    pool.start()
    for _ in range(100):
        if await redis_client.get(keys.worker(pool.instance)):
            break
        await asyncio.sleep(0.02)
    assert await redis_client.get(keys.worker(pool.instance)) in ("recorder", b"recorder")
    assert pool.alive() == {"recorder": True}
    await pool.stop()
    assert await redis_client.get(keys.worker(pool.instance)) is None


async def test_an_idle_pool_sleeps_until_its_soonest_entry_and_wakes_when_one_is_announced(
        redis_client: Any) -> None:
    """Idle, a worker looks again only when its soonest entry falls due (or after idle_seconds);
    an entry another process schedules sooner, announced by the scripts, wakes it at once."""
    worker = Recorder(redis_client)
    pool = WorkerPool(redis_client, [worker], idle_seconds=30)
    soon = now_ms() + 700
    await due(redis_client, 4, {"pr_soon": soon})
    pool.start()
    try:
        await eventually(lambda: _handled(worker, "pr_soon"), timeout=3)
        assert now_ms() >= soon  # not before its time
        await asyncio.sleep(0.3)  # idle now, for up to 30 s
        store = Store(redis_client, 86400)
        payment = record(keys.new_payment_id(5))  # a create in another process: due at its lease's end,
        started = time.monotonic()  # announced because that is sooner than the worker would look
        await store.reserve(dataclasses.replace(payment, created_at=now_ms() - keys.CREATING_LEASE_MS),
                            now_ms=now_ms() - keys.CREATING_LEASE_MS)
        await eventually(lambda: _handled(worker, payment.payment_id), timeout=3)
        assert time.monotonic() - started < 1
    finally:
        await pool.stop()


async def _handled(worker: Recorder, payment_id: str) -> bool:
    return any(claim.id == payment_id for claim in worker.handled)


@pytest.mark.slow  # it counts a Redis's commands over a whole idle period (31 s)
async def test_an_idle_process_costs_a_few_redis_commands_a_second(disposable_redis: Any,
                                                                   stripe_emulator: Any) -> None:
    """The workers of an idle `payrelay serve` (expiry, refunds, outbox) with their wake-ups and
    heartbeat send at most 10 commands a second to Redis."""
    settings = Settings.from_env({**stripe_emulator.env(), "PAYRELAY_API_KEYS": "shop:" + "k" * 32,
                                  "PAYRELAY_REDIS_URL": disposable_redis.url})
    runtime = Runtime(settings)
    runtime.start_workers()
    try:
        await asyncio.sleep(2)  # started: the first looks, the subscription
        with redis.Redis.from_url(disposable_redis.url) as probe:
            before = probe.info("stats")["total_commands_processed"]
            await asyncio.sleep(WINDOW)
            spent = probe.info("stats")["total_commands_processed"] - before - 1  # the probe's own INFO
    finally:
        await runtime.close()
    print(f"idle: {spent / WINDOW:.1f} Redis commands/s")
    assert 0 < spent / WINDOW <= 10, spent


WINDOW = IDLE_SECONDS + 1  # every worker looks at least once
