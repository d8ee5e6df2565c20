"""The Stripe emulator on the wire: Stripe's formats, keys, idempotency, accounts, page and events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from sandbox.stripe import CheckoutError, StripeEmulator, checkout_amount, parse_params
from tests.fixtures_stripe import Receiver


def session_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "mode": "payment",
        "line_items[0][price_data][currency]": "USD",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "10 GB storage pack",
        "line_items[0][quantity]": "1",
        "success_url": "https://shop.example/done?cs={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        "client_reference_id": "pr_sandbox_1",
        "metadata[paymentId]": "pr_sandbox_1",
        "customer_email": "buyer@example.com",
        "expires_at": str(int(time.time()) + 3600),
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


@pytest.fixture
async def api(stripe_emulator: StripeEmulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stripe_emulator.secret_key}"}
    async with httpx.AsyncClient(base_url=stripe_emulator.base_url, headers=headers) as client:
        yield client


async def create(api: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    answer = await api.post("/v1/checkout/sessions", data=session_form(**changes))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_nested_form_keys_become_objects_and_lists() -> None:
    params = parse_params([
        ("line_items[0][price_data][unit_amount]", "2500"), ("line_items[1][quantity]", "2"),
        ("line_items[0][quantity]", "1"), ("metadata[paymentId]", "pr_1"), ("expand[]", "payment_intent"),
        ("payment_intent_data[setup_future_usage]", "off_session"), ("mode", "payment"),
    ])
    assert params == {
        "line_items": [{"price_data": {"unit_amount": "2500"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"paymentId": "pr_1"}, "expand": ["payment_intent"],
        "payment_intent_data": {"setup_future_usage": "off_session"}, "mode": "payment",
    }


async def test_session_has_stripes_fields(api: httpx.AsyncClient, stripe_emulator: StripeEmulator) -> None:
    session = await create(api)
    assert session["id"].startswith("cs_test_") and session["object"] == "checkout.session"
    assert session["url"] == f"{stripe_emulator.base_url}/c/pay/{session['id']}"
    assert (session["status"], session["payment_status"], session["livemode"]) == ("open", "unpaid", False)
    assert (session["amount_total"], session["currency"], session["mode"]) == (2500, "usd", "payment")
    assert (session["client_reference_id"], session["metadata"]) == ("pr_sandbox_1", {"paymentId": "pr_sandbox_1"})
    assert session["customer_email"] == "buyer@example.com" and session["payment_intent"] is None
    fetched = await api.get(f"/v1/checkout/sessions/{session['id']}")
    assert fetched.json() == session
    assert stripe_emulator.calls == {"create": 1, "query": 1}


async def test_the_official_sdk_works_against_it(stripe_emulator: StripeEmulator) -> None:
    client = stripe.StripeClient(stripe_emulator.secret_key, base_addresses={"api": stripe_emulator.base_url},
                                 max_network_retries=0, http_client=stripe.UrllibClient())
    session = client.v1.checkout.sessions.create({
        "mode": "payment", "success_url": "https://shop.example/ok", "client_reference_id": "pr_sdk",
        "line_items": [{"price_data": {"currency": "eur", "unit_amount": 990, "product_data": {"name": "Pack"}},
                        "quantity": 2}],
    }, {"idempotency_key": "pr_sdk"})
    assert isinstance(session, stripe.checkout.Session) and session.amount_total == 1980
    assert client.v1.checkout.sessions.expire(session.id).status == "expired"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.expire(session.id)
    assert refused.value.http_status == 400


# -- keys, validation, idempotency, accounts ------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer sk_test_wrongwrongwrongwrong", "Basic Zm9v"])
async def test_bad_keys_are_401(stripe_emulator: StripeEmulator, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=stripe_emulator.base_url, headers=headers) as client:
        answer = await client.post("/v1/checkout/sessions", data=session_form())
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and "wrongwrongwrong" not in error["message"]
    assert stripe_emulator.sessions == {} and stripe_emulator.calls == {}


@pytest.mark.parametrize(("changes", "param"), [
    ({"mode": None}, "mode"),
    ({"success_url": None}, "success_url"),
    ({"success_url": "not a url"}, "success_url"),
    ({"line_items[0][price_data][unit_amount]": "0"}, "line_items[0][price_data][unit_amount]"),
    ({"line_items[0][price_data][unit_amount]": "25.00"}, "line_items[0][price_data][unit_amount]"),
    ({"line_items[0][price_data][currency]": "dollars"}, "line_items[0][price_data][currency]"),
    ({"line_items[0][price_data][product_data][name]": ""}, "line_items[0][price_data][product_data][name]"),
    ({"expires_at": 1700}, "expires_at"),  # seconds ahead: made absolute when the test runs
    ({"expires_at": 86400 + 120}, "expires_at"),
    ({"expires_at": "soon"}, "expires_at"),
    ({"payment_intent_data[setup_future_usage]": "sometimes"}, "payment_intent_data[setup_future_usage]"),
    ({"surprise": "1"}, "surprise"),
])
async def test_invalid_sessions_are_400_on_the_param(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                                                     changes: dict[str, Any], param: str) -> None:
    if isinstance(changes.get("expires_at"), int):
        changes = {"expires_at": str(int(time.time()) + changes["expires_at"])}
    answer = await api.post("/v1/checkout/sessions", data=session_form(**changes))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param) and error["message"]
    assert stripe_emulator.sessions == {}


async def test_missing_line_items_is_parameter_missing(api: httpx.AsyncClient) -> None:
    form = {k: v for k, v in session_form().items() if not k.startswith("line_items")}
    error = (await api.post("/v1/checkout/sessions", data=form)).json()["error"]
    assert (error["param"], error["code"]) == ("line_items", "parameter_missing")


async def test_idempotency_keys_replay_or_refuse(api: httpx.AsyncClient, stripe_emulator: StripeEmulator) -> None:
    key = {"Idempotency-Key": "pr_sandbox_1"}
    first = await api.post("/v1/checkout/sessions", data=session_form(), headers=key)
    again = await api.post("/v1/checkout/sessions", data=session_form(), headers=key)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = await api.post("/v1/checkout/sessions", data=session_form(**{"metadata[x]": "y"}), headers=key)
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    assert stripe_emulator.calls["create"] == 1 and len(stripe_emulator.sessions) == 1


async def test_failed_validation_does_not_use_up_the_key(api: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "pr_sandbox_2"}
    bad = await api.post("/v1/checkout/sessions", data=session_form(mode=None), headers=key)
    good = await api.post("/v1/checkout/sessions", data=session_form(), headers=key)
    assert (bad.status_code, good.status_code) == (400, 200)


async def test_accounts_are_separate(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                                     stripe_webhooks: Receiver) -> None:
    stripe_emulator.accounts.add("acct_1Shop")
    made = await api.post("/v1/checkout/sessions", data=session_form(), headers={"Stripe-Account": "acct_1Shop"})
    session = made.json()
    for headers in ({}, {"Stripe-Account": "acct_2Unknown"}):
        missing = await api.get(f"/v1/checkout/sessions/{session['id']}", headers=headers)
        assert missing.status_code == (404 if not headers else 403)
    missing = await api.post(f"/v1/checkout/sessions/{session['id']}/expire")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
    expired = await api.post(f"/v1/checkout/sessions/{session['id']}/expire", headers={"Stripe-Account": "acct_1Shop"})
    assert expired.json()["status"] == "expired"
    await stripe_webhooks.wait_for(1)  # events about API calls go out after the answer, as Stripe's do
    [(_, body)] = stripe_webhooks.received
    assert json.loads(body)["account"] == "acct_1Shop"


async def test_down_answers_503_and_changes_nothing(api: httpx.AsyncClient, stripe_emulator: StripeEmulator) -> None:
    session = await create(api)
    stripe_emulator.down = True
    assert (await api.post("/v1/checkout/sessions", data=session_form())).status_code == 503
    answer = await api.post(f"/v1/checkout/sessions/{session['id']}/expire")
    assert answer.status_code == 503 and answer.json()["error"]["type"] == "api_error"
    assert len(stripe_emulator.sessions) == 1 and stripe_emulator.sessions[session["id"]]["status"] == "open"


async def test_expire_works_on_open_sessions_only(api: httpx.AsyncClient, stripe_emulator: StripeEmulator) -> None:
    session = await create(api)
    await stripe_emulator.pay(session["url"], "paid")
    refused = await api.post(f"/v1/checkout/sessions/{session['id']}/expire")
    assert refused.status_code == 400 and "complete" in refused.json()["error"]["message"]
    assert stripe_emulator.calls["close"] == 0


# -- the hosted page ------------------------------------------------------------------------------

async def test_paying_by_card(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                              stripe_webhooks: Receiver) -> None:
    session = await create(api)
    async with httpx.AsyncClient() as browser:
        page = (await browser.get(session["url"])).text
    assert '<span class="amount" id="amount">US$25.00</span>' in page and ">Pay US$25.00<" in page
    assert '<span class="product" id="description">10 GB storage pack</span>' in page
    landed = await stripe_emulator.pay(session["url"], "paid")
    assert landed == f"https://shop.example/done?cs={session['id']}"
    paid = (await api.get(f"/v1/checkout/sessions/{session['id']}", params={"expand[]": "payment_intent"})).json()
    assert (paid["status"], paid["payment_status"], paid["payment_intent"]["status"]) == ("complete", "paid",
                                                                                          "succeeded")
    [(headers, body)] = stripe_webhooks.received
    event = stripe.Webhook.construct_event(body, headers["stripe-signature"], stripe_emulator.webhook_secret)
    assert event.type == "checkout.session.completed" and event.data.object["payment_status"] == "paid"
    assert "account" not in json.loads(body) and stripe_emulator.webhooks_sent == [(event.id, 200)]
    with pytest.raises(CheckoutError, match="complete"):
        await stripe_emulator.pay(session["url"], "paid")
    async with httpx.AsyncClient() as browser:
        again = await browser.post(session["url"], data={"action": "pay"})
    assert again.status_code == 400 and len(stripe_webhooks.received) == 1


@pytest.mark.parametrize(("minor", "currency", "shown"), [
    (1200, "usd", "US$12.00"), (99, "eur", "€0.99"), (123456, "cny", "CN¥1,234.56"), (300, "jpy", "¥300"),
    (25000, "omr", "OMR\u00a025.000"), (1250, "chf", "CHF\u00a012.50"), (1200, "xof", "F\u00a0CFA\u00a01,200"),
])
def test_the_page_writes_amounts_as_checkout_does(minor: int, currency: str, shown: str) -> None:
    assert checkout_amount(minor, currency) == shown


async def test_decline_and_cancel_keep_it_open(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                                               stripe_webhooks: Receiver) -> None:
    session = await create(api)
    async with httpx.AsyncClient() as browser:
        declined = await browser.post(session["url"], data={"action": "decline"})
    assert declined.status_code == 200 and "Your card was declined" in declined.text
    assert await stripe_emulator.pay(session["url"], "cancel") == "https://shop.example/cancel"
    assert stripe_emulator.sessions[session["id"]]["status"] == "open" and stripe_webhooks.received == []


async def test_bank_transfer_settles_later(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                                           stripe_webhooks: Receiver) -> None:
    session = await create(api)
    await stripe_emulator.pay(session["url"], "processing")
    pending = stripe_emulator.sessions[session["id"]]
    assert (pending["status"], pending["payment_status"]) == ("complete", "unpaid")
    await stripe_emulator.settle("pr_sandbox_1", "failed")
    with pytest.raises(CheckoutError):
        await stripe_emulator.settle("pr_sandbox_1", "paid")  # nothing left in flight
    types = [json.loads(body)["type"] for _, body in stripe_webhooks.received]
    assert types == ["checkout.session.completed", "checkout.session.async_payment_failed"]
    fetched = (await api.get(f"/v1/checkout/sessions/{session['id']}", params={"expand[0]": "payment_intent"})).json()
    assert fetched["payment_status"] == "unpaid" and fetched["payment_intent"]["status"] == "requires_payment_method"


async def test_sessions_expire_when_touched_after_expires_at(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                                                             stripe_webhooks: Receiver) -> None:
    session = await create(api)
    stripe_emulator.advance(3601)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(session["url"])
    assert "expired" in page.text and 'value="pay"' not in page.text
    assert (await api.get(f"/v1/checkout/sessions/{session['id']}")).json()["status"] == "expired"
    await stripe_webhooks.wait_for(1)
    assert [json.loads(body)["type"] for _, body in stripe_webhooks.received] == ["checkout.session.expired"]


async def test_webhook_failures_are_recorded(api: httpx.AsyncClient, stripe_emulator: StripeEmulator,
                                             stripe_webhooks: Receiver) -> None:
    stripe_webhooks.status = 500
    first = await create(api)
    await stripe_emulator.pay(first["url"], "paid")
    stripe_emulator.bind(stripe_emulator.base_url, "http://127.0.0.1:9/nobody")
    second = await create(api, client_reference_id="pr_sandbox_2")
    await stripe_emulator.pay(second["url"], "paid")
    assert [code for _, code in stripe_emulator.webhooks_sent] == [500, None]
    assert [e["type"] for e in stripe_emulator.events] == ["checkout.session.completed"] * 2


# -- customers and off-session PaymentIntents -----------------------------------------------------

async def test_saved_method_is_charged_off_session(api: httpx.AsyncClient, stripe_emulator: StripeEmulator) -> None:
    session = await create(api, **{"payment_intent_data[setup_future_usage]": "off_session",
                                   "customer_creation": "always"})
    await stripe_emulator.pay(session["url"], "paid")
    [customer] = (await api.get("/v1/customers", params={"email": "buyer@example.com"})).json()["data"]
    assert (await api.get("/v1/customers", params={"email": "other@example.com"})).json()["data"] == []
    [method] = (await api.get(f"/v1/customers/{customer['id']}/payment_methods")).json()["data"]
    charge = {"amount": "700", "currency": "usd", "customer": customer["id"], "payment_method": method["id"],
              "off_session": "true", "confirm": "true"}
    intent = (await api.post("/v1/payment_intents", data=charge, headers={"Idempotency-Key": "k1"})).json()
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 700)
    stripe_emulator.off_session_decline = "authentication_required"
    declined = await api.post("/v1/payment_intents", data=charge, headers={"Idempotency-Key": "k2"})
    assert declined.status_code == 402
    error = declined.json()["error"]
    assert (error["type"], error["code"]) == ("card_error", "authentication_required")
    assert error["payment_intent"]["status"] == "requires_payment_method"
    replay = await api.post("/v1/payment_intents", data=charge, headers={"Idempotency-Key": "k2"})
    assert replay.status_code == 402 and replay.json() == declined.json()
    assert stripe_emulator.calls["charge"] == 2


async def test_off_session_needs_the_customers_own_method(api: httpx.AsyncClient,
                                                           stripe_emulator: StripeEmulator) -> None:
    session = await create(api)  # no setup_future_usage: nothing is saved
    await stripe_emulator.pay(session["url"], "paid")
    customer = (await api.post("/v1/customers", data={"email": "buyer@example.com"})).json()
    intent = stripe_emulator.sessions[session["id"]]["payment_intent"]
    method = stripe_emulator.payment_intents[intent]["payment_method"]
    assert (await api.get(f"/v1/customers/{customer['id']}/payment_methods")).json()["data"] == []
    answer = await api.post("/v1/payment_intents", data={
        "amount": "700", "currency": "usd", "customer": customer["id"], "payment_method": method,
        "off_session": "true", "confirm": "true"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "payment_method"
