"""service/workers.py: a worker claims due entries and handles each once; its pool keeps a
heartbeat in Redis and hands everything back on stop (real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

from service import keys
from service.schedule import Claim, Schedule
from service.workers import Worker, WorkerPool
from tests.helpers import due


class Recorder(Worker):
    name = "recorder"

    def __init__(self, redis: Any, fail: bool = False) -> None:
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
