"""Refunds through payrelay, over real HTTP, on real Redis, against each gateway's emulator through
its official SDK: full, partial, several, over-refund, duplicates, concurrency, answers that never
come, a killed process, webhooks before the answer, outcomes that come later (and a refund that
fails after it succeeded), a late payment, and the storage app told of each outcome."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
import redis as sync_redis

from sandbox.base import Emulator
from service import keys, notify_signature
from tests.conftest import Relay, StartRelay
from tests.gateways import REFUNDS, RefundKnobs
from tests.helpers import create, eventually, order, status_of
from tests.receiver import Receiver
from tests.relay_process import RelayProcess

SECRET = "whsec_refunds_test"
LOST = "http://127.0.0.1:9"  # nobody listens there
FAST_SWEEP = {"refunds": {"lease_ms": 2_000}}


@pytest.fixture(params=list(REFUNDS), ids=list(REFUNDS))
def knobs(request: pytest.FixtureRequest) -> RefundKnobs:
    return REFUNDS[request.param]


@pytest.fixture
def emulator(request: pytest.FixtureRequest, knobs: RefundKnobs) -> Emulator:
    return request.getfixturevalue(f"{knobs.name}_emulator")  # type: ignore[no-any-return]


def start(start_relay: StartRelay, emulator: Emulator, receiver: Receiver, *, lose_webhooks: bool = False,
          **env: str) -> Relay:
    """payrelay on the emulator, telling the storage app at ``receiver``; with ``lose_webhooks``
    every webhook the gateway sends goes nowhere (gateways are given a public URL nobody serves)."""
    if lose_webhooks:
        env["PAYRELAY_PUBLIC_URL"] = LOST
    relay = start_relay(emulator, PAYRELAY_NOTIFY_URL=receiver.url + "/hook", PAYRELAY_NOTIFY_SECRET=SECRET, **env)
    if lose_webhooks:
        emulator.bind(emulator.base_url, LOST + "/webhooks")
    return relay


async def paid(relay: Relay, emulator: Emulator) -> dict[str, Any]:
    created = await create(relay, order(emulator))
    await emulator.pay(created["paymentUrl"], "paid")
    payment = await status_of(relay, created["paymentId"], sync=True)  # also when its webhook was lost
    assert payment["status"] == "succeeded"
    return payment


async def refund(relay: Relay, payment_id: str, refund_id: str, amount: str | None = None,
                 **fields: Any) -> Any:
    body = {"refundId": refund_id, **({"amount": amount} if amount else {}), **fields}
    async with relay.client() as client:
        return await client.post(f"/api/transactions/{payment_id}/refunds", json=body)


async def refunds_of(relay: Relay, payment_id: str) -> list[dict[str, Any]]:
    async with relay.client() as client:
        answer = await client.get(f"/api/transactions/{payment_id}/refunds")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]  # type: ignore[no-any-return]


def refund_no(relay: Relay, payment_id: str, refund_id: str) -> str:
    bucket = keys.bucket_of(payment_id)
    assert bucket is not None
    with sync_redis.Redis.from_url(relay.env["PAYRELAY_REDIS_URL"], decode_responses=True) as client:
        found = client.hget(keys.refunds(bucket, payment_id), refund_id)
    assert found
    return str(found)


async def notified(receiver: Receiver, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The storage app's notifications of ``kind``, each verified with its signature."""
    async def arrived() -> bool:
        return len(of_kind()) >= count

    def of_kind() -> list[dict[str, Any]]:
        events = []
        for got in receiver.on("/hook"):
            event = json.loads(got.body)
            if event["type"] == kind:
                assert notify_signature.verify([SECRET], got.headers.get(notify_signature.HEADER.lower()), got.body)
                events.append(event)
        return events

    await eventually(arrived)
    return of_kind()


async def test_a_full_refund_succeeds_and_the_storage_app_is_told(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    payment = await paid(relay, emulator)
    pid = payment["paymentId"]
    answer = await refund(relay, pid, "refund-1", reason="customer asked")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["refundId"], body["paymentId"], body["amount"], body["currency"], body["status"]) == \
        ("refund-1", pid, payment["amount"], payment["currency"], "succeeded")
    assert body["reason"] == "customer asked" and body["failureReason"] is None
    assert bool(body["gatewayReference"]) is knobs.names_refunds
    after = await status_of(relay, pid)
    assert (after["status"], after["refundedAmount"], after["refundingAmount"]) == \
        ("succeeded", payment["amount"], knobs.zero)
    assert knobs.refunded(emulator, payment) == payment["amount"]
    (event,) = await notified(receiver, "refund.succeeded")
    assert event["data"] == body
    async with relay.client() as client:
        one = await client.get(f"/api/transactions/{pid}/refunds/refund-1")
        metrics = (await client.get("/metrics")).text
    assert one.status_code == 200 and one.json() == body
    assert await refunds_of(relay, pid) == [body]
    assert f'payrelay_refunds_total{{gateway="{emulator.gateway_type}",status="succeeded"}} 1.0' in metrics
    await the_timeline_tells_it_all(relay, pid)


async def the_timeline_tells_it_all(relay: Relay, pid: str) -> None:
    """The payment's timeline: created, opened, paid, both notifications delivered, the refund
    asked for and ended, in that order."""
    told: list[tuple[str, ...]] = []

    async def both_delivered() -> bool:
        nonlocal told
        async with relay.client() as client:
            events = (await client.get(f"/api/transactions/{pid}/events")).json()["data"]
        told = [(e["type"], e.get("to") or e.get("outcome") or "", e.get("notification", "")) for e in events]
        return len([t for t in told if t[0] == "delivery"]) == 2

    await eventually(both_delivered)
    paid_at = told.index(("transition", "succeeded", ""))
    assert told[:2] == [("created", "", ""), ("opened", "", "")] and paid_at >= 2
    assert told.index(("refund", "requested", "")) < told.index(("refund", "transitioned", ""))
    assert paid_at < told.index(("delivery", "delivered", "transaction.succeeded"))
    assert told.index(("refund", "transitioned", "")) < told.index(("delivery", "delivered", "refund.succeeded"))


async def test_partial_refunds_never_exceed_what_was_paid(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    payment = await paid(relay, emulator)
    pid = payment["paymentId"]
    first, second, too_much, rest = knobs.parts  # e.g. 10.00 + 10.00, then 10.00 > 5.00 remaining
    assert (await refund(relay, pid, "r1", first)).json()["status"] == "succeeded"
    assert (await refund(relay, pid, "r2", second)).json()["status"] == "succeeded"
    over = await refund(relay, pid, "r3", too_much)
    assert over.status_code == 409 and over.json()["code"] == "refund_exceeds_remaining"
    assert rest in over.json()["detail"]
    last = await refund(relay, pid, "r4")  # no amount: what remains
    assert (last.json()["status"], last.json()["amount"]) == ("succeeded", rest)
    nothing = await refund(relay, pid, "r5", knobs.smallest)
    assert nothing.status_code == 409 and nothing.json()["code"] == "nothing_to_refund"
    assert [r["refundId"] for r in await refunds_of(relay, pid)] == ["r1", "r2", "r4"]  # refusals: not kept
    assert knobs.refunds_made(emulator) == 3 and knobs.refunded(emulator, payment) == payment["amount"]
    assert (await status_of(relay, pid))["refundedAmount"] == payment["amount"]


async def test_the_same_refund_id_is_one_refund(start_relay: StartRelay, emulator: Emulator,
                                                knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    pid = (await paid(relay, emulator))["paymentId"]
    first = await refund(relay, pid, "r1", knobs.smallest)
    again = await refund(relay, pid, "r1", knobs.smallest)
    assert again.status_code == 200 and again.json() == first.json()
    other = await refund(relay, pid, "r1", knobs.parts[0])
    assert other.status_code == 409 and other.json()["code"] == "refund_conflict"
    assert knobs.refunds_made(emulator) == 1


async def test_concurrent_refunds_accept_exactly_what_fits_and_duplicates_make_one(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    payment = await paid(relay, emulator)
    pid = payment["paymentId"]
    piece, fits = knobs.piece  # the payment holds exactly ``fits`` pieces: 50 ask for 5 times that
    answers = await asyncio.gather(*(refund(relay, pid, f"r{i}", piece) for i in range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * fits + [409] * (50 - fits), [a.text for a in answers if a.status_code != 200][:2]
    assert {a.json()["code"] for a in answers if a.status_code == 409} <= {"refund_exceeds_remaining",
                                                                           "nothing_to_refund"}
    assert knobs.refunds_made(emulator) == fits and knobs.refunded(emulator, payment) == payment["amount"]
    assert len(await refunds_of(relay, pid)) == fits  # the refused ones: not kept
    second = await paid(relay, emulator)
    same = await asyncio.gather(*(refund(relay, second["paymentId"], "once") for _ in range(50)))
    assert {a.status_code for a in same} == {200} and len({a.text for a in same}) == 1  # 50 identical answers
    assert knobs.refunds_made(emulator) == fits + 1


async def test_refusals_before_any_gateway_call_keep_nothing(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    waiting = await create(relay, order(emulator))
    unpaid = await refund(relay, waiting["paymentId"], "r1")
    assert unpaid.status_code == 409 and unpaid.json()["code"] == "payment_not_refundable"
    pid = (await paid(relay, emulator))["paymentId"]
    refusals = [({"refundId": "has space"}, "invalid_field"), ({"refundId": "r1", "amount": "-1"}, "invalid_amount"),
                ({"refundId": "r1", "amount": "1.001"}, "invalid_amount"),
                ({"refundId": "r1", "x": 1}, "unknown_field"), ({"amount": "1.00"}, "missing_field")]
    for body, code in refusals:
        async with relay.client() as client:
            refused = await client.post(f"/api/transactions/{pid}/refunds", json=body)
        assert refused.status_code == 400 and refused.json()["code"] == code, refused.text
    async with relay.client("other_key_" + "o" * 24) as other:
        foreign = await other.post(f"/api/transactions/{pid}/refunds", json={"refundId": "r1"})
    assert foreign.status_code == 404
    assert await refunds_of(relay, pid) == [] and knobs.refunds_made(emulator) == 0
    assert (await status_of(relay, pid))["refundingAmount"] == knobs.zero


async def test_an_outcome_that_comes_later_arrives_by_webhook_and_is_notified(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    payment = await paid(relay, emulator)
    pid = payment["paymentId"]
    knobs.later(emulator)
    for refund_id, succeeds in (("later-ok", True), ("later-bad", False)):
        answer = (await refund(relay, pid, refund_id, knobs.smallest)).json()
        assert answer["status"] == "processing"
        assert (await status_of(relay, pid))["refundingAmount"] == knobs.smallest
        await knobs.settle(emulator, refund_no(relay, pid, refund_id), succeeds)

        async def settled(refund_id: str = refund_id, told: bool = succeeds or knobs.notifies_failure) -> bool:
            async with relay.client() as client:  # a failure no webhook tells of: asked for (?sync)
                answer = await client.get(f"/api/transactions/{pid}/refunds/{refund_id}",
                                          params={"sync": str(not told).lower()})
            return answer.json()["status"] != "processing"  # type: ignore[no-any-return]

        await eventually(settled)
    by_id = {r["refundId"]: r for r in await refunds_of(relay, pid)}
    assert by_id["later-ok"]["status"] == "succeeded" and by_id["later-bad"]["status"] == "failed"
    assert by_id["later-bad"]["failureReason"]
    after = await status_of(relay, pid)
    assert (after["refundedAmount"], after["refundingAmount"]) == (knobs.smallest, knobs.zero)
    (failed,) = await notified(receiver, "refund.failed")
    assert failed["data"]["refundId"] == "later-bad"


async def test_the_webhook_before_the_answer_changes_nothing_twice(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    relay = start(start_relay, emulator, receiver)
    payment = await paid(relay, emulator)
    knobs.answer_after(emulator, 1.0)  # refunded and its webhook sent, then the answer a second late
    answer = await refund(relay, payment["paymentId"], "r1")
    assert answer.json()["status"] == "succeeded"
    stored = await refunds_of(relay, payment["paymentId"])
    assert len(stored) == 1 and (await status_of(relay, payment["paymentId"]))["refundedAmount"] == payment["amount"]
    assert len(await notified(receiver, "refund.succeeded")) == 1


@pytest.mark.slow
async def test_an_answer_that_never_comes_is_resolved_by_asking_never_by_refunding_again(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    """The refund is made at the gateway, its webhook lost, its answer later than payrelay waits:
    the refund stays processing, and the sweep asks the gateway under the same number."""
    relay = start(start_relay, emulator, receiver, lose_webhooks=True)
    payment = await paid(relay, emulator)
    knobs.answer_after(emulator, knobs.timeout_s + 2)
    answer = await refund(relay, payment["paymentId"], "r1")
    assert answer.status_code == 200 and answer.json()["status"] == "processing"

    async def resolved() -> bool:
        return (await refunds_of(relay, payment["paymentId"]))[0]["status"] == "succeeded"

    await eventually(resolved, timeout=30)
    assert knobs.refunds_made(emulator) == 1
    assert (await status_of(relay, payment["paymentId"]))["refundedAmount"] == payment["amount"]


@pytest.mark.slow
async def test_a_process_killed_during_the_refund_call_leaves_it_to_the_sweep(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    """A real ``payrelay serve`` SIGKILLed while the gateway holds its refund call: the refund
    stays processing under its lease; once the lease is over, another process's sweep asks the
    gateway and finds it made (once)."""
    relay = start(start_relay, emulator, receiver, lose_webhooks=True, PAYRELAY_LOG_LEVEL="WARNING")
    payment = await paid(relay, emulator)
    pid = payment["paymentId"]
    knobs.answer_after(emulator, 5)
    process = RelayProcess(relay.env).wait_ready()
    try:
        async with relay.client() as client:
            client.base_url = process.url
            call = asyncio.create_task(client.post(f"/api/transactions/{pid}/refunds", json={"refundId": "r1"}))

            async def reserved() -> bool:
                return len(await refunds_of(relay, pid)) == 1

            await eventually(reserved)
            await asyncio.sleep(0.5)  # the call is at the gateway now
            process.process.send_signal(signal.SIGKILL)
            process.wait(10)
            with pytest.raises(Exception):  # noqa: B017 - the connection dies with the process
                await call
    finally:
        process.stop()
    assert (await refunds_of(relay, pid))[0]["status"] == "processing"
    number = refund_no(relay, pid, "r1")
    bucket = keys.bucket_of(pid)
    with sync_redis.Redis.from_url(relay.env["PAYRELAY_REDIS_URL"], decode_responses=True) as redis:
        redis.hset(keys.refund(bucket, number), "callingUntil", "1")  # as if its 30 s lease had passed
        redis.zadd(keys.refund_due(bucket), {number: 1})
        redis.publish(keys.wake("refund-due"), 1)

    async def resolved() -> bool:
        return (await refunds_of(relay, pid))[0]["status"] == "succeeded"

    await eventually(resolved, timeout=30)
    assert knobs.refunds_made(emulator) == 1


@pytest.mark.slow  # the sweep asks 5 s after the call failed
async def test_a_refund_that_never_reached_the_gateway_is_sent_by_the_sweep_under_its_number(
        start_relay: StartRelay, emulator: Emulator, knobs: RefundKnobs, receiver: Receiver) -> None:
    """Reserved, then the process died before its call left: the gateway holds nothing under the
    number, so the sweep sends the refund, under that same number, once."""
    relay = start(start_relay, emulator, receiver)
    payment = await paid(relay, emulator)
    pid = payment["paymentId"]
    knobs.down(emulator, True)
    answer = await refund(relay, pid, "r1")
    assert answer.json()["status"] == "processing" and knobs.refunds_made(emulator) == 0
    knobs.down(emulator, False)

    async def resolved() -> bool:
        return (await refunds_of(relay, pid))[0]["status"] == "succeeded"

    await eventually(resolved, timeout=20)
    assert knobs.refunds_made(emulator) == 1 and knobs.refunded(emulator, payment) == payment["amount"]


async def test_a_late_payment_is_refunded_like_any_other(start_relay: StartRelay, alipay_emulator: Emulator,
                                                         receiver: Receiver) -> None:
    """Paid after payrelay closed it (Alipay: the signed URL still worked): the storage app refunds it."""
    relay = start(start_relay, alipay_emulator, receiver)
    created = await create(relay, order(alipay_emulator))
    async with relay.client() as client:
        await client.post(f"/api/transactions/{created['paymentId']}/close")
    await alipay_emulator.pay(created["paymentUrl"], "paid")
    late = await status_of(relay, created["paymentId"])
    assert (late["status"], late["latePayment"]) == ("succeeded", True)
    answer = await refund(relay, created["paymentId"], "late-1")
    assert (answer.json()["status"], answer.json()["amount"]) == ("succeeded", late["amount"])
    after = await status_of(relay, created["paymentId"])
    assert (after["status"], after["latePayment"], after["refundedAmount"]) == ("succeeded", True, late["amount"])


async def test_a_stripe_refund_returned_after_it_succeeded_ends_failed(
        start_relay: StartRelay, stripe_emulator: Emulator, receiver: Receiver) -> None:
    """The customer's bank returns a refund Stripe had reported succeeded: verified evidence moves
    it to failed, the money counts as not refunded again, and the storage app is told."""
    relay = start(start_relay, stripe_emulator, receiver)
    payment = await paid(relay, stripe_emulator)
    pid = payment["paymentId"]
    stripe_emulator.refund_outcome = "fail_after_success"  # type: ignore[attr-defined]
    assert (await refund(relay, pid, "r1")).json()["status"] == "succeeded"
    assert (await status_of(relay, pid))["refundedAmount"] == payment["amount"]
    await stripe_emulator.settle_refund(refund_no(relay, pid, "r1"), "failed")  # type: ignore[attr-defined]
    (failed,) = await notified(receiver, "refund.failed")
    assert failed["data"]["refundId"] == "r1" and failed["data"]["failureReason"]
    after = await status_of(relay, pid)
    assert (after["refundedAmount"], after["refundingAmount"]) == ("0.00", "0.00")
    again = await refund(relay, pid, "r2")  # what was returned can be refunded again
    assert (again.json()["status"], again.json()["amount"]) == ("succeeded", payment["amount"])
