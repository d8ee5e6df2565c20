"""payrelay on a real 3-master Redis Cluster, with no change of code: the keys of a payment share
one slot and payments spread over every master; the schedules' pipelines and scripts work across
nodes; and two `payrelay serve` replicas plus a `payrelay worker` sweep the same payments
without doing any of them twice.

(The store tests and the other Redis-backed module tests run on the cluster too: see
``CLUSTER_MODULES`` in conftest.)"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis
from redis.cluster import key_slot

from sandbox.runner import ServerThread
from sandbox.stripe import StripeEmulator
from sandbox.wechat import WechatEmulator, WechatKeys
from service import keys
from service.model import Payment
from service.schedule import Schedule
from service.states import PaymentState
from service.store import Store, connect
from tests.conftest import API_KEY
from tests.redis_cluster import RedisCluster
from tests.relay_process import RelayProcess

NOW = 1_900_000_000_000


@pytest.fixture
def cluster(redis_cluster: RedisCluster) -> RedisCluster:
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
async def store(cluster: RedisCluster) -> AsyncIterator[Store]:
    client = connect(cluster.url)
    yield Store(client, 86400)
    await client.aclose()


def test_connect_picks_the_client_by_url(cluster: RedisCluster) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    assert isinstance(connect(cluster.url), AsyncCluster)
    assert isinstance(connect("redis://127.0.0.1:6379/0"), Redis)
    assert isinstance(connect("rediss://127.0.0.1:6380/0"), Redis)


async def _reserve(store: Store, transaction_id: str, deadline_ms: int) -> str:
    bucket = keys.bucket_for("shop", transaction_id)
    pid = keys.new_payment_id(bucket)
    record = Payment(payment_id=pid, client="shop", transaction_id=transaction_id, gateway="stripe-connect",
                     amount=2500, currency="USD", date="2026-11-21", description="", complete_url="https://a/",
                     cancel_url="https://a/", online=True, save_method=False, notify_kind="generic",
                     created_at=NOW, updated_at=NOW, expires_at=deadline_ms, status=PaymentState.CREATING,
                     version=0, fingerprint="f")
    reservation = await store.reserve(record, now_ms=NOW)
    assert reservation.outcome == "new"
    await store.finalize(pid, "https://pay.example/x", "ref", NOW)
    return pid


async def test_payments_spread_over_all_masters(cluster: RedisCluster, store: Store) -> None:
    pids = [await _reserve(store, f"t{i}", NOW + 1000) for i in range(300)]
    owner = cluster.node_of_slot()
    by_node: Counter[int] = Counter()
    for pid in pids:
        bucket = keys.bucket_of(pid)
        assert bucket is not None
        slots = {key_slot(k.encode()) for k in (keys.payment(bucket, pid), keys.due(bucket), keys.outbox(bucket),
                                                 keys.transaction(bucket, "shop", "x"))}
        assert len(slots) == 1  # one atomic script's keys: one slot
        by_node[owner[slots.pop()]] += 1
    assert set(by_node) == set(cluster.ports), by_node
    # and they really are there: each master holds exactly the payments of its slots
    for port in cluster.ports:
        with redis.Redis(port=port, decode_responses=True) as node:
            held = [k for b in range(keys.BUCKETS) for k in node.scan_iter(keys.payment(b, "*"))]
        assert len(held) == by_node[port] > 0
    buckets_by_node = Counter(owner[key_slot(keys.due(b).encode())] for b in range(keys.BUCKETS))
    assert set(buckets_by_node) == set(cluster.ports)


async def test_schedule_pipeline_and_scripts_across_nodes(cluster: RedisCluster, store: Store) -> None:
    pids = [await _reserve(store, f"due{i}", NOW + i) for i in range(120)]
    schedule = Schedule(store.redis, keys.due, keys.payment_prefix, "status", ("closed",), 60_000)
    look = await schedule.look(NOW + 10_000)
    counts = look.counts
    assert sum(counts.values()) == len(pids) and look.oldest_due == look.soonest == NOW
    assert len(counts) > 3  # many buckets, so all masters (see above)
    claims = [claim for bucket in counts for claim in await schedule.claim(bucket, NOW + 10_000, 100)]
    assert {c.id for c in claims} == set(pids)
    assert (await schedule.look(NOW + 10_000)).counts == {}  # all leased
    finished = claims[:10]
    for claim in finished:
        assert await schedule.finish(claim, NOW + 99_000)
    await schedule.release_all(NOW + 20_000)
    assert not schedule.held
    assert sum((await schedule.look(NOW + 20_000)).counts.values()) == len(pids) - len(finished)


# -- two replicas and a worker ------------------------------------------------------------------

# A close at each gateway, and which order it names: WeChat's out_trade_no is the paymentId,
# Stripe's Checkout Session id is the payment's gatewayReference.
CLOSE_PATHS = {
    "wechat": re.compile(r"/v3/pay/transactions/out-trade-no/([^/]+)/close"),
    "stripe": re.compile(r"/v1/checkout/sessions/([^/]+)/expire"),
}


class CloseRecorder:
    """Wraps an emulator's app and counts close calls per order."""

    def __init__(self, app: Any, path: re.Pattern[str]) -> None:
        self.app = app
        self.path = path
        self.closes: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (m := self.path.fullmatch(scope["path"])):
            self.closes[m.group(1)] += 1
        await self.app(scope, receive, send)


@pytest.fixture(params=["wechat", "stripe"])
def recorded(request: pytest.FixtureRequest, served: Callable[[Any], ServerThread]) -> tuple[Any, CloseRecorder]:
    emulator: Any
    if request.param == "wechat":
        emulator = WechatEmulator(WechatKeys.generate())
        emulator.advance(-3600)  # the gateway's own expiry stays away: payrelay must close the orders
    else:
        emulator = StripeEmulator()  # Stripe's expires_at is 30 min away at least: payrelay expires it
    recorder = CloseRecorder(emulator.app, CLOSE_PATHS[request.param])
    emulator.bind(served(recorder).url, "")
    return emulator, recorder


def _order(gateway: str) -> dict[str, Any]:
    body = {"transactionId": f"order-{uuid.uuid4().hex[:12]}", "amount": "3.00", "currency": "CNY",
            "date": "2026-11-21", "paymentGatewayType": gateway,
            "completePayRedirectUrl": "https://shop.example/done",
            "cancelPayRedirectUrl": "https://shop.example/cancel", "onlineScenario": True}
    if gateway == "stripe-connect":
        body["customerIdentifier"] = "buyer@example.com"
    return body


@pytest.mark.slow
async def test_two_replicas_and_a_worker_on_the_cluster(
    cluster: RedisCluster, recorded: tuple[Any, CloseRecorder], tmp_path: Any
) -> None:
    emulator, recorder = recorded
    env = {"PAYRELAY_REDIS_URL": cluster.url, "PAYRELAY_API_KEYS": f"shop:{API_KEY}",
           "PAYRELAY_PAYMENT_TTL": "2", **emulator.env()}
    processes = [RelayProcess(env, "serve", log_dir=tmp_path), RelayProcess(env, "serve", log_dir=tmp_path),
                 RelayProcess(env, "worker", log_dir=tmp_path)]
    emulator.bind(emulator.base_url, f"{processes[0].url}/webhooks/{emulator.gateway_type.split('-')[0]}")
    try:
        for process in processes:
            process.wait_ready()
        replicas = processes[:2]
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            answers = await asyncio.gather(*(
                client.post(f"{replicas[i % 2].url}/api/transactions", json=_order(emulator.gateway_type))
                for i in range(40)))
            assert [a.status_code for a in answers] == [200] * 40, answers[0].text
            pids = [a.json()["paymentId"] for a in answers]
            deadline = time.monotonic() + 30
            while True:
                views = [(await client.get(f"{replicas[i % 2].url}/api/transactions/{pid}")).json()
                         for i, pid in enumerate(pids)]
                if all(v["status"] == "closed" for v in views) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        assert [v["status"] for v in views] == ["closed"] * len(pids)
        assert all(v["version"] == 1 for v in views)  # one transition each: waiting → closed
        orders = {v["paymentId"]: v["paymentId"] if emulator.gateway_type == "wechat-pay-native"
                  else v["gatewayReference"] for v in views}
        assert {pid: recorder.closes[order] for pid, order in orders.items()} == dict.fromkeys(pids, 1)
        # spread over the masters, and nothing left scheduled
        owner = cluster.node_of_slot()
        assert {owner[key_slot(keys.due(keys.bucket_of(pid) or 0).encode())] for pid in pids} == set(cluster.ports)
        client_ = connect(cluster.url)
        try:
            counts = (await Schedule(client_, keys.due, keys.payment_prefix, "status", (),
                                     1).look(int(time.time() * 1000) + 10**9)).counts
        finally:
            await client_.aclose()
        assert counts == {}
    finally:
        for process in processes:
            process.stop()
    for process in processes:
        assert "Traceback" not in process.log(), process.log()[-3000:]
