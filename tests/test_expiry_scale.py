"""Many payrelay processes sweeping together: each due payment is closed exactly once, and a
process killed with SIGKILL mid-sweep loses nothing. Real Redis, real processes, real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from service import keys
from tests.conftest import StartRelay
from tests.helpers import order

PAYMENTS = 3000


def worker_process(env: dict[str, str], lease_seconds: int = 10) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--lease-seconds", str(lease_seconds)],
        env={**os.environ, **env, "PAYRELAY_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def statuses(redis_url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        for key in client.scan_iter(match=f"{keys.PREFIX}*:payment:*", count=1000):
            status = client.hget(key, "status") or "?"
            counts[status] = counts.get(status, 0) + 1
    return counts


async def create_many(relay: Any, emulator: Any, count: int) -> None:
    limiter = asyncio.Semaphore(16)
    async with relay.client() as client:

        async def one(index: int) -> None:
            async with limiter:
                answer = await client.post("/api/transactions", json=order(emulator, transactionId=f"bulk-{index}"))
                assert answer.status_code == 200, answer.text

        await asyncio.gather(*(one(i) for i in range(count)))


async def wait_all_closed(redis_url: str, count: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = statuses(redis_url)
        if counts.get("closed") == count or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("kill_one", [False, True], ids=["three-sweepers", "one-killed"])
async def test_three_processes_close_each_due_payment_once(
    start_relay: StartRelay, alipay_emulator: Any, clean_redis: str, kill_one: bool
) -> None:
    relay = start_relay(alipay_emulator, workers=False, PAYRELAY_PAYMENT_TTL="1")
    count = PAYMENTS if not kill_one else PAYMENTS // 3
    await create_many(relay, alipay_emulator, count)
    env = relay.env
    processes = [worker_process(env) for _ in range(3)]
    try:
        if kill_one:
            while alipay_emulator.calls["close"] < count // 4:
                await asyncio.sleep(0.02)
            processes[0].send_signal(signal.SIGKILL)
        counts = await wait_all_closed(clean_redis, count, timeout=120)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(30)
    assert counts == {"closed": count}
    # every payment was asked about first and closed at the gateway: exactly once each, unless a
    # process died between its close call and its mark (then the next one asks and closes again)
    if kill_one:
        assert alipay_emulator.calls["close"] >= count
    else:
        assert alipay_emulator.calls["close"] == count
    assert alipay_emulator.calls["query"] >= count
    with redis.Redis.from_url(clean_redis, decode_responses=True) as client:
        assert sum(client.zcard(keys.due(b)) for b in range(keys.BUCKETS)) == 0
