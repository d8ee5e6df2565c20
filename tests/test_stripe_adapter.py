"""StripeAdapter against the Stripe emulator over real HTTP, through the official SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adapters.base import CreateRequest, GatewayState, Money, PaymentRef, Status
from adapters.config import Secret
from adapters.errors import (
    GatewayProtocolError,
    GatewayRefused,
    WebhookPayloadError,
    WebhookSignatureError,
)
from adapters.stripe import transformers as tx
from adapters.stripe.adapter import StripeAdapter
from sandbox.runner import serving
from sandbox.stripe import CheckoutError, StripeEmulator
from tests.fixtures_stripe import MakeAdapter, Receiver

_counter = iter(range(10**6))


def request(**changes: Any) -> CreateRequest:
    values: dict[str, Any] = {
        "payment_id": f"pr_test{next(_counter):06d}{int(time.time() * 1000) % 10**8}",
        "amount": Money(2500, "USD"),
        "description": "Pro membership · 10 GB 容量包",
        "complete_url": "https://shop.example/done?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        "expires_at": int(time.time()) + 3600,
        "customer": "buyer@example.com",
    }
    values.update(changes)
    return CreateRequest(**values)


def ref_of(req: CreateRequest, reference: str | None) -> PaymentRef:
    return PaymentRef(req.payment_id, reference, req.amount)


async def opened(adapter: StripeAdapter, **changes: Any) -> tuple[CreateRequest, PaymentRef, str]:
    req = request(**changes)
    created = await adapter.create(req)
    assert created.payment_url and created.gateway_reference
    return req, ref_of(req, created.gateway_reference), created.payment_url


async def events(adapter: StripeAdapter, receiver: Receiver) -> list[Any]:
    return [await adapter.parse_webhook(headers, body) for headers, body in receiver.received]


# -- create, query, pay ---------------------------------------------------------------------------

async def test_create_opens_a_session_that_queries_waiting(stripe_adapter: StripeAdapter,
                                                           stripe_emulator: StripeEmulator) -> None:
    req = request()
    created = await stripe_adapter.create(req)
    assert created.status is Status.WAITING and created.gateway_reference
    assert created.gateway_reference.startswith("cs_test_")
    assert created.payment_url == f"{stripe_emulator.base_url}/c/pay/{created.gateway_reference}"
    session = stripe_emulator.sessions[created.gateway_reference]
    assert (session["mode"], session["currency"], session["amount_total"]) == ("payment", "usd", 2500)
    assert session["client_reference_id"] == req.payment_id
    assert session["metadata"] == {"paymentId": req.payment_id}
    assert session["customer_email"] == "buyer@example.com"
    assert session["expires_at"] == req.expires_at
    state = await stripe_adapter.query(ref_of(req, created.gateway_reference))
    assert state == GatewayState(req.payment_id, Status.WAITING, "open", created.gateway_reference,
                                 Money(2500, "USD"))


async def test_description_is_the_product_name_cut_to_stripes_limit(stripe_adapter: StripeAdapter) -> None:
    _, _, url = await opened(stripe_adapter)
    async with httpx.AsyncClient() as http:
        page = (await http.get(url)).text
    assert "Pro membership · 10 GB 容量包" in page and "US$25.00" in page
    long = tx.session_params(request(description="é" * 6000), int(time.time()))
    assert long["line_items"][0]["price_data"]["product_data"]["name"] == "é" * tx.PRODUCT_NAME_LIMIT
    blank = tx.session_params(request(description="  "), int(time.time()))
    assert blank["line_items"][0]["price_data"]["product_data"]["name"] == "Payment"
    # an off-session PaymentIntent's description has Stripe's own, lower limit
    intent = tx.off_session_params(request(description="é" * 6000), "cus_1", "pm_1")
    assert intent["description"] == "é" * tx.INTENT_DESCRIPTION_LIMIT


@pytest.mark.parametrize(("amount", "stripe_amount", "shown"), [
    (Money(500, "ISK"), 50000, "ISK\u00a0500.00"),  # ISK: zero-decimal in ISO 4217, hundredths at Stripe
    (Money(300, "JPY"), 300, "¥300"),
    (Money(1250, "KWD"), 1250, "KWD\u00a01.250"),
])
async def test_amounts_are_in_stripes_units_both_ways(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                     amount: Money, stripe_amount: int, shown: str) -> None:
    _, ref, url = await opened(stripe_adapter, amount=amount)
    assert ref.gateway_reference is not None
    assert stripe_emulator.sessions[ref.gateway_reference]["amount_total"] == stripe_amount
    async with httpx.AsyncClient() as http:
        assert shown in (await http.get(url)).text
    await stripe_emulator.pay(url, "paid")
    assert (await stripe_adapter.query(ref)).amount == amount


@pytest.mark.parametrize("amount", [Money(1255, "KWD"), Money(1, "BHD")])
async def test_stripe_refuses_three_decimal_amounts_off_its_step(stripe_adapter: StripeAdapter, amount: Money) -> None:
    assert stripe_adapter.amount_steps[amount.currency] == 10  # so payrelay refuses them before asking
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.create(request(amount=amount))
    assert refused.value.param == "line_items[0][price_data][unit_amount]"


def test_a_stripe_amount_that_is_no_whole_krona_is_a_protocol_error() -> None:
    session = {"id": "cs_test_1", "status": "complete", "payment_status": "paid", "amount_total": 50050,
               "currency": "isk", "metadata": {"paymentId": "pr_x"}}
    with pytest.raises(GatewayProtocolError, match="no whole amount of ISK"):
        tx.session_state("pr_x", session)


async def test_paid_session_queries_succeeded(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                              stripe_webhooks: Receiver) -> None:
    req, ref, url = await opened(stripe_adapter)
    landed = await stripe_emulator.pay(url, "paid")
    assert landed == f"https://shop.example/done?session={ref.gateway_reference}"
    state = await stripe_adapter.query(ref)
    assert (state.status, state.gateway_state, state.amount) == (Status.SUCCEEDED, "complete/paid",
                                                                 Money(2500, "USD"))
    [event] = await events(stripe_adapter, stripe_webhooks)
    assert event.event_id.startswith("evt_")
    assert event.state == GatewayState(req.payment_id, Status.SUCCEEDED, "checkout.session.completed/paid",
                                       ref.gateway_reference, Money(2500, "USD"))


@pytest.mark.parametrize(("outcome", "final"), [("paid", Status.SUCCEEDED), ("failed", Status.FAILED)])
async def test_delayed_payment_is_processing_until_settled(
    stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator, stripe_webhooks: Receiver,
    outcome: Any, final: Status,
) -> None:
    req, ref, url = await opened(stripe_adapter)
    await stripe_emulator.pay(url, "processing")
    assert (await stripe_adapter.query(ref)).status is Status.PROCESSING
    await stripe_emulator.settle(req.payment_id, outcome)
    state = await stripe_adapter.query(ref)
    assert state.status is final
    assert (state.failure_reason is None) is (final is Status.SUCCEEDED)
    parsed = await events(stripe_adapter, stripe_webhooks)
    assert [e.state.status for e in parsed] == [Status.PROCESSING, final]
    word = "succeeded" if outcome == "paid" else "failed"
    assert parsed[1].state.gateway_state == f"checkout.session.async_payment_{word}"


async def test_declined_card_and_cancel_leave_it_waiting(stripe_adapter: StripeAdapter,
                                                         stripe_emulator: StripeEmulator,
                                                         stripe_webhooks: Receiver) -> None:
    _, ref, url = await opened(stripe_adapter)
    assert await stripe_emulator.pay(url, "failed") == url
    assert await stripe_emulator.pay(url, "cancel") == "https://shop.example/cancel"
    assert (await stripe_adapter.query(ref)).status is Status.WAITING
    assert stripe_webhooks.received == []


# -- close ----------------------------------------------------------------------------------------

async def test_close_expires_the_session_and_the_page_refuses_payment(
    stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator, stripe_webhooks: Receiver,
) -> None:
    _, ref, url = await opened(stripe_adapter)
    state = await stripe_adapter.close(ref)
    assert (state.status, state.gateway_state) == (Status.CLOSED, "expired")
    assert stripe_emulator.calls["close"] == 1
    with pytest.raises(CheckoutError, match="expired"):
        await stripe_emulator.pay(url, "paid")
    assert (await stripe_adapter.query(ref)).status is Status.CLOSED
    assert (await stripe_adapter.close(ref)).status is Status.CLOSED  # again: no error
    await stripe_webhooks.wait_for(1)
    [event] = await events(stripe_adapter, stripe_webhooks)
    assert event.state.status is Status.CLOSED


@pytest.mark.parametrize(("outcome", "status"), [("paid", Status.SUCCEEDED), ("processing", Status.PROCESSING)])
async def test_close_after_payment_answers_the_payment(stripe_adapter: StripeAdapter,
                                                       stripe_emulator: StripeEmulator,
                                                       outcome: Any, status: Status) -> None:
    _, ref, url = await opened(stripe_adapter)
    await stripe_emulator.pay(url, outcome)
    assert (await stripe_adapter.close(ref)).status is status
    assert stripe_emulator.sessions[ref.gateway_reference or ""]["status"] == "complete"


# -- idempotency, accounts, expiry ----------------------------------------------------------------

async def test_same_payment_id_twice_is_one_session(stripe_adapter: StripeAdapter,
                                                    stripe_emulator: StripeEmulator) -> None:
    req = request()
    first = await stripe_adapter.create(req)
    second = await stripe_adapter.create(req)
    assert first == second
    assert stripe_emulator.calls["create"] == 1 and len(stripe_emulator.sessions) == 1


async def test_same_payment_id_with_a_different_request_is_refused(stripe_adapter: StripeAdapter,
                                                                    stripe_emulator: StripeEmulator) -> None:
    req = request()
    await stripe_adapter.create(req)
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.create(request(payment_id=req.payment_id, amount=Money(2600, "USD")))
    assert refused.value.code == "idempotency_error" and not refused.value.retryable
    assert len(stripe_emulator.sessions) == 1


async def test_connected_accounts_are_kept_apart(make_stripe_adapter: MakeAdapter,
                                                  stripe_emulator: StripeEmulator,
                                                  stripe_webhooks: Receiver) -> None:
    stripe_emulator.accounts |= {"acct_1Shop", "acct_2Other"}
    shop = make_stripe_adapter(connect_account="acct_1Shop")
    req, ref, url = await opened(shop)
    strangers = (make_stripe_adapter(connect_account="acct_2Other"), make_stripe_adapter())
    for stranger in strangers:
        with pytest.raises(GatewayRefused) as refused:
            await stranger.query(ref)
        assert refused.value.code == "resource_missing"
    assert (await shop.query(ref)).status is Status.WAITING
    await stripe_emulator.pay(url, "paid")
    assert (await shop.query(ref)).status is Status.SUCCEEDED
    [(headers, body)] = stripe_webhooks.received
    assert json.loads(body)["account"] == "acct_1Shop"
    # one Connect endpoint gets every account's events: each payrelay takes only its own account's
    assert (await shop.parse_webhook(headers, body)) is not None
    for stranger in strangers:
        assert await stranger.parse_webhook(headers, body) is None
    # another account is another idempotency scope: the same payment id makes another session there
    other = await make_stripe_adapter(connect_account="acct_2Other").create(req)
    assert other.gateway_reference != ref.gateway_reference


@pytest.mark.parametrize("ttl", [1, 1800, 3600, 3 * 86400])
async def test_expires_at_is_clamped_into_stripes_window(stripe_adapter: StripeAdapter,
                                                         stripe_emulator: StripeEmulator, ttl: int) -> None:
    now = int(time.time())
    _, ref, _ = await opened(stripe_adapter, expires_at=now + ttl)
    ahead = stripe_emulator.sessions[ref.gateway_reference or ""]["expires_at"] - now
    if ttl == 3600:
        assert ahead == ttl
    assert tx.MIN_EXPIRY + tx.EXPIRY_MARGIN <= ahead <= tx.MAX_EXPIRY - tx.EXPIRY_MARGIN


@given(expires_in=st.integers(-10**6, 10**7), now=st.integers(1_700_000_000, 2_000_000_000),
       later=st.integers(0, 30))
def test_gateway_expiry_is_in_the_window_and_stable_for_retries(expires_in: int, now: int, later: int) -> None:
    first = tx.gateway_expiry(now + expires_in, now)
    assert now + tx.MIN_EXPIRY + tx.EXPIRY_MARGIN <= first <= now + tx.MAX_EXPIRY - tx.EXPIRY_MARGIN
    if tx.MIN_EXPIRY + 2 * tx.EXPIRY_GRID <= expires_in <= tx.MAX_EXPIRY - 2 * tx.EXPIRY_GRID:
        assert first == now + expires_in  # inside the window: untouched
    retried = tx.gateway_expiry(now + expires_in, now + later)
    grid = tx.EXPIRY_GRID
    low, high = now + tx.MIN_EXPIRY + tx.EXPIRY_MARGIN, now + tx.MAX_EXPIRY - tx.EXPIRY_MARGIN
    if -(-low // grid) == -(-(low + later) // grid) and high // grid == (high + later) // grid:
        assert retried == first  # a retry in the same grid cell sends the same expires_at


# -- failures -------------------------------------------------------------------------------------

async def test_unknown_account_is_refused(make_stripe_adapter: MakeAdapter) -> None:
    with pytest.raises(GatewayRefused) as refused:
        await make_stripe_adapter(connect_account="acct_nobody").create(request())
    assert refused.value.code == "account_invalid"


@pytest.mark.parametrize(("status", "body"), [
    (200, "<html>a proxy's page</html>"),
    (200, '{"id": "cs_x", "object": "checkout.session"}'),
    (200, "[]"),
    (200, "null"),
    (400, '{"error": "not an object"}'),
    (418, '{"error": {"type": "api_error", "message": "teapot"}}'),
])
async def test_answers_that_are_not_stripes_are_protocol_errors(make_stripe_adapter: MakeAdapter,
                                                                status: int, body: str) -> None:
    async def answer(_: Any) -> PlainTextResponse:
        return PlainTextResponse(body, status, media_type="application/json")

    app = Starlette(routes=[Route("/v1/checkout/sessions", answer, methods=["POST"]),
                            Route("/v1/checkout/sessions/{id}", answer)])
    with serving(app) as server:
        adapter = make_stripe_adapter(api_base=server.url)
        with pytest.raises(GatewayProtocolError):
            await adapter.create(request())
        with pytest.raises(GatewayProtocolError):
            await adapter.query(PaymentRef("pr_x", "cs_x", Money(1, "USD")))


# -- off-session charges --------------------------------------------------------------------------

async def saved_method(adapter: StripeAdapter, emulator: StripeEmulator, email: str) -> None:
    _, _, url = await opened(adapter, customer=email, save_method=True)
    await emulator.pay(url, "paid")


async def test_off_session_charge_uses_the_saved_method(stripe_adapter: StripeAdapter,
                                                        stripe_emulator: StripeEmulator) -> None:
    await saved_method(stripe_adapter, stripe_emulator, "saver@example.com")
    [customer] = stripe_emulator.customers.values()
    assert customer["email"] == "saver@example.com"
    req = request(customer="saver@example.com", online=False, amount=Money(1200, "EUR"))
    created = await stripe_adapter.create(req)
    assert (created.payment_url, created.status) == (None, Status.SUCCEEDED)
    assert created.gateway_reference and created.gateway_reference.startswith("pi_")
    intent = stripe_emulator.payment_intents[created.gateway_reference]
    assert (intent["customer"], intent["amount"], intent["currency"]) == (customer["id"], 1200, "eur")
    assert intent["metadata"] == {"paymentId": req.payment_id}
    assert stripe_emulator.calls["charge"] == 1
    ref = ref_of(req, created.gateway_reference)
    state = await stripe_adapter.query(ref)
    assert (state.status, state.amount) == (Status.SUCCEEDED, Money(1200, "EUR"))
    assert (await stripe_adapter.close(ref)).status is Status.SUCCEEDED


@pytest.mark.parametrize(("decline", "reason"), [("authentication_required", "authentication_required"),
                                                 ("card_declined", "generic_decline")])
async def test_off_session_decline_is_a_failed_result(stripe_adapter: StripeAdapter,
                                                      stripe_emulator: StripeEmulator,
                                                      decline: str, reason: str) -> None:
    await saved_method(stripe_adapter, stripe_emulator, "saver@example.com")
    stripe_emulator.off_session_decline = decline
    req = request(customer="saver@example.com", online=False)
    created = await stripe_adapter.create(req)
    assert created.status is Status.FAILED and created.gateway_reference
    assert created.failure_reason and created.failure_reason.startswith(reason)
    assert await stripe_adapter.create(req) == created  # the decline is replayed, not charged again
    assert stripe_emulator.calls["charge"] == 1
    assert (await stripe_adapter.query(ref_of(req, created.gateway_reference))).status is Status.FAILED


@pytest.mark.parametrize("history", ["none", "paid_without_saving", "no_customer"])
async def test_off_session_without_a_saved_method_is_refused(stripe_adapter: StripeAdapter,
                                                             stripe_emulator: StripeEmulator, history: str) -> None:
    if history == "paid_without_saving":
        _, _, url = await opened(stripe_adapter, customer="once@example.com")
        await stripe_emulator.pay(url, "paid")
    customer = None if history == "no_customer" else "once@example.com"
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.create(request(customer=customer, online=False))
    assert refused.value.param == "customerIdentifier"
    assert stripe_emulator.calls["charge"] == 0


# -- webhooks -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("event_type", "session", "status"), [
    ("checkout.session.completed", {"status": "complete", "payment_status": "paid"}, Status.SUCCEEDED),
    ("checkout.session.completed", {"status": "complete", "payment_status": "unpaid"}, Status.PROCESSING),
    ("checkout.session.async_payment_succeeded", {"status": "complete", "payment_status": "paid"},
     Status.SUCCEEDED),
    ("checkout.session.async_payment_failed", {"status": "complete", "payment_status": "unpaid"}, Status.FAILED),
    ("checkout.session.expired", {"status": "expired"}, Status.CLOSED),
])
async def test_genuine_events_map_to_our_states(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                event_type: str, session: dict[str, Any], status: Status) -> None:
    req, ref, _ = await opened(stripe_adapter)
    body, headers = stripe_emulator.signed_event(event_type, ref.gateway_reference or "", overrides=session)
    event = await stripe_adapter.parse_webhook(headers, body)
    assert event is not None and event.event_id == json.loads(body)["id"]
    assert event.state.payment_id == req.payment_id and event.state.status is status
    assert (event.state.gateway_reference, event.state.amount) == (ref.gateway_reference, Money(2500, "USD"))


async def test_timestamps_within_tolerance_pass(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator) -> None:
    _, ref, _ = await opened(stripe_adapter)
    for skew in (-280, 280):
        body, headers = stripe_emulator.signed_event("checkout.session.expired", ref.gateway_reference or "",
                                                     timestamp=int(time.time()) + skew)
        assert await stripe_adapter.parse_webhook(headers, body) is not None


async def test_every_configured_secret_is_accepted(make_stripe_adapter: MakeAdapter,
                                                   stripe_emulator: StripeEmulator) -> None:
    adapter = make_stripe_adapter(webhook_secrets=(Secret("whsec_new_one"), Secret(stripe_emulator.webhook_secret)))
    _, ref, _ = await opened(adapter)
    session = ref.gateway_reference or ""
    for secret in ("whsec_new_one", None):  # None: the emulator's (the old one, still configured)
        body, headers = stripe_emulator.signed_event("checkout.session.expired", session, secret=secret)
        assert await adapter.parse_webhook(headers, body) is not None
    body, headers = stripe_emulator.signed_event("checkout.session.expired", session, secret="whsec_retired")
    with pytest.raises(WebhookSignatureError):
        await adapter.parse_webhook(headers, body)


async def test_other_event_types_are_none(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator) -> None:
    _, ref, _ = await opened(stripe_adapter)
    for event_type in ("payment_intent.succeeded", "checkout.session.updated", "charge.refunded"):
        body, headers = stripe_emulator.signed_event(event_type, ref.gateway_reference or "")
        assert await stripe_adapter.parse_webhook(headers, body) is None


@pytest.mark.parametrize("overrides", [
    {"client_reference_id": None, "metadata": {}},
    {"amount_total": "2500"},
    {"payment_status": "refunded_somehow"},
])
async def test_unusable_events_are_payload_errors(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                  overrides: dict[str, Any]) -> None:
    _, ref, _ = await opened(stripe_adapter)
    body, headers = stripe_emulator.signed_event("checkout.session.completed", ref.gateway_reference or "",
                                                 overrides=overrides)
    with pytest.raises(WebhookPayloadError):
        await stripe_adapter.parse_webhook(headers, body)


async def test_payment_id_falls_back_to_metadata(stripe_adapter: StripeAdapter,
                                                 stripe_emulator: StripeEmulator) -> None:
    req, ref, _ = await opened(stripe_adapter)
    body, headers = stripe_emulator.signed_event("checkout.session.expired", ref.gateway_reference or "",
                                                 overrides={"client_reference_id": None})
    event = await stripe_adapter.parse_webhook(headers, body)
    assert event is not None and event.state.payment_id == req.payment_id


# -- the status tables ----------------------------------------------------------------------------

def test_tables_cover_stripes_documented_states() -> None:
    """Stripe's compound keys (tests/test_contract.py checks each table's states and values)."""
    session_statuses = {"open", "complete", "expired"}
    covered = {key.split("/")[0] for key in tx.SESSION_STATES}
    assert covered == session_statuses
    event_types = {"checkout.session.completed", "checkout.session.async_payment_succeeded",
                   "checkout.session.async_payment_failed", "checkout.session.expired"}
    assert set(tx.EVENT_TYPES) == event_types

