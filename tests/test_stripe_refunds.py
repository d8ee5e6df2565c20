"""Stripe refunds: StripeAdapter.refund / query_refund and refund webhooks against the emulator over
real HTTP through the official SDK, and the emulator's refund endpoints on the wire."""

from __future__ import annotations

import dataclasses
import json
import secrets
import string
import time
import types
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from adapters.base import Money, PaymentRef, RefundLimits, RefundRequest, RefundState, RefundStatus, map_state
from adapters.errors import GatewayProtocolError, GatewayRefused, GatewayUnavailable, WebhookSignatureError
from adapters.stripe import transformers as tx
from adapters.stripe.adapter import StripeAdapter
from adapters.transport import AiohttpTransport, Response, Transport
from sandbox.stripe import StripeEmulator
from tests.fixtures_stripe import PUBLIC_URL, MakeAdapter, Receiver, stripe_config
from tests.test_stripe_adapter import opened, request


def refund_no() -> str:
    return "rf_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(26))


async def paid(adapter: StripeAdapter, emulator: StripeEmulator, **changes: Any) -> PaymentRef:
    _, ref, url = await opened(adapter, **changes)
    await emulator.pay(url, "paid")
    return ref


def refund_of(ref: PaymentRef, minor: int | None = None, number: str | None = None,
              reason: str | None = None) -> RefundRequest:
    amount = ref.amount if minor is None else Money(minor, ref.amount.currency)
    return RefundRequest(number or refund_no(), ref, amount, reason)


def intent_of(emulator: StripeEmulator, ref: PaymentRef) -> str:
    return str(emulator.sessions[ref.gateway_reference or ""]["payment_intent"])


async def refund_events(adapter: StripeAdapter, receiver: Receiver) -> list[RefundState]:
    parsed = [await adapter.parse_webhook(headers, body) for headers, body in receiver.received]
    return [event.refund for event in parsed if event is not None and event.refund is not None]


# -- refund and query -----------------------------------------------------------------------------

async def test_full_refund_succeeds_on_the_sessions_payment_intent(stripe_adapter: StripeAdapter,
                                                                   stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    req = refund_of(ref)
    state = await stripe_adapter.refund(req)
    assert (state.refund_no, state.status, state.gateway_state) == (req.refund_no, RefundStatus.SUCCEEDED, "succeeded")
    assert state.amount == Money(2500, "USD") and state.payment_id == ref.payment_id
    assert state.gateway_reference and state.gateway_reference.startswith("re_")
    refund = stripe_emulator.refunds[state.gateway_reference]
    assert refund["payment_intent"] == intent_of(stripe_emulator, ref)
    assert refund["metadata"] == {"refund_no": req.refund_no, "paymentId": ref.payment_id}
    assert await stripe_adapter.query_refund(req) == state


async def test_partial_refunds_until_nothing_remains(stripe_adapter: StripeAdapter,
                                                     stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    first, second, third = refund_of(ref, 1000), refund_of(ref, 1000), refund_of(ref, 500)
    for req in (first, second, third):
        state = await stripe_adapter.refund(req)
        assert (state.status, state.amount) == (RefundStatus.SUCCEEDED, req.amount)
    assert stripe_emulator.refunded(intent_of(stripe_emulator, ref)) == 2500
    for req in (first, second, third):  # each found again by its own refund_no
        found = await stripe_adapter.query_refund(req)
        assert found is not None and (found.refund_no, found.amount) == (req.refund_no, req.amount)
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.refund(refund_of(ref, 1))
    assert refused.value.code == "charge_already_refunded" and not refused.value.retryable


async def test_over_refund_is_refused_with_stripes_code(stripe_adapter: StripeAdapter,
                                                        stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    await stripe_adapter.refund(refund_of(ref, 2000))
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.refund(refund_of(ref, 501))
    assert (refused.value.code, refused.value.param) == ("amount_too_large", "amount")
    assert "greater than unrefunded amount on charge (5.00 USD)" in refused.value.message
    assert len(stripe_emulator.refunds) == 1


async def test_same_refund_no_twice_is_one_refund(stripe_adapter: StripeAdapter,
                                                  stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    req = refund_of(ref, 700)
    first = await stripe_adapter.refund(req)
    assert await stripe_adapter.refund(req) == first
    assert len(stripe_emulator.refunds) == 1 and stripe_emulator.calls["refund"] == 1


async def test_same_refund_no_with_another_amount_is_refused(stripe_adapter: StripeAdapter,
                                                             stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    req = refund_of(ref, 700)
    await stripe_adapter.refund(req)
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.refund(dataclasses.replace(req, amount=Money(800, "USD")))
    assert refused.value.code == "idempotency_error" and "7.00 USD" in refused.value.message
    assert len(stripe_emulator.refunds) == 1


async def test_the_idempotency_key_alone_refuses_another_amount(stripe_emulator: StripeEmulator,
                                                                stripe_adapter: StripeAdapter) -> None:
    """Two sends of one refund_no racing (neither finds the other listed): Stripe's key decides."""
    ref = await paid(stripe_adapter, stripe_emulator)
    intent = intent_of(stripe_emulator, ref)
    number = refund_no()
    async with httpx.AsyncClient(base_url=stripe_emulator.base_url, headers={
            "Authorization": f"Bearer {stripe_emulator.secret_key}", "Idempotency-Key": number}) as api:
        first = await api.post("/v1/refunds", data={"payment_intent": intent, "amount": "700"})
        again = await api.post("/v1/refunds", data={"payment_intent": intent, "amount": "700"})
        other = await api.post("/v1/refunds", data={"payment_intent": intent, "amount": "800"})
    assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    assert len(stripe_emulator.refunds) == 1


async def test_query_of_an_unknown_refund_no_is_none(stripe_adapter: StripeAdapter,
                                                     stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    await stripe_adapter.refund(refund_of(ref, 100))
    assert await stripe_adapter.query_refund(refund_of(ref, 100)) is None
    _, unpaid, _ = await opened(stripe_adapter)  # no PaymentIntent yet: no refund either
    assert await stripe_adapter.query_refund(refund_of(unpaid)) is None


async def test_query_pages_through_many_refunds(stripe_adapter: StripeAdapter,
                                                stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator, amount=Money(50000, "USD"))
    oldest = refund_of(ref, 1)
    await stripe_adapter.refund(oldest)
    for _ in range(tx.LIST_LIMIT + 1):
        await stripe_adapter.refund(refund_of(ref, 1))
    before = stripe_emulator.calls["refunds"]
    found = await stripe_adapter.query_refund(oldest)
    assert found is not None and found.refund_no == oldest.refund_no
    assert stripe_emulator.calls["refunds"] - before == 2  # the second page holds the oldest


async def test_query_does_not_rely_on_the_idempotency_key(stripe_adapter: StripeAdapter,
                                                          stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    req = refund_of(ref, 900)
    made = await stripe_adapter.refund(req)
    stripe_emulator.advance(25 * 3600)  # Stripe has forgotten the key
    assert await stripe_adapter.query_refund(req) == made
    assert await stripe_adapter.refund(req) == made  # found by metadata: not refunded twice
    assert len(stripe_emulator.refunds) == 1


async def test_off_session_payment_is_refunded_on_its_payment_intent(stripe_adapter: StripeAdapter,
                                                                     stripe_emulator: StripeEmulator) -> None:
    _, _, url = await opened(stripe_adapter, customer="saver@example.com", save_method=True)
    await stripe_emulator.pay(url, "paid")
    charge = request(customer="saver@example.com", online=False, amount=Money(1200, "EUR"))
    created = await stripe_adapter.create(charge)
    ref = PaymentRef(charge.payment_id, created.gateway_reference, charge.amount)
    sessions_read = stripe_emulator.calls["query"]
    state = await stripe_adapter.refund(refund_of(ref, 200))
    assert (state.status, state.amount) == (RefundStatus.SUCCEEDED, Money(200, "EUR"))
    assert stripe_emulator.refunds[state.gateway_reference or ""]["payment_intent"] == created.gateway_reference
    assert stripe_emulator.calls["query"] == sessions_read  # a pi_… reference needs no session


@pytest.mark.parametrize("outcome", ["waiting", "processing"])
async def test_refunding_an_unpaid_payment_is_refused(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                      outcome: str) -> None:
    _, ref, url = await opened(stripe_adapter)
    if outcome == "processing":  # a bank transfer in flight: a PaymentIntent, but no successful charge
        await stripe_emulator.pay(url, "processing")
    with pytest.raises(GatewayRefused) as refused:
        await stripe_adapter.refund(refund_of(ref))
    if outcome == "processing":
        assert refused.value.param == "payment_intent"
        assert "does not have a successful charge to refund" in refused.value.message
    else:
        assert refused.value.code == "no_payment_intent"
    assert stripe_emulator.refunds == {}


@pytest.mark.parametrize(("reason", "sent", "in_metadata"), [
    ("requested_by_customer", "requested_by_customer", None),
    ("duplicate", "duplicate", None),
    ("Kunde hat storniert — 顧客都合", None, "Kunde hat storniert — 顧客都合"),
    (None, None, None),
])
async def test_reason_is_stripes_enum_or_metadata(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                  reason: str | None, sent: str | None,
                                                  in_metadata: str | None) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    state = await stripe_adapter.refund(refund_of(ref, 100, reason=reason))
    refund = stripe_emulator.refunds[state.gateway_reference or ""]
    assert refund["reason"] == sent and refund["metadata"].get("reason") == in_metadata


# -- outcomes that are not known at once --------------------------------------------------------

class Hasty(Transport):
    """The adapter's transport with every request's deadline cut to ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.inner, self.seconds = AiohttpTransport(), seconds

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float) -> Response:
        return await self.inner.request(method, url, headers=headers, content=content,
                                        timeout=min(timeout, self.seconds))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_timeout_after_the_refund_then_query_finds_it_succeeded(stripe_emulator: StripeEmulator,
                                                                       stripe_adapter: StripeAdapter) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    hasty = StripeAdapter(stripe_config(stripe_emulator), PUBLIC_URL, Hasty(0.3))
    try:
        stripe_emulator.refund_answer_delay = 1.5
        req = refund_of(ref, 1200)
        with pytest.raises(GatewayUnavailable) as unavailable:
            await hasty.refund(req)
        assert unavailable.value.retryable and unavailable.value.outcome_unknown
        stripe_emulator.refund_answer_delay = 0
        found = await hasty.query_refund(req)
        assert found is not None and (found.status, found.amount) == (RefundStatus.SUCCEEDED, Money(1200, "USD"))
        assert len(stripe_emulator.refunds) == 1
    finally:
        await hasty.aclose()


async def test_refund_outage_is_unavailable_and_refunds_nothing(stripe_adapter: StripeAdapter,
                                                                stripe_emulator: StripeEmulator) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    stripe_emulator.refunds_down = True
    req = refund_of(ref)
    with pytest.raises(GatewayUnavailable):
        await stripe_adapter.refund(req)
    assert stripe_emulator.refunds == {}
    stripe_emulator.refunds_down = False
    assert (await stripe_adapter.refund(req)).status is RefundStatus.SUCCEEDED  # the same refund_no, now made


@pytest.mark.parametrize(("outcome", "final"), [("succeed_later", RefundStatus.SUCCEEDED),
                                                ("fail_later", RefundStatus.FAILED)])
async def test_refund_settled_later_arrives_by_verified_webhook(
    stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator, stripe_webhooks: Receiver,
    outcome: Any, final: RefundStatus,
) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    await stripe_webhooks.wait_for(1)
    stripe_emulator.refund_outcome = outcome
    req = refund_of(ref, 1500)
    state = await stripe_adapter.refund(req)
    assert (state.status, state.gateway_state) == (RefundStatus.PROCESSING, "pending")
    assert (await stripe_adapter.query_refund(req)) == state
    await stripe_webhooks.wait_for(3)  # refund.created, charge.refunded
    await stripe_emulator.settle_refund(req.refund_no, "succeeded" if final is RefundStatus.SUCCEEDED else "failed")
    events = await refund_events(stripe_adapter, stripe_webhooks)
    assert events[0].status is RefundStatus.PROCESSING
    assert {e.status for e in events[1:]} == {final}
    last = events[-1]
    assert (last.refund_no, last.payment_id, last.gateway_reference, last.amount) == (
        req.refund_no, ref.payment_id, state.gateway_reference, Money(1500, "USD"))
    assert (last.failure_reason is None) is (final is RefundStatus.SUCCEEDED)
    queried = await stripe_adapter.query_refund(req)
    assert queried is not None and queried.status is final
    if final is RefundStatus.FAILED:  # a failed refund holds nothing: the amount can be refunded again
        assert (await stripe_adapter.refund(refund_of(ref))).amount == Money(2500, "USD")


async def test_succeeded_refund_that_fails_later(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                 stripe_webhooks: Receiver) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    stripe_emulator.refund_outcome = "fail_after_success"
    req = refund_of(ref)
    assert (await stripe_adapter.refund(req)).status is RefundStatus.SUCCEEDED
    await stripe_webhooks.wait_for(3)
    stripe_webhooks.received.clear()
    await stripe_emulator.settle_refund(req.refund_no, "failed", "lost_or_stolen_card")
    # the refund's first events may still be going out beside these: in any order (Stripe does
    # not promise one either)
    await stripe_webhooks.wait_for(2)
    kinds = [json.loads(body)["type"] for _, body in stripe_webhooks.received]
    assert sorted(kinds) == ["refund.failed", "refund.updated"]
    for event in await refund_events(stripe_adapter, stripe_webhooks):
        assert (event.status, event.gateway_state) == (RefundStatus.FAILED, "failed")
        assert event.failure_reason and event.failure_reason.startswith("lost_or_stolen_card: ")
    with pytest.raises(ValueError, match="cannot become"):
        await stripe_emulator.settle_refund(req.refund_no, "succeeded")


async def test_charge_refunded_and_foreign_refunds_are_none(stripe_adapter: StripeAdapter,
                                                            stripe_emulator: StripeEmulator,
                                                            stripe_webhooks: Receiver) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    state = await stripe_adapter.refund(refund_of(ref, 100))
    await stripe_webhooks.wait_for(3)
    [(headers, body)] = [(h, b) for h, b in stripe_webhooks.received if json.loads(b)["type"] == "charge.refunded"]
    assert json.loads(body)["data"]["object"]["amount_refunded"] == 100
    assert await stripe_adapter.parse_webhook(headers, body) is None
    # a refund made in the Dashboard carries none of payrelay's metadata: not ours
    body, headers = stripe_emulator.signed_event("refund.updated", state.gateway_reference or "",
                                                 overrides={"metadata": {}})
    assert await stripe_adapter.parse_webhook(headers, body) is None


@pytest.mark.parametrize("event_type", sorted(tx.REFUND_EVENT_TYPES))
async def test_every_refund_event_type_carries_the_refund(stripe_adapter: StripeAdapter,
                                                          stripe_emulator: StripeEmulator, event_type: str) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    req = refund_of(ref, 300)
    await stripe_adapter.refund(req)
    body, headers = stripe_emulator.signed_event(event_type, req.refund_no)
    event = await stripe_adapter.parse_webhook(headers, body)
    assert event is not None and event.state is None and event.event_id == json.loads(body)["id"]
    assert event.refund == await stripe_adapter.query_refund(req)


@pytest.mark.parametrize("forgery", ["wrong_secret", "tampered", "stale"])
async def test_forged_refund_webhooks_are_refused(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                                  forgery: str) -> None:
    ref = await paid(stripe_adapter, stripe_emulator)
    stripe_emulator.refund_outcome = "succeed_later"
    req = refund_of(ref)
    await stripe_adapter.refund(req)
    kwargs: dict[str, Any] = {"wrong_secret": {"secret": "whsec_not_the_one"},
                              "stale": {"timestamp": int(time.time()) - 301}}.get(forgery, {})
    body, headers = stripe_emulator.signed_event("refund.failed", req.refund_no, **kwargs)
    if forgery == "tampered":
        body = body.replace(b'"status": "pending"', b'"status": "failed"')
    with pytest.raises(WebhookSignatureError):
        await stripe_adapter.parse_webhook(headers, body)


async def test_another_accounts_refund_events_are_none(make_stripe_adapter: MakeAdapter,
                                                       stripe_emulator: StripeEmulator) -> None:
    stripe_emulator.accounts |= {"acct_1Shop"}
    shop = make_stripe_adapter(connect_account="acct_1Shop")
    ref = await paid(shop, stripe_emulator)
    req = refund_of(ref, 100)
    await shop.refund(req)
    body, headers = stripe_emulator.signed_event("refund.updated", req.refund_no)
    assert json.loads(body)["account"] == "acct_1Shop"
    assert await shop.parse_webhook(headers, body) is not None
    assert await make_stripe_adapter().parse_webhook(headers, body) is None
    with pytest.raises(GatewayRefused) as refused:  # the platform cannot see the shop's payment
        await make_stripe_adapter().query_refund(req)
    assert refused.value.code == "resource_missing"


# -- the table and the limits -------------------------------------------------------------------

def test_refund_table_covers_stripes_documented_states_and_refuses_others() -> None:
    assert isinstance(tx.REFUND_STATES, types.MappingProxyType)
    assert set(tx.REFUND_STATES) == {"pending", "requires_action", "succeeded", "failed", "canceled"}
    assert {state: map_state(tx.REFUND_STATES, state, "Stripe", "refund status") for state in tx.REFUND_STATES} == {
        "pending": RefundStatus.PROCESSING, "requires_action": RefundStatus.PROCESSING,
        "succeeded": RefundStatus.SUCCEEDED, "failed": RefundStatus.FAILED, "canceled": RefundStatus.FAILED}
    with pytest.raises(TypeError):
        tx.REFUND_STATES["new"] = RefundStatus.PROCESSING  # type: ignore[index]
    with pytest.raises(GatewayProtocolError, match="unknown refund status 'reversed'"):
        map_state(tx.REFUND_STATES, "reversed", "Stripe", "refund status")
    refund = {"id": "re_1", "object": "refund", "status": "reversed", "amount": 1, "currency": "usd",
              "metadata": {"refund_no": "rf_1", "paymentId": "pr_1"}}
    with pytest.raises(GatewayProtocolError):
        tx.refund_state(refund)


def test_canceled_refund_is_failed_with_a_reason() -> None:
    refund = {"id": "re_1", "object": "refund", "status": "canceled", "amount": 250, "currency": "usd",
              "metadata": {"refund_no": "rf_1", "paymentId": "pr_1"}}
    state = tx.refund_state(refund)
    assert (state.status, state.amount, state.payment_id) == (RefundStatus.FAILED, Money(250, "USD"), "pr_1")
    assert state.failure_reason and state.failure_reason.startswith("canceled: ")


def test_refund_limits_are_data() -> None:
    assert StripeAdapter.refund_limits == RefundLimits(window_days=None, minimum_minor=1, partial=True,
                                                       max_per_payment=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        StripeAdapter.refund_limits.partial = False  # type: ignore[misc]


# -- the emulator on the wire -------------------------------------------------------------------

async def paid_intent(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator) -> str:
    return intent_of(stripe_emulator, await paid(stripe_adapter, stripe_emulator))


@pytest.fixture
async def api(stripe_emulator: StripeEmulator) -> Any:
    async with httpx.AsyncClient(base_url=stripe_emulator.base_url,
                                 headers={"Authorization": f"Bearer {stripe_emulator.secret_key}"}) as client:
        yield client


async def test_emulator_answers_stripes_refund_errors(api: httpx.AsyncClient, stripe_adapter: StripeAdapter,
                                                      stripe_emulator: StripeEmulator) -> None:
    intent = await paid_intent(stripe_adapter, stripe_emulator)
    cases = [
        ({"amount": "2600"}, "amount", "amount_too_large"),
        ({"amount": "0"}, "amount", "parameter_invalid_integer"),
        ({"reason": "changed_my_mind"}, "reason", None),
        ({"colour": "red"}, "colour", "parameter_unknown"),
    ]
    for extra, param, code in cases:
        answer = await api.post("/v1/refunds", data={"payment_intent": intent, **extra})
        error = answer.json()["error"]
        assert (answer.status_code, error["type"], error.get("param"), error.get("code")) == (
            400, "invalid_request_error", param, code), error
    missing = await api.post("/v1/refunds", data={"payment_intent": "pi_nobody"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "resource_missing")
    whole = await api.post("/v1/refunds", data={"payment_intent": intent})  # amount: what remains
    assert whole.status_code == 200 and whole.json()["amount"] == 2500
    again = await api.post("/v1/refunds", data={"payment_intent": intent})
    assert again.json()["error"]["code"] == "charge_already_refunded"
    assert len(stripe_emulator.refunds) == 1


async def test_emulator_lists_refunds_newest_first_in_pages(api: httpx.AsyncClient, stripe_adapter: StripeAdapter,
                                                            stripe_emulator: StripeEmulator) -> None:
    intent = await paid_intent(stripe_adapter, stripe_emulator)
    made = [(await api.post("/v1/refunds", data={"payment_intent": intent, "amount": "100"})).json()["id"]
            for _ in range(3)]
    first = (await api.get("/v1/refunds", params={"payment_intent": intent, "limit": "2"})).json()
    assert (first["object"], [r["id"] for r in first["data"]], first["has_more"]) == ("list", made[:0:-1], True)
    rest = (await api.get("/v1/refunds", params={"payment_intent": intent, "starting_after": made[1]})).json()
    assert ([r["id"] for r in rest["data"]], rest["has_more"]) == ([made[0]], False)
    one = await api.get(f"/v1/refunds/{made[0]}")
    assert one.json()["id"] == made[0] and one.json()["object"] == "refund"


async def test_idempotency_keys_expire_after_24_hours(api: httpx.AsyncClient, stripe_adapter: StripeAdapter,
                                                      stripe_emulator: StripeEmulator) -> None:
    intent = await paid_intent(stripe_adapter, stripe_emulator)
    form, key = {"payment_intent": intent, "amount": "100"}, {"Idempotency-Key": "rf_same"}
    first = (await api.post("/v1/refunds", data=form, headers=key)).json()
    stripe_emulator.advance(23 * 3600)
    assert (await api.post("/v1/refunds", data=form, headers=key)).json()["id"] == first["id"]
    stripe_emulator.advance(3600)
    assert (await api.post("/v1/refunds", data=form, headers=key)).json()["id"] != first["id"]
    assert len(stripe_emulator.refunds) == 2


async def test_the_hosted_page_settles_refunds(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                               stripe_webhooks: Receiver) -> None:
    _, ref, url = await opened(stripe_adapter)
    await stripe_emulator.pay(url, "paid")
    async with httpx.AsyncClient() as http:
        chosen = await http.post(url, data={"action": "refund_outcome", "outcome": "fail_later"})
        assert chosen.status_code == 200 and stripe_emulator.refund_outcome == "fail_later"
        state = await stripe_adapter.refund(refund_of(ref, 400))
        page = (await http.get(url)).text
        assert f'value="{state.gateway_reference}"' in page and "fails" in page
        failed = await http.post(url, data={"action": "refund_failed", "refund": state.gateway_reference or ""})
        assert failed.status_code == 200
        unknown = await http.post(url, data={"action": "refund_succeeded", "refund": "re_nobody"})
        assert unknown.status_code == 400
    assert stripe_emulator.refunds[state.gateway_reference or ""]["status"] == "failed"
    await stripe_webhooks.wait_for(5)  # completed, refund.created, charge.refunded, refund.updated, refund.failed
    assert [e.status for e in await refund_events(stripe_adapter, stripe_webhooks)][-1] is RefundStatus.FAILED
