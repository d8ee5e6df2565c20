"""The contract every adapter honours: the same scenarios, through payrelay over real HTTP, on
real Redis, against each gateway's emulator driven as a customer would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sandbox.base import Emulator
from service import keys
from tests.conftest import Relay, StartRelay

GATEWAYS = ["stripe", "alipay", "wechat"]
REFERENCE_PREFIX = {"stripe-connect": "cs_", "alipay-page": "", "wechat-pay-native": ""}


@pytest.fixture(params=GATEWAYS)
def emulator(request: pytest.FixtureRequest) -> Emulator:
    return request.getfixturevalue(f"{request.param}_emulator")  # type: ignore[no-any-return]


def order(emulator: Emulator | str, **changes: Any) -> dict[str, Any]:
    """A transaction request for the emulator's gateway (or the paymentGatewayType given)."""
    gateway = emulator if isinstance(emulator, str) else emulator.gateway_type
    stripe = gateway == "stripe-connect"
    body = {
        "transactionId": f"order-{uuid.uuid4().hex[:10]}",
        "amount": "25.00" if stripe else "89.00",
        "currency": "USD" if stripe else "CNY",
        "date": "2026-11-21T10:00:00+08:00",
        "paymentGatewayType": gateway,
        "completePayRedirectUrl": "https://shop.example/done",
        "cancelPayRedirectUrl": "https://shop.example/cancel",
        "onlineScenario": True,
        "customerIdentifier": "buyer@example.com",
        "description": "Pro membership · 10 GB 容量包",
    }
    return body | changes


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def status_of(relay: Relay, payment_id: str, sync: bool = False) -> dict[str, Any]:
    async with relay.client() as client:
        answer = await client.get(f"/api/transactions/{payment_id}", params={"sync": str(sync).lower()})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def create(relay: Relay, body: dict[str, Any]) -> dict[str, Any]:
    async with relay.client() as client:
        answer = await client.post("/api/transactions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_pay_to_succeeded(start_relay: StartRelay, emulator: Emulator) -> None:
    relay = start_relay(emulator)
    created = await create(relay, order(emulator))
    assert created["status"] == "waiting" and created["paymentUrl"]
    await emulator.pay(created["paymentUrl"], "paid")
    payment = await status_of(relay, created["paymentId"])
    assert payment["status"] == "succeeded" and payment["paidAt"] and payment["version"] == 1
    assert payment["gatewayReference"].startswith(REFERENCE_PREFIX[emulator.gateway_type])
    assert emulator.webhooks_sent and all(code and 200 <= code < 300 for _, code in emulator.webhooks_sent)


async def test_close_on_request(start_relay: StartRelay, emulator: Emulator) -> None:
    relay = start_relay(emulator)
    created = await create(relay, order(emulator))
    await emulator.pay(created["paymentUrl"], "cancel")  # the customer looked (Alipay: the trade exists)
    async with relay.client() as client:
        closed = await client.post(f"/api/transactions/{created['paymentId']}/close")
        again = await client.post(f"/api/transactions/{created['paymentId']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert again.status_code == 200 and again.json()["version"] == 1
    with pytest.raises(Exception):  # noqa: B017 - each emulator refuses in its own words
        await emulator.pay(created["paymentUrl"], "paid")
    assert (await status_of(relay, created["paymentId"], sync=True))["status"] == "closed"


async def test_lost_webhook_is_found_by_sync(start_relay: StartRelay, emulator: Emulator) -> None:
    relay = start_relay(emulator)
    created = await create(relay, order(emulator))
    emulator.bind(emulator.base_url, "http://127.0.0.1:9/lost")  # nobody listens there
    if emulator.gateway_type != "stripe-connect":
        relay = start_relay(emulator, PAYRELAY_PUBLIC_URL="http://127.0.0.1:9")
        created = await create(relay, order(emulator))
    await emulator.pay(created["paymentUrl"], "paid")
    assert (await status_of(relay, created["paymentId"]))["status"] == "waiting"
    assert (await status_of(relay, created["paymentId"], sync=True))["status"] == "succeeded"


async def test_expiry_closes_at_the_gateway(start_relay: StartRelay, emulator: Emulator) -> None:
    relay = start_relay(emulator, PAYRELAY_PAYMENT_TTL="1")
    created = await create(relay, order(emulator))
    if emulator.gateway_type == "alipay-page":  # the trade exists once the cashier was opened
        await emulator.pay(created["paymentUrl"], "cancel")

    async def closed() -> bool:
        return (await status_of(relay, created["paymentId"]))["status"] == "closed"

    await eventually(closed)
    # closed at the gateway by payrelay, unless the gateway's own time_expire got there first
    assert emulator.calls["close"] <= 1 and emulator.calls["query"] >= 1
    with pytest.raises(Exception):  # noqa: B017
        await emulator.pay(created["paymentUrl"], "paid")


async def test_paid_just_before_expiry_ends_succeeded(start_relay: StartRelay, emulator: Emulator,
                                                       redis_client: Any) -> None:
    relay = start_relay(emulator, PAYRELAY_PUBLIC_URL="http://127.0.0.1:9")
    emulator.bind(emulator.base_url, "http://127.0.0.1:9/lost")  # the webhook never arrives
    created = await create(relay, order(emulator))
    await emulator.pay(created["paymentUrl"], "paid")
    pid = created["paymentId"]  # … and right after the payment, its time is up
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    await redis_client.hset(keys.payment(bucket, pid), "expiresAt", int(time.time() * 1000))
    await redis_client.zadd(keys.due(bucket), {pid: 0})

    async def settled() -> bool:
        return (await status_of(relay, created["paymentId"]))["status"] != "waiting"

    await eventually(settled)
    payment = await status_of(relay, created["paymentId"])
    assert payment["status"] == "succeeded" and payment["latePayment"] is False
    assert emulator.calls["close"] == 0


async def test_gateway_outage_keeps_it_open_and_retries(start_relay: StartRelay, emulator: Emulator,
                                                        redis_client: Any) -> None:
    relay = start_relay(emulator, PAYRELAY_PAYMENT_TTL="1")
    created = await create(relay, order(emulator))
    emulator.down = True
    pid = created["paymentId"]
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    key = keys.payment(bucket, pid)

    async def tried() -> bool:
        return int(await redis_client.hget(key, "sweepAttempts") or 0) >= 1

    await eventually(tried)
    assert (await status_of(relay, pid))["status"] == "waiting"
    emulator.down = False
    await redis_client.zadd(keys.due(bucket), {pid: 0})  # skip the backoff wait

    async def closed() -> bool:
        return (await status_of(relay, pid))["status"] == "closed"

    await eventually(closed)


async def test_duplicate_webhooks_change_nothing(start_relay: StartRelay, emulator: Emulator) -> None:
    relay = start_relay(emulator)
    created = await create(relay, order(emulator))
    await emulator.pay(created["paymentUrl"], "paid")
    before = await status_of(relay, created["paymentId"])
    for _ in range(3):  # the gateway delivers the same notification again, byte for byte
        assert await emulator.redeliver() in (200, 204)
    replayed = await create(relay, order(emulator) | {"transactionId": before["transactionId"]})
    assert replayed["paymentId"] == created["paymentId"] and replayed["status"] == "succeeded"
    after = await status_of(relay, created["paymentId"], sync=True)
    assert after["version"] == before["version"] == 1 and after["updatedAt"] == before["updatedAt"]
    async with relay.client() as client:
        metrics = (await client.get("/metrics")).text
    assert f'payrelay_webhooks_total{{gateway="{emulator.gateway_type}",outcome="duplicate"}} 3.0' in metrics


async def test_alipay_close_before_the_cashier_opened_then_paid_is_a_late_payment(
    start_relay: StartRelay, alipay_emulator: Emulator
) -> None:
    """Alipay holds no trade until the cashier opens, so closing earlier closes nothing there:
    the signed URL still works until its time_expire. A payment made that way is verified
    evidence of payment for a closed payment: succeeded, flagged latePayment, once."""
    relay = start_relay(alipay_emulator)
    created = await create(relay, order(alipay_emulator))
    async with relay.client() as client:
        closed = await client.post(f"/api/transactions/{created['paymentId']}/close")
    assert closed.json()["status"] == "closed"
    await alipay_emulator.pay(created["paymentUrl"], "paid")
    payment = await status_of(relay, created["paymentId"])
    assert (payment["status"], payment["latePayment"], payment["version"]) == ("succeeded", True, 2)
