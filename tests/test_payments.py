"""service/payments.py: creating payments, idempotent replays and renewals, outages and
off-session charges, through the API over real HTTP on real Redis (Stripe emulator)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from sandbox.base import Emulator
from service import keys
from service.clock import now_ms
from service.expiry import ExpirySweeper
from service.runtime import Runtime
from tests.conftest import Relay, StartRelay
from tests.helpers import commands_during, create, due, order, valid


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator)


async def test_idempotent_replay_conflict_and_renewal(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    async with relay.client() as client:
        first = (await client.post("/api/transactions", json=body)).json()
        again = (await client.post("/api/transactions", json=body)).json()
        changed = await client.post("/api/transactions", json=body | {"amount": "26.00"})
        assert again["paymentId"] == first["paymentId"] and again["paymentUrl"] == first["paymentUrl"]
        assert changed.status_code == 409 and changed.json()["code"] == "transaction_conflict"
        closed = await client.post(f"/api/transactions/{first['paymentId']}/close")
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        renewed = (await client.post("/api/transactions", json=body)).json()
        latest = (await client.get("/api/transactions", params={"transactionId": body["transactionId"]})).json()
    assert renewed["paymentId"] != first["paymentId"] and renewed["status"] == "waiting"
    assert latest["paymentId"] == renewed["paymentId"]
    assert stripe_emulator.calls["create"] == 2


async def test_concurrent_duplicates_open_one_session(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    async with relay.client() as client:
        answers = await asyncio.gather(*(client.post("/api/transactions", json=body) for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert len({(a.json()["paymentId"], a.json()["paymentUrl"]) for a in answers}) == 1
    assert stripe_emulator.calls["create"] == 1


async def test_gateway_outage_is_503_and_retry_reuses_the_payment(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    stripe_emulator.down = True
    async with relay.client() as client:
        failed = await client.post("/api/transactions", json=body)
        assert failed.status_code == 503 and failed.json()["code"] == "gateway_unavailable"
        stripe_emulator.down = False
        retried = await client.post("/api/transactions", json=body)
    assert retried.status_code == 200 and retried.json()["status"] == "waiting"


async def test_saved_method_then_off_session_charges(relay: Relay, stripe_emulator: Any) -> None:
    async with relay.client() as client:
        first = (await client.post("/api/transactions", json=valid(supportOfflineScenario=True))).json()
        await stripe_emulator.pay(first["paymentUrl"])
        assert (await client.get(f"/api/transactions/{first['paymentId']}")).json()["status"] == "succeeded"

        renewal = await client.post("/api/transactions", json=valid(onlineScenario=False))
        assert renewal.status_code == 200, renewal.text
        charged = renewal.json()
        assert (charged["status"], charged["paymentUrl"]) == ("succeeded", None)
        got = (await client.get(f"/api/transactions/{charged['paymentId']}")).json()
        assert got["gatewayReference"].startswith("pi_") and got["version"] == 1

        stripe_emulator.off_session_decline = "insufficient_funds"
        declined = (await client.post("/api/transactions", json=valid(onlineScenario=False))).json()
        assert declined["status"] == "failed"
        got = (await client.get(f"/api/transactions/{declined['paymentId']}")).json()
        assert got["failureReason"] and "insufficient_funds" in got["failureReason"]

        unknown = await client.post("/api/transactions",
                                    json=valid(onlineScenario=False, customerIdentifier="nobody@example.com"))
    assert unknown.status_code == 502 and unknown.json()["param"] == "customerIdentifier"


@pytest.mark.parametrize(("emulator_name", "trips"), [("alipay", 1), ("stripe", 2), ("wechat", 2)])
async def test_a_create_makes_the_fewest_redis_round_trips(
        start_relay: StartRelay, clean_redis: str, request: pytest.FixtureRequest, emulator_name: str,
        trips: int) -> None:
    """One script stores an Alipay payment opened already (page pay signs its URL, no call); a
    create that calls its gateway reserves, calls, then finalizes (which answers the payment)."""
    emulator = request.getfixturevalue(f"{emulator_name}_emulator")
    relay = start_relay(emulator, workers=False)
    body = order(emulator)
    async with relay.client() as client:
        assert (await client.post("/api/transactions", json=order(emulator))).status_code == 200  # scripts loaded
        answers = []

        async def one() -> None:
            answers.append(await client.post("/api/transactions", json=body))

        sent = await commands_during(clean_redis, one)
        again = await client.post("/api/transactions", json=body)
    (answer,) = answers
    assert answer.status_code == 200 and answer.json()["status"] == "waiting"
    assert sent == ["EVALSHA"] * trips
    assert again.json() == answer.json() | {"expireTime": again.json()["expireTime"]}  # the replay: the same URL


async def test_a_sweep_close_is_its_claim_and_its_transition_and_nothing_more(
    start_relay: StartRelay, alipay_emulator: Emulator, clean_redis: str
) -> None:
    """Closing a due payment, in Redis: the claim (with the record) and the transition, which
    answers the payment as it leaves it and ends the claim with the due entry; no read again, no
    second script to end the claim."""
    relay = start_relay(alipay_emulator, workers=False)
    runtime = Runtime(relay.settings)
    sweeper = runtime.workers()[0]
    assert isinstance(sweeper, ExpirySweeper)

    async def expired(payment_id: str) -> None:
        bucket, past = keys.bucket_of(payment_id), now_ms() - 1_000
        assert bucket is not None
        await runtime.redis.hset(keys.payment(bucket, payment_id), "expiresAt", past)
        await due(runtime.redis, bucket, {payment_id: past})

    try:
        first, second = [(await create(relay, order(alipay_emulator)))["paymentId"] for _ in range(2)]
        await expired(first)
        assert await sweeper.tick() == 1  # the scripts loaded, the listing trimmed (hourly)
        await expired(second)
        sent = Counter(await commands_during(clean_redis, sweeper.tick))
        bucket = keys.bucket_of(second)
        assert bucket is not None
        found = await runtime.redis.hgetall(keys.payment(bucket, second))
        assert found["status"] == "closed" and "claim" not in found
        assert await runtime.redis.zscore(keys.due(bucket), second) is None
        assert not sweeper.schedule.held
    finally:
        await runtime.close()
    assert sent["EVALSHA"] == 2 and "HGETALL" not in sent, sent  # the claim, the transition
