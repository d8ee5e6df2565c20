"""The outbox: notifications delivered over real HTTP from a served payrelay, on real Redis.

Payments are opened and moved through the real store scripts (the transition enqueues the
delivery, as any webhook or query would), then the served app's own outbox worker delivers to a
receiving test server that fails, stalls, redirects and succeeds by turns.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from sandbox.runner import ServerThread, free_port
from service import keys
from service.app import create_app
from service.clock import now_ms
from service.model import Payment
from service.notify_signature import verify
from service.outbox import LEASE_MS
from service.settings import Settings
from service.store import Store
from tests.receiver import Receiver, Reply

API_KEY = "shop_key_" + "s" * 24
OTHER_KEY = "other_key_" + "o" * 24
SECRETS = ["whsec_current", "whsec_previous"]
GATEWAY_ENV = {  # a gateway must be configured; these payments never reach it
    "PAYRELAY_STRIPE_SECRET_KEY": "sk_test_" + "x" * 24,
    "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_stripe",
}
FAST = {"retry_base_ms": 50, "retry_cap_ms": 2_000, "timeout": 0.3, "dead_refresh_s": 0.1}
ROOT = Path(__file__).resolve().parent.parent


def env_for(redis_url: str, notify_url: str, *, signed: bool = True) -> dict[str, str]:
    env = {
        "PAYRELAY_REDIS_URL": redis_url,
        "PAYRELAY_API_KEYS": f"shop:{API_KEY},other:{OTHER_KEY}",
        "PAYRELAY_NOTIFY_URL": notify_url,
        **GATEWAY_ENV,
    }
    if signed:
        env["PAYRELAY_NOTIFY_SECRET"] = ",".join(SECRETS)
    return env


@dataclass
class Relay:
    url: str
    settings: Settings
    store: Store

    def client(self, api_key: str = API_KEY) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"},
                                 timeout=10)

    async def open(self, client: str = "shop", notify_url: str | None = None, kind: str = "generic") -> str:
        """A waiting payment, as Payments.create leaves it (without a gateway)."""
        transaction_id = "order-" + secrets.token_hex(6)
        bucket = keys.bucket_for(client, transaction_id)
        payment_id = keys.new_payment_id(bucket)
        now = now_ms()
        record = Payment.from_hash({
            "paymentId": payment_id, "client": client, "transactionId": transaction_id,
            "gateway": "stripe-connect", "amount": "2500", "currency": "USD", "date": "2026-11-21",
            "description": "10 GB", "customerIdentifier": "", "completeUrl": "https://shop.example/ok",
            "cancelUrl": "https://shop.example/no", "online": "1", "saveMethod": "0",
            "notifyUrl": notify_url or self.settings.clients[0].notify_url or "", "notifyKind": kind,
            "createdAt": str(now), "updatedAt": str(now), "expiresAt": str(now + 3_600_000),
            "status": "creating", "version": "0", "previous": "", "fingerprint": "f",
        })
        reservation = await self.store.reserve(record, now_ms=now)
        assert reservation.outcome == "new"
        await self.store.finalize(payment_id, "https://pay.example/" + payment_id, "", now)
        return payment_id

    async def move(self, payment_id: str, status: str) -> int:
        """The gateway's word, through the real transition script (which enqueues the delivery)."""
        applied = await self.store.apply(
            payment_id, gateway="stripe-connect", now_ms=now_ms(), status=status, gateway_state="TEST",
            source="webhook", next_sync_ms=now_ms() + 3_600_000, delivery_id="dlv_" + secrets.token_urlsafe(12))
        assert applied.changed
        return applied.version

    async def deliveries(self, payment_id: str, api_key: str = API_KEY) -> list[dict[str, Any]]:
        async with self.client(api_key) as http:
            response = await http.get(f"/api/transactions/{payment_id}/deliveries")
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    async def wait_state(self, payment_id: str, state: str, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.deliveries(payment_id)
            if found and all(d["state"] == state for d in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries not all {state}: {found}")
            await asyncio.sleep(0.02)


StartRelay = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def start(served: Callable[[Any], ServerThread], clean_redis: str, redis_client: aioredis.Redis,
                receiver: Receiver) -> AsyncIterator[StartRelay]:
    """start(signed=True, **outbox options) → a payrelay served with a fast outbox."""

    async def start_relay(signed: bool = True, **outbox: Any) -> Relay:
        settings = Settings.from_env(env_for(clean_redis, receiver.url + "/hook", signed=signed))
        app = create_app(settings, idle_seconds=0.02, worker_options={"outbox": {**FAST, **outbox}})
        server = served(app)
        return Relay(server.url, settings, Store(redis_client, settings.retention_seconds))

    yield start_relay


def event_of(received: Any) -> dict[str, Any]:
    return dict(json.loads(received.body))


async def test_each_change_is_delivered_signed_with_growing_versions(start: StartRelay,
                                                                    receiver: Receiver) -> None:
    relay = await start()
    payment_id = await relay.open()
    assert await relay.move(payment_id, "processing") == 1
    await receiver.wait_for(1)
    assert await relay.move(payment_id, "succeeded") == 2
    first, second = await receiver.wait_for(2)

    for got, status, version in ((first, "processing", 1), (second, "succeeded", 2)):
        assert got.method == "POST" and got.path == "/hook"
        assert got.headers["content-type"] == "application/json"
        assert got.headers["user-agent"] == "payrelay"
        verify(SECRETS[:1], got.headers["payrelay-signature"], got.body)  # the first secret signs
        event = event_of(got)
        assert event["id"].startswith("evt_")
        assert event["type"] == f"transaction.{status}" and event["version"] == version
        assert event["createdAt"].endswith("Z")
        assert event["data"]["paymentId"] == payment_id
        assert event["data"]["status"] == status and event["data"]["version"] == version
        assert event["data"]["amount"] == "25.00" and event["data"]["currency"] == "USD"
    assert event_of(first)["id"] != event_of(second)["id"]
    assert event_of(second)["data"]["paidAt"] is not None

    listed = await relay.wait_state(payment_id, "delivered")
    assert [(d["type"], d["version"], d["attempts"], d["lastStatusCode"]) for d in listed] == [
        ("transaction.processing", 1, 1, 200), ("transaction.succeeded", 2, 1, 200)]
    assert listed[0]["eventId"] == event_of(first)["id"]
    assert listed[0]["url"] == receiver.url + "/hook" and listed[0]["nextAt"] is None
    assert listed[0]["lastError"] is None and listed[0]["lastAttemptAt"].endswith("Z")


async def test_failures_are_retried_with_growing_backoff_and_the_same_event(
        start: StartRelay, receiver: Receiver) -> None:
    receiver.then(Reply(500), Reply(503), Reply(404), Reply(500), Reply(502))
    relay = await start()
    payment_id = await relay.open()
    await relay.move(payment_id, "succeeded")
    got = await receiver.wait_for(6)

    assert len({event_of(r)["id"] for r in got}) == 1
    assert len({r.body for r in got}) == 1  # byte for byte; only the signature's t may move
    for r in got:
        verify(SECRETS, r.headers["payrelay-signature"], r.body)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    # base 50 ms doubling, jitter in the upper half of each step: 25–50, 50–100, … 400–800 ms.
    # A loaded machine only adds time, so the lower bounds are what can be held exactly.
    assert gaps[0] < 0.5, gaps
    for attempt, gap in enumerate(gaps):
        assert gap >= 0.025 * 2**attempt, gaps

    (delivery,) = await relay.wait_state(payment_id, "delivered")
    assert delivery["attempts"] == 6 and delivery["lastStatusCode"] == 200


async def test_a_stalled_receiver_times_out_and_is_retried(start: StartRelay, receiver: Receiver) -> None:
    receiver.then(Reply(stall=1.0))
    relay = await start()
    payment_id = await relay.open()
    await relay.move(payment_id, "succeeded")
    await receiver.wait_for(1)
    (pending,) = await relay.wait_state(payment_id, "pending")
    assert pending["attempts"] == 0 or pending["lastError"].startswith("timed out")
    first, second = await receiver.wait_for(2)
    assert second.at - first.at < 0.9  # the 0.3 s timeout ended the attempt, not the stall
    (delivery,) = await relay.wait_state(payment_id, "delivered")
    assert delivery["attempts"] == 2 and event_of(first)["id"] == event_of(second)["id"]


async def test_redirects_are_not_followed(start: StartRelay, receiver: Receiver) -> None:
    receiver.default = Reply(307, location="/elsewhere")
    relay = await start(give_up_ms=400)
    payment_id = await relay.open()
    await relay.move(payment_id, "closed")
    (dead,) = await relay.wait_state(payment_id, "dead")
    assert dead["lastStatusCode"] == 307 and dead["lastError"] == "redirect not followed"
    assert receiver.on("/elsewhere") == [] and len(receiver.on("/hook")) == dead["attempts"] >= 1


async def test_dead_delivery_is_listed_counted_and_resent(start: StartRelay, receiver: Receiver) -> None:
    receiver.default = Reply(500)
    relay = await start(give_up_ms=1500)
    payment_id = await relay.open()
    await relay.move(payment_id, "failed")
    (dead,) = await relay.wait_state(payment_id, "dead")
    assert dead["type"] == "transaction.failed" and dead["lastStatusCode"] == 500
    assert dead["nextAt"] is None and dead["attempts"] >= 2
    attempts = len(receiver.received)
    assert attempts == dead["attempts"]

    async with relay.client() as http:
        deadline = time.monotonic() + 10
        while "payrelay_dead_deliveries 1.0" not in (metrics := (await http.get("/metrics")).text):
            assert time.monotonic() < deadline, metrics
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert len(receiver.received) == attempts  # dead: nothing more is sent by itself

        receiver.default = Reply(204)
        url = f"/api/transactions/{payment_id}/deliveries/{dead['id']}/retry"
        async with relay.client(OTHER_KEY) as other:  # not the owner: as if it did not exist
            assert (await other.post(url)).status_code == 404
            assert (await other.get(f"/api/transactions/{payment_id}/deliveries")).status_code == 404
        missing = await http.post(f"/api/transactions/{payment_id}/deliveries/dlv_nope/retry")
        assert missing.status_code == 404 and missing.json()["code"] == "delivery_not_found"
        assert (await http.get(f"/api/transactions/{payment_id}/deliveries",
                               headers={"Authorization": "Bearer wrong"})).status_code == 401

        resent = await http.post(url)
        assert resent.status_code == 200, resent.text
        assert resent.json()["state"] in ("pending", "delivered")
        (delivered,) = await relay.wait_state(payment_id, "delivered")
        assert delivered["attempts"] == attempts + 1 and delivered["lastStatusCode"] == 204
        assert event_of(receiver.received[-1])["id"] == event_of(receiver.received[0])["id"]

        again = await http.post(url)
        assert again.status_code == 409 and again.json()["code"] == "delivery_delivered"
        assert again.headers["content-type"] == "application/problem+json"
        deadline = time.monotonic() + 20
        while "payrelay_dead_deliveries 0.0" not in (metrics := (await http.get("/metrics")).text):
            assert time.monotonic() < deadline, metrics
            await asyncio.sleep(0.1)
        assert 'payrelay_deliveries_total{kind="generic",outcome="dead"} 1.0' in metrics
        assert 'payrelay_deliveries_total{kind="generic",outcome="delivered"} 1.0' in metrics


async def test_nothing_goes_out_unsigned(start: StartRelay, receiver: Receiver) -> None:
    relay = await start(signed=False)
    payment_id = await relay.open()
    await relay.move(payment_id, "succeeded")
    deadline = time.monotonic() + 10
    while (found := await relay.deliveries(payment_id))[0]["attempts"] < 2:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.02)
    assert found[0]["state"] == "pending" and found[0]["lastError"] == "no notify secret configured"
    assert receiver.received == []


async def test_a_payment_without_notify_url_has_no_deliveries(start: StartRelay) -> None:
    relay = await start()
    payment_id = await relay.open()
    await relay.store.redis.hset(keys.payment(keys.bucket_of(payment_id) or 0, payment_id), "notifyUrl", "")
    await relay.move(payment_id, "succeeded")
    assert await relay.deliveries(payment_id) == []


# -- a real `payrelay serve`, killed mid-delivery ---------------------------------------------------

class Serve:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PAYRELAY_")}
        environ.update(env, PAYRELAY_PUBLIC_URL=self.url, PYTHONUNBUFFERED="1")
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)], cwd=ROOT,
            env=environ, stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self) -> Serve:
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "payrelay exited"
                try:
                    if (await http.get(self.url + "/healthz", timeout=1)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("payrelay did not start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Serve]]:
    started: list[Serve] = []

    def spawn(env: dict[str, str]) -> Serve:
        started.append(Serve(env, tmp_path / "payrelay.log"))
        return started[-1]

    yield spawn
    for process in started:
        process.stop()


@pytest.mark.slow
async def test_killed_mid_delivery_a_restarted_payrelay_delivers(
        processes: Callable[[dict[str, str]], Serve], clean_redis: str, redis_client: aioredis.Redis,
        receiver: Receiver) -> None:
    if clean_redis.startswith("redis+cluster"):
        pytest.skip("the lease takeover is the same on a cluster; one slow run is enough")
    env = env_for(clean_redis, receiver.url + "/hook")
    settings = Settings.from_env(env)
    relay = Relay("", settings, Store(redis_client, settings.retention_seconds))
    receiver.then(Reply(stall=60))  # the first attempt hangs until payrelay is gone

    first = await processes(env).ready()
    payment_id = await relay.open()
    await relay.move(payment_id, "succeeded")
    (hung,) = await receiver.wait_for(1)
    first.kill()
    receiver.release()  # its answer goes to a dead socket

    await processes(env).ready()
    _, resent = await receiver.wait_for(2, timeout=LEASE_MS / 1000 + 10)  # after the lease runs out
    assert event_of(resent)["id"] == event_of(hung)["id"]
    verify(SECRETS, resent.headers["payrelay-signature"], resent.body)
    bucket = keys.bucket_of(payment_id)
    assert bucket is not None
    (delivery_id,) = [str(d) for d in await redis_client.lrange(keys.deliveries(bucket, payment_id), 0, -1)]
    deadline = time.monotonic() + 5
    while (state := await redis_client.hget(keys.delivery(bucket, delivery_id), "state")) != "delivered":
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)
