"""Webhooks, syncs, closes and the expiry sweep racing each other over one payment.

Over 1,000 seeded interleavings (each seed fixes which customer action happens, the order of the
operations and their delays), the payment always ends in the state the gateway holds, and no
status is notified twice. Real Redis, the Stripe emulator over real HTTP, two payrelay instances
(one serving HTTP and webhooks, one sweeping)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from typing import Any

import pytest

from sandbox.stripe import CheckoutError
from service import keys
from service.clock import now_ms
from service.runtime import Runtime
from tests.conftest import StartRelay
from tests.helpers import order

SEEDS = 1000
AT_ONCE = 25
OPERATIONS = ("webhook", "sync", "close", "expire")
GATEWAY_TRUTH = {  # (session status, payment_status) → what payrelay must end with
    ("open", "unpaid"): "waiting",
    ("complete", "paid"): "succeeded",
    ("complete", "unpaid"): "processing",
    ("expired", "unpaid"): "closed",
}
EVENT_FOR = {
    ("open", "unpaid"): "checkout.session.completed",  # forged neither way: a stale-looking event
    ("complete", "paid"): "checkout.session.completed",
    ("complete", "unpaid"): "checkout.session.completed",
    ("expired", "unpaid"): "checkout.session.expired",
}


@pytest.mark.slow
async def test_interleavings_end_in_the_gateways_state(start_relay: StartRelay, stripe_emulator: Any,
                                                       redis_client: Any) -> None:
    relay = start_relay(stripe_emulator, workers=False, PAYRELAY_NOTIFY_URL="https://shop.example/hook",
                        PAYRELAY_NOTIFY_SECRET="race-secret")
    sweeper_instance = Runtime(relay.settings)
    sweeper = next(w for w in sweeper_instance.workers() if w.name == "expiry")
    outcomes: dict[str, int] = {}

    async with relay.client() as client:

        async def interleaving(seed: int) -> None:
            rng = random.Random(seed)
            created = (await client.post("/api/transactions",
                                         json=order(stripe_emulator, transactionId=f"race-{uuid.uuid4().hex}"))).json()
            pid = created["paymentId"]
            session_id = (await client.get(f"/api/transactions/{pid}")).json()["gatewayReference"]
            customer = rng.choice(["paid", "processing", None])
            operations = [*OPERATIONS, *(["pay"] if customer else [])]
            rng.shuffle(operations)

            async def run(operation: str) -> None:
                await asyncio.sleep(rng.random() * 0.02)
                if operation == "pay":
                    with contextlib.suppress(CheckoutError):  # closed first: the gateway refused
                        await stripe_emulator.pay(created["paymentUrl"], customer)
                elif operation == "webhook":  # a redelivered event about the state at this moment
                    session = stripe_emulator.sessions[session_id]
                    event = EVENT_FOR[(session["status"], session["payment_status"])]
                    body, headers = stripe_emulator.signed_event(event, session_id)
                    assert await stripe_emulator.deliver(body, headers) == 200
                elif operation == "sync":
                    assert (await client.get(f"/api/transactions/{pid}", params={"sync": "true"})).status_code == 200
                elif operation == "close":
                    answer = await client.post(f"/api/transactions/{pid}/close")
                    assert answer.status_code in (200, 409), answer.text
                else:  # expiry: the payment falls due now, and a sweeper instance runs
                    bucket = keys.bucket_of(pid)
                    assert bucket is not None
                    await redis_client.hset(keys.payment(bucket, pid), "expiresAt", now_ms())
                    if await redis_client.zscore(keys.due(bucket), pid) is not None:
                        await redis_client.zadd(keys.due(bucket), {pid: 0}, xx=True)
                    await sweeper.tick()

            await asyncio.gather(*(run(operation) for operation in operations))
            session = stripe_emulator.sessions[session_id]
            truth = GATEWAY_TRUTH[(session["status"], session["payment_status"])]
            payment = (await client.get(f"/api/transactions/{pid}")).json()
            assert payment["status"] == truth, (seed, operations, customer, payment)
            assert payment["latePayment"] is False
            bucket = keys.bucket_of(pid)
            assert bucket is not None
            delivery_ids = await redis_client.lrange(keys.deliveries(bucket, pid), 0, -1)
            types = [await redis_client.hget(keys.delivery(bucket, d), "type") for d in delivery_ids]
            assert len(types) == len(set(types)) == payment["version"], (seed, types)
            outcomes[truth] = outcomes.get(truth, 0) + 1

        for start in range(0, SEEDS, AT_ONCE):
            await asyncio.gather(*(interleaving(seed) for seed in range(start, start + AT_ONCE)))
    await sweeper_instance.close()
    assert sum(outcomes.values()) == SEEDS
    # every run closes, so "waiting" cannot survive; all the others must have come up
    assert set(outcomes) == {"succeeded", "processing", "closed"}, outcomes
