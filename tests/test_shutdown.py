"""Graceful shutdown of real `payrelay serve` / `payrelay worker` processes: SIGTERM under load
stops accepting, finishes what is in flight (each 2xx is really stored), the workers hand back
their leases, and the process exits in bounded time."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.runner import ServerThread
from sandbox.stripe import StripeEmulator
from service import keys
from service.app import create_app
from service.settings import Settings
from service.store import connect
from tests.conftest import API_KEY
from tests.relay_process import RelayProcess

GATEWAY_DELAY = 0.3  # every Stripe API call takes this long, so that there is always work in flight
GRACEFUL_TIMEOUT = 10
EXIT_BOUND = 20  # s after SIGTERM; in practice well under GRACEFUL_TIMEOUT


class Slow:
    """Delays the emulator's API answers (not its pages)."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app, self.delay = app, delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


@pytest.fixture
def slow_stripe(served: Callable[[Any], ServerThread]) -> Iterator[StripeEmulator]:
    emulator = StripeEmulator()
    emulator.bind(served(Slow(emulator.app, GATEWAY_DELAY)).url, "")
    yield emulator


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no answer (refused or cut)
    body: dict[str, Any] | None = None
    request: dict[str, Any] | None = None


def _order() -> dict[str, Any]:
    return {"transactionId": f"sd-{uuid.uuid4().hex[:16]}", "amount": "9.00", "currency": "USD",
            "date": "2026-11-21", "paymentGatewayType": "stripe-connect",
            "completePayRedirectUrl": "https://shop.example/done", "cancelPayRedirectUrl": "https://shop.example/c",
            "onlineScenario": True, "customerIdentifier": "buyer@example.com"}


async def _load(url: str, calls: list[Call], stop: asyncio.Event, clients: int = 40) -> None:
    """Creates and reads by ``clients`` concurrent loops until the server stops answering."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(client: httpx.AsyncClient, kind: str, method: str, path: str, **kw: Any) -> Call:
        started = time.monotonic()
        try:
            answer = await client.request(method, path, **kw)
        except httpx.TransportError:
            call = Call(kind, started, time.monotonic(), None, request=kw.get("json"))
        else:
            call = Call(kind, started, time.monotonic(), answer.status_code,
                        answer.json() if answer.headers.get("content-type", "").endswith("json") else None,
                        kw.get("json"))
        calls.append(call)
        return call

    async def loop(client: httpx.AsyncClient) -> None:
        refused = 0
        while refused < 3:
            created = await one(client, "create", "POST", "/api/transactions", json=_order())
            if created.status is None:
                refused += 1
                if stop.is_set():
                    await asyncio.sleep(0.05)
                continue
            if created.status == 200 and created.body:
                await one(client, "get", "GET", f"/api/transactions/{created.body['paymentId']}")

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))


async def _held_leases(redis_url: str, exited_ms: int) -> tuple[list[str], list[str], int]:
    """Payments still marked as claimed, due entries scheduled as far out as only a lease would
    put them, and how many due entries there are."""
    redis = connect(redis_url)
    try:
        claimed, leased, entries = [], [], 0
        for bucket in range(keys.BUCKETS):
            for pid, score in await redis.zrange(keys.due(bucket), 0, -1, withscores=True):
                entries += 1
                record = await redis.hgetall(keys.payment(bucket, pid))
                if record.get("claim"):
                    claimed.append(pid)
                # a lease ends LEASE_MS (120 s) after its claim; a payment swept while its create was
                # still in flight is legitimately looked at again up to CREATING_LEASE_MS later
                if score > max(int(record.get("expiresAt") or 0), exited_ms + keys.CREATING_LEASE_MS):
                    leased.append(pid)
        return claimed, leased, entries
    finally:
        await redis.aclose()


@pytest.mark.slow
async def test_sigterm_under_load(clean_redis: str, slow_stripe: StripeEmulator, tmp_path: Any) -> None:
    env = {"PAYRELAY_REDIS_URL": clean_redis, "PAYRELAY_API_KEYS": f"shop:{API_KEY}",
           "PAYRELAY_PAYMENT_TTL": "1",  # the expiry sweeper holds claims all along
           **slow_stripe.env()}
    relay = RelayProcess(env, "serve", "--graceful-timeout", str(GRACEFUL_TIMEOUT), log_dir=tmp_path)
    slow_stripe.bind(slow_stripe.base_url, f"{relay.url}/webhooks/stripe")
    try:
        relay.wait_ready()
        calls: list[Call] = []
        stop = asyncio.Event()
        load = asyncio.create_task(_load(relay.url, calls, stop))
        await asyncio.sleep(2.5)  # payments are created, expire and are swept under load
        sigterm = time.monotonic()
        relay.terminate()
        stop.set()
        code = await asyncio.to_thread(relay.wait, EXIT_BOUND)
        exited = time.monotonic()
        exited_ms = int(time.time() * 1000)
        await asyncio.wait_for(load, 30)
    finally:
        relay.stop()
    log = relay.log()
    # uvicorn ends a graceful shutdown by re-raising the signal it caught: exit status 143 / -15
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in log, (code, log[-3000:])
    assert exited - sigterm < GRACEFUL_TIMEOUT, f"took {exited - sigterm:.1f}s to exit"

    answered = [c for c in calls if c.status is not None]
    assert all(c.status < 500 for c in answered), [(c.kind, c.status, c.body) for c in answered if c.status >= 500]
    created = [c for c in answered if c.kind == "create" and c.status == 200]
    in_flight = [c for c in created if c.started < sigterm < c.ended]
    assert len(created) > 50 and in_flight, (len(created), len(in_flight))  # SIGTERM met requests in flight
    assert all(c.ended < exited for c in answered)
    late = [c for c in calls if c.started > sigterm + 1 and c.status is not None]
    assert not late, "still accepting a second after SIGTERM"

    redis = connect(clean_redis)
    try:
        for call in created:
            assert call.body is not None and call.request is not None
            pid = call.body["paymentId"]
            record = await redis.hgetall(keys.payment(keys.bucket_of(pid) or 0, pid))
            assert record, f"{pid} answered 200 but is not stored"
            assert record["transactionId"] == call.request["transactionId"]
            assert record["paymentUrl"] == call.body["paymentUrl"] and record["status"] != "creating"
    finally:
        await redis.aclose()
    claimed, leased, entries = await _held_leases(clean_redis, exited_ms)
    assert (claimed, leased) == ([], []), f"{len(claimed)} claims, {len(leased)} leases left of {entries}"
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
async def test_worker_sigterm_hands_back_its_leases(clean_redis: str, slow_stripe: StripeEmulator,
                                                     served: Callable[[Any], ServerThread], tmp_path: Any) -> None:
    """`payrelay worker` alone: SIGTERM while it sweeps a backlog; nothing stays leased."""
    env = {"PAYRELAY_REDIS_URL": clean_redis, "PAYRELAY_API_KEYS": f"shop:{API_KEY}", **slow_stripe.env()}
    web = served(create_app(Settings.from_env(env | {"PAYRELAY_PAYMENT_TTL": "1"}), run_workers=False))
    async with httpx.AsyncClient(base_url=web.url, headers={"Authorization": f"Bearer {API_KEY}"},
                                 timeout=30) as client:
        answers = await asyncio.gather(*(client.post("/api/transactions", json=_order()) for _ in range(60)))
    assert {a.status_code for a in answers} == {200}
    await asyncio.sleep(1.1)  # all due now; only the worker process sweeps
    worker = RelayProcess(env, "worker", log_dir=tmp_path)
    try:
        worker.wait_ready()
        await asyncio.sleep(0.5)  # it has claimed the backlog and is closing at the (slow) gateway
        sigterm = time.monotonic()
        worker.terminate()
        code = await asyncio.to_thread(worker.wait, EXIT_BOUND)
        took = time.monotonic() - sigterm
        exited_ms = int(time.time() * 1000)
    finally:
        worker.stop()
    assert code in (0, -signal.SIGTERM) and took < GRACEFUL_TIMEOUT, (code, took, worker.log()[-2000:])
    claimed, leased, entries = await _held_leases(clean_redis, exited_ms)
    assert (claimed, leased) == ([], []), (f"{len(claimed)} claims, {len(leased)} leases left of {entries}",
                                           worker.log()[-3000:])
    # nothing lost either: each payment is closed, or due again (for the next sweeper) by now
    redis = connect(clean_redis)
    try:
        for answer in answers:
            pid = answer.json()["paymentId"]
            bucket = keys.bucket_of(pid) or 0
            status = await redis.hget(keys.payment(bucket, pid), "status")
            score = await redis.zscore(keys.due(bucket), pid)
            closed, due_again = status == "closed" and score is None, status == "waiting" and score <= exited_ms
            assert closed or due_again, (pid, status, score, exited_ms, worker.log()[-3000:])
    finally:
        await redis.aclose()
