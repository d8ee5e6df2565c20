"""The contract every adapter honours: the same scenarios against each gateway's emulator.

The first part drives payrelay over real HTTP, on real Redis, with each emulator driven as a
customer would; the second calls each adapter directly (through its SDK, over real HTTP to the
emulator or to a stand-in server). What differs per gateway is in tests/gateways.py.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.base import Adapter, Status
from adapters.errors import GatewayProtocolError, GatewayRefused, GatewayUnavailable, WebhookSignatureError
from sandbox.base import Emulator
from sandbox.runner import ServerThread, free_port
from service import keys
from tests.conftest import StartRelay
from tests.gateways import GATEWAYS, Gateway, StateTable, decoded
from tests.helpers import create, due_now, eventually, order, status_of

REFERENCE_PREFIX = {"stripe-connect": "cs_", "alipay-page": "", "wechat-pay-native": ""}


@pytest.fixture(params=list(GATEWAYS.values()), ids=list(GATEWAYS))
def gateway(request: pytest.FixtureRequest) -> Gateway:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def emulator(request: pytest.FixtureRequest, gateway: Gateway) -> Emulator:
    return request.getfixturevalue(f"{gateway.name}_emulator")  # type: ignore[no-any-return]


@pytest.fixture
def adapter(request: pytest.FixtureRequest, gateway: Gateway) -> Adapter:
    """The gateway's adapter on its emulator (its webhooks go to a receiver of the test's own)."""
    return request.getfixturevalue(f"{gateway.name}_adapter")  # type: ignore[no-any-return]


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
    await due_now(redis_client, keys.due(bucket), pid)

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
    await due_now(redis_client, keys.due(bucket), pid)  # skip the backoff wait

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


# -- each adapter at its boundary ----------------------------------------------------------------

async def first_call(gateway: Gateway, adapter: Adapter) -> Any:
    """The adapter's first call to its gateway for a new payment (Alipay's create is offline)."""
    request = gateway.request()
    if gateway.create_calls_gateway:
        return await adapter.create(request)
    return await adapter.query(gateway.ref(request))


StandIn = Callable[[Callable[[Request], Any]], str]


@pytest.fixture
def stand_in(served: Callable[[Any], ServerThread]) -> StandIn:
    """stand_in(answer) → the URL of a server answering every request with ``answer(request)``:
    what sits in front of a gateway when something between goes wrong."""

    def serve(answer: Callable[[Request], Any]) -> str:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return served(Starlette(routes=[Route("/{path:path}", answer, methods=methods)])).url

    return serve


async def test_an_outage_is_retryable_and_changes_nothing(gateway: Gateway, adapter: Adapter,
                                                          emulator: Emulator) -> None:
    request = gateway.request()
    ref = await gateway.open(adapter, emulator, request)
    before = gateway.at_gateway(emulator)
    emulator.down = True
    calls = [adapter.query(ref), adapter.close(ref)]
    if gateway.create_calls_gateway:
        calls.insert(0, adapter.create(gateway.request()))
    for call in calls:
        with pytest.raises(GatewayUnavailable, match=gateway.outage_match) as unavailable:
            await call
        assert unavailable.value.retryable
        if gateway.outage_code is not None:
            assert unavailable.value.code == gateway.outage_code
    assert gateway.at_gateway(emulator) == before
    emulator.down = False
    assert (await adapter.query(ref)).status is Status.WAITING


async def test_nobody_listening_is_unavailable(gateway: Gateway, emulator: Emulator) -> None:
    adapter = gateway.adapter_at(emulator, f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(GatewayUnavailable, match=gateway.unreachable_match):
            await first_call(gateway, adapter)
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("gateway", [
    pytest.param(g, id=g.gateway_type, marks=[pytest.mark.slow] if g.timeout_s > 2 else [])
    for g in GATEWAYS.values()
], indirect=True)
async def test_a_slow_gateway_times_out_as_unavailable(gateway: Gateway, emulator: Emulator,
                                                       stand_in: StandIn) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(gateway.timeout_s + 0.7)
        return Response("{}")

    adapter = gateway.adapter_at(emulator, stand_in(slow))
    started = time.monotonic()
    try:
        with pytest.raises(GatewayUnavailable, match=gateway.timeout_match):
            await first_call(gateway, adapter)
    finally:
        await adapter.aclose()
    assert time.monotonic() - started < gateway.timeout_s + 1.7


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_5xx_from_in_front_of_the_gateway_is_unavailable(gateway: Gateway, emulator: Emulator,
                                                                 stand_in: StandIn, status: int) -> None:
    async def broken(request: Request) -> Response:
        return Response("<html>bad gateway</html>", status, media_type="text/html")

    adapter = gateway.adapter_at(emulator, stand_in(broken))
    try:
        with pytest.raises(GatewayUnavailable) as unavailable:
            await first_call(gateway, adapter)
    finally:
        await adapter.aclose()
    assert unavailable.value.retryable


async def test_a_proxys_page_answered_200_is_a_protocol_error(gateway: Gateway, emulator: Emulator,
                                                              stand_in: StandIn) -> None:
    async def page(request: Request) -> Response:
        return Response("<html>a proxy's page</html>", 200, media_type="text/html")

    adapter = gateway.adapter_at(emulator, stand_in(page))
    try:
        with pytest.raises(GatewayProtocolError):
            await first_call(gateway, adapter)
    finally:
        await adapter.aclose()


async def test_wrong_credentials_are_refused_without_echoing_them(gateway: Gateway, emulator: Emulator) -> None:
    adapter, code, secret = gateway.wrong_credentials(emulator)
    try:
        with pytest.raises(GatewayRefused) as refused:
            await first_call(gateway, adapter)
    finally:
        await adapter.aclose()
    assert refused.value.code == code and not refused.value.retryable
    assert secret not in str(refused.value) and secret not in repr(refused.value)
    assert secret not in gateway.shown(adapter)


def test_secrets_never_show(gateway: Gateway, adapter: Adapter, emulator: Emulator) -> None:
    shown = gateway.shown(adapter)
    for secret in gateway.secrets(emulator):
        assert secret and secret not in shown


FORGERIES = [pytest.param(g, kind, id=f"{g.gateway_type}-{kind}") for g in GATEWAYS.values() for kind in g.forgeries]


@pytest.mark.parametrize(("gateway", "forgery"), FORGERIES, indirect=["gateway"])
async def test_forged_webhooks_are_signature_errors(gateway: Gateway, adapter: Adapter, emulator: Emulator,
                                                    forgery: str) -> None:
    ref = await gateway.open(adapter, emulator, gateway.request())
    headers, body, _ = gateway.forge(emulator, ref, "genuine")
    assert await adapter.parse_webhook(headers, body) is not None  # the genuine one passes
    headers, body, says = gateway.forge(emulator, ref, forgery)
    with pytest.raises(WebhookSignatureError, match=says):
        await adapter.parse_webhook(headers, body)


def test_acknowledgements_are_in_the_gateways_format(gateway: Gateway, adapter: Adapter) -> None:
    assert decoded(adapter.webhook_ok()) == gateway.ack_ok
    (status, message), expected = gateway.ack_fail
    assert decoded(adapter.webhook_fail(status, message)) == expected


TABLES = [pytest.param(t, id=f"{g.gateway_type}-{t.name}") for g in GATEWAYS.values() for t in g.tables]


@pytest.mark.parametrize("table", TABLES)
def test_status_tables_cover_the_documented_states_and_refuse_others(table: StateTable) -> None:
    assert isinstance(table.table, types.MappingProxyType)
    if table.exact:
        assert set(table.table) == table.documented
    else:
        assert table.documented <= set(table.table)
    assert {state: table.lookup(state) for state in table.expected} == table.expected
    assert {state: table.table[state] for state in table.expected} == table.expected
    with pytest.raises(TypeError):
        table.table["new"] = Status.WAITING  # type: ignore[index]
    with pytest.raises(GatewayProtocolError):
        table.lookup(table.unknown)
