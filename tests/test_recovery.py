"""No payment left unresolved: a create whose process died, or whose gateway call ended without an
answer, is resolved by payrelay itself, by asking the gateway what that create made (same
paymentId: Stripe's idempotency key, WeChat's out_trade_no); and duplicates behind a slow gateway
wait for the one create in flight instead of each paying a gateway timeout of its own.

Through payrelay over real HTTP, on real Redis, against the emulators with the official SDKs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.base import Emulator
from service import keys
from service.clock import now_ms
from service.runtime import Runtime
from service.settings import Client
from service.validation import parse_transaction
from tests.conftest import API_KEY, Relay, StartRelay
from tests.helpers import create, eventually, order, status_of
from tests.receiver import Receiver
from tests.relay_process import RelayProcess

CUT_OFF_MS = keys.CREATING_LEASE_MS + 5_000  # reserved this long ago: its holder's lease has run out


@pytest.fixture
async def relay(start_relay: StartRelay, stripe_emulator: Any, alipay_emulator: Any, wechat_emulator: Any,
                receiver: Receiver) -> Relay:
    return start_relay(stripe_emulator, alipay_emulator, wechat_emulator,
                       PAYRELAY_NOTIFY_URL=receiver.url + "/hook", PAYRELAY_NOTIFY_SECRET="s" * 32)


@pytest.fixture
async def runtime(relay: Relay) -> AsyncIterator[Runtime]:
    """A second payrelay's parts on the same Redis and gateways (no workers), for writing what a
    process that died mid-create left behind."""
    runtime = Runtime(relay.settings)
    yield runtime
    await runtime.close()


async def died_after_reserving(runtime: Runtime, body: dict[str, Any], *, swept: bool = True) -> str:
    """What a create leaves when its process dies right after reserving the payment, before any
    gateway call: the same reservation a create makes, its lease long run out. Not ``swept``:
    the sweeper leaves it alone for an hour, so that what resolves it is the request under test."""
    payments = runtime.payments
    request = parse_transaction(body, payments.adapters, amount_unit="major", allowed_hosts=frozenset())
    client = Client("shop", (), runtime.settings.clients[0].notify_url, ())
    bucket = keys.bucket_for(client.name, request.transaction_id)
    payment_id = keys.new_payment_id(bucket)
    then = now_ms() - (CUT_OFF_MS if swept else 0)  # not swept: due at the lease's end, 30 s away…
    record = payments._new_payment(client, request, payment_id, then, then + 1_800_000, "generic")
    reservation = await runtime.store.reserve(record, now_ms=then)
    assert reservation.outcome == "new"
    if not swept:  # … then the lease runs out, and the sweeper is to look only in an hour
        await runtime.redis.hset(keys.payment(bucket, payment_id), "creatingUntil", then - 5_000)
        await runtime.redis.zadd(keys.due(bucket), {payment_id: then + 3_600_000})
    return payment_id


async def saved_method(relay: Relay, stripe: Emulator, email: str) -> None:
    paid = await create(relay, order(stripe, supportOfflineScenario=True, customerIdentifier=email))
    await stripe.pay(paid["paymentUrl"])
    assert (await status_of(relay, paid["paymentId"]))["status"] == "succeeded"


# what a recovered create ends as, by gateway: Stripe sends the same create again under the same
# idempotency key (it makes the session now, as it would have); WeChat is asked by out_trade_no
# and holds nothing; Alipay page pay makes nothing at the gateway until the cashier opens
AFTER_RESERVE = {"stripe-connect": "waiting", "wechat-pay-native": "closed", "alipay-page": "closed"}


@pytest.mark.parametrize("gateway", sorted(AFTER_RESERVE))
async def test_died_after_reserving_is_resolved_by_the_sweeper(relay: Relay, runtime: Runtime,
                                                               gateway: str) -> None:
    emulator = relay.emulators[gateway]
    payment_id = await died_after_reserving(runtime, order(emulator))

    async def resolved() -> bool:
        found = await runtime.store.get(payment_id)
        return found is None or found.status != "creating"

    await eventually(resolved, timeout=15)
    payment = await status_of(relay, payment_id)
    assert payment["status"] == AFTER_RESERVE[gateway]
    if gateway == "stripe-connect":  # the session Stripe made under the payment's key, once
        assert payment["paymentUrl"] and payment["gatewayReference"].startswith("cs_")
        assert emulator.calls["create"] == 1
    else:
        assert payment["expireTime"] == 0 and payment["paymentUrl"] is None


async def test_off_session_charge_cut_off_is_found_succeeded_and_notified(
        relay: Relay, runtime: Runtime, stripe_emulator: Any, receiver: Receiver) -> None:
    await saved_method(relay, stripe_emulator, "renew@example.com")
    body = order(stripe_emulator, onlineScenario=False, customerIdentifier="renew@example.com")
    payment_id = await died_after_reserving(runtime, body, swept=False)
    payment = await status_of(relay, payment_id, sync=True)  # ?sync=true resolves it at once
    assert (payment["status"], payment["version"]) == ("succeeded", 1)
    assert payment["gatewayReference"].startswith("pi_")
    assert stripe_emulator.calls["charge"] == 1

    async def notified() -> bool:
        return any(b'"transaction.succeeded"' in r.body and payment_id.encode() in r.body
                   for r in receiver.received)

    await eventually(notified)
    # the storage app sending the same request again gets that payment, and Stripe charged once
    again = await create(relay, body)
    assert (again["paymentId"], again["status"]) == (payment_id, "succeeded")
    assert stripe_emulator.calls["charge"] == 1


@pytest.mark.slow  # it waits for the sweeper's resolution of the create: 5 s
async def test_create_answered_503_and_never_retried_ends_resolved(relay: Relay, stripe_emulator: Any) -> None:
    stripe_emulator.down = True
    body = order(stripe_emulator)
    async with relay.client() as client:
        answer = await client.post("/api/transactions", json=body)
        assert answer.status_code == 503
        found = (await client.get("/api/transactions", params={"transactionId": body["transactionId"]})).json()
    stripe_emulator.down = False
    payment_id = found["paymentId"]

    async def opened() -> bool:
        return (await status_of(relay, payment_id))["paymentUrl"] is not None

    await eventually(opened, timeout=15)  # the sweeper asked Stripe again, with the same key
    payment = await status_of(relay, payment_id)
    assert payment["status"] == "waiting" and payment["expireTime"] > 0
    async with relay.client() as client:
        closed = await client.post(f"/api/transactions/{payment_id}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert len(stripe_emulator.sessions) == 1
    assert next(iter(stripe_emulator.sessions.values()))["status"] == "expired"


@pytest.mark.parametrize("gateway", ["stripe-connect", "wechat-pay-native"])
async def test_close_and_sync_work_on_a_cut_off_create(relay: Relay, runtime: Runtime, gateway: str) -> None:
    emulator = relay.emulators[gateway]
    payment_id = await died_after_reserving(runtime, order(emulator), swept=False)
    async with relay.client() as client:
        closed = await client.post(f"/api/transactions/{payment_id}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"


@pytest.mark.slow
@pytest.mark.parametrize("gateway", ["stripe-connect", "wechat-pay-native"])
async def test_duplicates_behind_a_slow_gateway_wait_for_the_one_create(relay: Relay, gateway: str) -> None:
    """The gateway is slower than payrelay's timeout (10 s): every duplicate answers when the one
    create in flight gives up, none sends its own, and the gateway sees one order."""
    emulator: Any = relay.emulators[gateway]
    emulator.delay = 12
    body = order(emulator)
    started = time.monotonic()

    async def one() -> tuple[int, float]:
        async with relay.client() as client:
            answer = await client.post("/api/transactions", json=body)
        return answer.status_code, time.monotonic() - started

    first = asyncio.create_task(one())
    await asyncio.sleep(0.3)
    answers = await asyncio.gather(first, *(one() for _ in range(3)))
    assert [status for status, _ in answers] == [503] * 4
    assert max(took for _, took in answers) < 12  # one gateway timeout, not four
    await asyncio.sleep(emulator.delay + 1 - (time.monotonic() - started))  # the slow call ends
    assert sum(emulator.calls.values()) == 1
    emulator.delay = 0
    answer = await create(relay, body)  # the same request again resumes the same payment
    assert answer["status"] == "waiting" and answer["paymentUrl"]
    if gateway == "stripe-connect":
        assert len(emulator.sessions) == 1
    else:
        assert len(emulator.requests) == 1



@pytest.mark.slow
async def test_process_killed_while_the_gateways_answer(relay: Relay, stripe_emulator: Any,
                                                        receiver: Receiver) -> None:
    """The hostile run's case: creates in flight at the gateways (an off-session charge among
    them) when their `payrelay serve` is SIGKILLed. The gateways finish what they were asked; the
    payrelay left standing finds out what that was, with nobody sending anything again."""
    await saved_method(relay, stripe_emulator, "killed@example.com")
    bodies = {
        "stripe online": order(stripe_emulator),
        "stripe off-session": order(stripe_emulator, onlineScenario=False, customerIdentifier="killed@example.com"),
        "wechat": order(relay.emulators["wechat-pay-native"]),
    }
    victim = RelayProcess(relay.env).wait_ready()
    try:
        for gateway in ("stripe-connect", "wechat-pay-native"):
            relay.emulators[gateway].delay = 1.5  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=victim.url, timeout=10,
                                     headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            sent = [asyncio.create_task(client.post("/api/transactions", json=b)) for b in bodies.values()]
            await asyncio.sleep(0.8)
            victim.process.kill()
            answers = await asyncio.gather(*sent, return_exceptions=True)
    finally:
        victim.stop()
        for gateway in ("stripe-connect", "wechat-pay-native"):
            relay.emulators[gateway].delay = 0  # type: ignore[attr-defined]
    assert all(isinstance(a, httpx.TransportError) for a in answers), answers  # nobody got an answer

    async def payment(body: dict[str, Any]) -> dict[str, Any]:
        async with relay.client() as client:
            found = await client.get("/api/transactions", params={"transactionId": body["transactionId"]})
        assert found.status_code == 200, found.text
        return found.json()  # type: ignore[no-any-return]

    async def resolved() -> bool:
        for body in bodies.values():
            if await runtime_status(relay, await payment(body)) == "creating":
                return False
        return True

    await eventually(resolved, timeout=keys.CREATING_LEASE_MS / 1000 + 20)
    online, charged, wechat = [await payment(b) for b in bodies.values()]
    assert online["status"] == "waiting" and online["paymentUrl"] and len(stripe_emulator.sessions) == 2
    assert charged["status"] == "succeeded" and stripe_emulator.calls["charge"] == 1
    assert wechat["status"] == "waiting" and wechat["paymentUrl"].startswith("weixin://")

    async def notified() -> bool:
        return any(b'"transaction.succeeded"' in r.body and charged["paymentId"].encode() in r.body
                   for r in receiver.received)

    await eventually(notified)


async def runtime_status(relay: Relay, payment: dict[str, Any]) -> str:
    """The stored state (the API shows creating as waiting)."""
    runtime = Runtime(relay.settings)
    try:
        record = await runtime.store.get(payment["paymentId"])
    finally:
        await runtime.close()
    return record.status if record else ""
