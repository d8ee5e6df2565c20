"""Gateway evidence is applied only when it is about the gateway object payrelay stored for the
payment (Stripe session, Alipay trade_no, WeChat transaction_id) and about our own merchant and
app: otherwise it is acknowledged (the gateway stops resending it), changes nothing — not even the
integrity flag —, and is counted. Through payrelay over real HTTP with genuinely signed events."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Relay, StartRelay
from tests.helpers import create, order, status_of


async def metric(relay: Relay, line: str) -> bool:
    async with relay.client() as client:
        return line in (await client.get("/metrics")).text


async def paid(relay: Relay, emulator: Any) -> dict[str, Any]:
    created = await create(relay, order(emulator))
    await emulator.pay(created["paymentUrl"])
    payment = await status_of(relay, created["paymentId"])
    assert payment["status"] == "succeeded" and payment["gatewayReference"]
    return payment


async def test_stripe_event_for_another_session_naming_this_payment_changes_nothing(
        start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator)
    a = await status_of(relay, (await create(relay, order(stripe_emulator)))["paymentId"])
    b = await status_of(relay, (await create(relay, order(stripe_emulator)))["paymentId"])
    body, headers = stripe_emulator.signed_event(
        "checkout.session.completed", a["gatewayReference"],
        overrides={"client_reference_id": b["paymentId"], "payment_status": "paid", "amount_total": 1})
    assert await stripe_emulator.deliver(body, headers) == 200
    after = await status_of(relay, b["paymentId"])
    assert (after["status"], after["version"], after["gatewayReference"], after["integrityError"]) == (
        "waiting", 0, b["gatewayReference"], False)
    assert await metric(relay, 'payrelay_webhooks_total{gateway="stripe-connect",outcome="mismatch"} 1.0')


async def test_alipay_notification_with_another_trade_no_changes_nothing(
        start_relay: StartRelay, alipay_emulator: Any) -> None:
    relay = start_relay(alipay_emulator)
    payment = await paid(relay, alipay_emulator)
    form = alipay_emulator.signed_notification(payment["paymentId"], "TRADE_CLOSED",
                                               trade_no="2026112122001499999999999999", total_amount="1.00")
    assert await alipay_emulator.notify(form) == 200
    after = await status_of(relay, payment["paymentId"])
    assert (after["version"], after["gatewayReference"], after["integrityError"]) == (
        payment["version"], payment["gatewayReference"], False)


@pytest.mark.parametrize("field", ["app_id", "seller_id"])
async def test_alipay_notification_for_another_app_or_seller_is_acknowledged_and_changes_nothing(
        start_relay: StartRelay, alipay_emulator: Any, field: str) -> None:
    relay = start_relay(alipay_emulator)
    created = await create(relay, order(alipay_emulator))
    await alipay_emulator.pay(created["paymentUrl"], "cancel")  # the cashier opened: the trade exists
    form = alipay_emulator.signed_notification(created["paymentId"], "TRADE_SUCCESS",
                                               **{field: "2088000000000001"})
    assert await alipay_emulator.notify(form) == 200  # "success": Alipay stops resending it
    after = await status_of(relay, created["paymentId"])
    assert (after["status"], after["version"]) == ("waiting", 0)
    assert await metric(relay, 'payrelay_webhooks_total{gateway="alipay-page",outcome="mismatch"} 1.0')


async def test_wechat_callback_with_another_transaction_id_changes_nothing(
        start_relay: StartRelay, wechat_emulator: Any) -> None:
    relay = start_relay(wechat_emulator)
    payment = await paid(relay, wechat_emulator)
    body, headers = wechat_emulator.signed_callback(
        payment["paymentId"], "CLOSED",
        overrides={"transaction_id": "4200009999202611219999999999", "amount": {"total": 1, "currency": "CNY"}})
    assert await wechat_emulator.deliver(body, headers) in (200, 204)
    after = await status_of(relay, payment["paymentId"])
    assert (after["version"], after["gatewayReference"], after["integrityError"]) == (
        payment["version"], payment["gatewayReference"], False)


async def test_wechat_callback_for_another_merchant_is_acknowledged_and_changes_nothing(
        start_relay: StartRelay, wechat_emulator: Any) -> None:
    relay = start_relay(wechat_emulator)
    created = await create(relay, order(wechat_emulator))
    body, headers = wechat_emulator.signed_callback(created["paymentId"], overrides={"mchid": "1900000109"})
    assert await wechat_emulator.deliver(body, headers) in (200, 204)
    after = await status_of(relay, created["paymentId"])
    assert (after["status"], after["version"]) == ("waiting", 0)
    assert await metric(relay, 'payrelay_webhooks_total{gateway="wechat-pay-native",outcome="mismatch"} 1.0')
