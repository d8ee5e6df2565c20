"""Stripe webhooks through payrelay: verified on the raw body, deduplicated, never backwards."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Relay, StartRelay
from tests.helpers import create, order, status_of


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator)


async def opened(relay: Relay, stripe_emulator: Any) -> tuple[str, str]:
    created = await create(relay, order(stripe_emulator))
    payment = await status_of(relay, created["paymentId"])
    return created["paymentId"], payment["gatewayReference"]


@pytest.mark.parametrize(
    "forgery",
    ["tampered", "stale", "future", "missing", "wrong_secret", "garbage_header"],
)
async def test_bad_signatures_are_400_and_change_nothing(relay: Relay, stripe_emulator: Any,
                                                         forgery: str) -> None:
    pid, session = await opened(relay, stripe_emulator)
    await stripe_emulator.pay((await status_of(relay, pid))["paymentUrl"], "cancel")
    now = int(time.time())
    kwargs: dict[str, Any] = {
        "stale": {"timestamp": now - 301},
        "future": {"timestamp": now + 301},
        "wrong_secret": {"secret": "whsec_not_the_one"},
    }.get(forgery, {})
    body, headers = stripe_emulator.signed_event("checkout.session.completed", session, **kwargs)
    if forgery == "tampered":
        body = body.replace(b'"payment_status": "unpaid"', b'"payment_status": "paid"').replace(
            b'"payment_status":"unpaid"', b'"payment_status":"paid"') + b" "
    if forgery == "missing":
        headers = {k: v for k, v in headers.items() if k.lower() != "stripe-signature"}
    if forgery == "garbage_header":
        headers = {**headers, "Stripe-Signature": "t=abc,v1=zzz"}
    assert await stripe_emulator.deliver(body, headers) == 400
    payment = await status_of(relay, pid)
    assert payment["status"] == "waiting" and payment["version"] == 0


async def test_genuine_events_in_any_order_never_go_backwards(relay: Relay, stripe_emulator: Any) -> None:
    pid, _ = await opened(relay, stripe_emulator)
    await stripe_emulator.pay((await status_of(relay, pid))["paymentUrl"], "processing")
    assert (await status_of(relay, pid))["status"] == "processing"
    await stripe_emulator.settle(pid, "paid")
    payment = await status_of(relay, pid)
    assert (payment["status"], payment["version"]) == ("succeeded", 2)
    # every event again, oldest first, twice: all acknowledged, none changes anything
    sent = len(stripe_emulator.webhooks_sent)
    for _ in range(2):
        for kind in ("checkout.session.completed", "checkout.session.expired",
                     "checkout.session.async_payment_failed"):
            body, headers = stripe_emulator.signed_event(kind, payment["gatewayReference"])
            assert await stripe_emulator.deliver(body, headers) == 200
    assert len(stripe_emulator.webhooks_sent) >= sent
    after = await status_of(relay, pid)
    assert (after["status"], after["version"], after["updatedAt"]) == ("succeeded", 2, payment["updatedAt"])


async def test_amount_mismatch_flags_integrity_error(relay: Relay, stripe_emulator: Any) -> None:
    pid, session = await opened(relay, stripe_emulator)
    body, headers = stripe_emulator.signed_event(
        "checkout.session.completed", session,
        overrides={"amount_total": 1, "payment_status": "paid", "status": "complete"},
    )
    assert await stripe_emulator.deliver(body, headers) == 200
    payment = await status_of(relay, pid)
    assert payment["status"] == "waiting" and payment["integrityError"] is True
    async with relay.client() as client:
        assert 'payrelay_integrity_errors_total{gateway="stripe-connect"} 1.0' in (await client.get("/metrics")).text


async def test_unknown_session_is_acknowledged(relay: Relay, stripe_emulator: Any) -> None:
    pid, session = await opened(relay, stripe_emulator)
    body, headers = stripe_emulator.signed_event(
        "checkout.session.completed", session,
        overrides={"client_reference_id": "pr_00" + "z" * 24, "metadata": {"paymentId": "pr_00" + "z" * 24}},
    )
    assert await stripe_emulator.deliver(body, headers) == 200
    assert (await status_of(relay, pid))["status"] == "waiting"


async def test_redis_down_answers_503(start_relay: StartRelay, stripe_emulator: Any,
                                      disposable_redis: Any) -> None:
    relay = start_relay(stripe_emulator, PAYRELAY_REDIS_URL=disposable_redis.url)
    pid, session = await opened(relay, stripe_emulator)
    disposable_redis.stop()
    body, headers = stripe_emulator.signed_event("checkout.session.completed", session,
                                                 overrides={"payment_status": "paid", "status": "complete"})
    assert await stripe_emulator.deliver(body, headers) == 503
    async with relay.client() as client:
        answer = await client.get(f"/api/transactions/{pid}")
        ready = await client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["code"] == "store_unavailable"
    assert ready.status_code == 503
