"""WechatAdapter's refunds against the WeChat Pay emulator over real HTTP: the refund call, its query,
the refund notifications, the status table and the limits."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from adapters import errors
from adapters.base import Money, PaymentRef, RefundLimits, RefundRequest, RefundState, RefundStatus, Status, map_state
from adapters.transport import AiohttpTransport
from adapters.wechat import transformers as wx
from adapters.wechat.adapter import WechatAdapter
from sandbox.wechat import WechatEmulator
from tests.fixtures_wechat import CallbackReceiver, created, official_sdk, stranger_key, wechat_config


def refund_no() -> str:
    return "rf_" + secrets.token_hex(13)  # 29 characters, like payrelay's


async def paid(adapter: WechatAdapter, emulator: WechatEmulator, payment_id: str = "pr_00AbCdEfGhIjKlMnOpQrStUvWx"
               ) -> PaymentRef:
    request, code_url = await created(adapter, payment_id=payment_id)
    await emulator.pay(code_url)
    return PaymentRef(request.payment_id, None, request.amount)


def asking(payment: PaymentRef, minor: int | None = None, no: str | None = None, reason: str | None = None
           ) -> RefundRequest:
    amount = Money(payment.amount.minor if minor is None else minor, payment.amount.currency)
    return RefundRequest(no or refund_no(), payment, amount, reason)


@pytest.fixture(autouse=True)
async def _notifications_sent(wechat_emulator: WechatEmulator) -> AsyncIterator[None]:
    """A refund's notification goes after its answer: never into the next test's receiver."""
    yield
    await wechat_emulator.notified()


@pytest.fixture
async def payment(wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator) -> PaymentRef:
    return await paid(wechat_adapter, wechat_emulator)


# ---- the refund call ------------------------------------------------------------------------------


async def test_a_full_refund_succeeds_and_is_notified(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver,
    payment: PaymentRef,
) -> None:
    request = asking(payment)
    state = await wechat_adapter.refund(request)
    assert (state.refund_no, state.status) == (request.refund_no, RefundStatus.SUCCEEDED)
    assert state.gateway_state == "SUCCESS"
    assert state.amount == Money(2500, "CNY") and state.payment_id == payment.payment_id
    assert state.gateway_reference is not None and state.failure_reason is None
    assert wechat_emulator.refund_requests == [{
        "out_trade_no": payment.payment_id,
        "out_refund_no": request.refund_no,
        "notify_url": wechat_adapter.notify_url,  # the payments' webhook
        "amount": {"refund": 2500, "total": 2500, "currency": "CNY"},
    }]
    # the order is REFUND at WeChat now, which is still a paid payment
    assert (await wechat_adapter.query(payment)).status is Status.SUCCEEDED
    assert wechat_emulator.transaction(payment.payment_id)["trade_state"] == "REFUND"

    await wechat_emulator.notified()  # the refund's notification follows its answer
    assert len(wechat_receiver.received) == 2  # the payment's callback, then the refund's
    notice = wechat_receiver.received[1]
    event = await wechat_adapter.parse_webhook(notice.headers, notice.body)
    assert event is not None and event.state is None and event.event_id == json.loads(notice.body)["id"]
    assert event.refund == state


async def test_partial_refunds_until_nothing_is_left(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    states = [await wechat_adapter.refund(asking(payment, minor)) for minor in (1000, 1000, 499, 1)]
    assert [s.amount for s in states] == [Money(m, "CNY") for m in (1000, 1000, 499, 1)]
    assert {s.status for s in states} == {RefundStatus.SUCCEEDED}
    assert len({s.gateway_reference for s in states}) == 4
    with pytest.raises(errors.GatewayRefused) as refused:
        await wechat_adapter.refund(asking(payment, 1))
    assert refused.value.code == "INVALID_REQUEST" and "订单已全额退款" in refused.value.message
    assert "more than the order has left" in refused.value.message  # said so a person can act on it
    assert len(wechat_emulator.refunds) == 4


async def test_refunding_more_than_remains_is_refused_and_refunds_nothing(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    await wechat_adapter.refund(asking(payment, 2000))
    with pytest.raises(errors.GatewayRefused) as refused:
        await wechat_adapter.refund(asking(payment, 501))
    assert refused.value.code == "INVALID_REQUEST" and "剩余可退500分" in refused.value.message
    assert not refused.value.retryable and not refused.value.outcome_unknown
    assert [r.amount for r in wechat_emulator.refunds.values()] == [2000]
    assert (await wechat_adapter.refund(asking(payment, 500))).status is RefundStatus.SUCCEEDED


async def test_the_same_refund_no_twice_is_one_refund(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    request = asking(payment, 1200, reason="size did not fit")
    first = await wechat_adapter.refund(request)
    again = await wechat_adapter.refund(request)
    assert again == first
    assert wechat_emulator.calls["refund"] == 2 and list(wechat_emulator.refunds) == [request.refund_no]
    assert await wechat_adapter.query_refund(request) == first


async def test_the_same_refund_no_with_another_amount_is_refused(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    request = asking(payment, 1200)
    await wechat_adapter.refund(request)
    with pytest.raises(errors.GatewayRefused) as refused:
        await wechat_adapter.refund(dataclasses.replace(request, amount=Money(1300, "CNY")))
    assert refused.value.code == "INVALID_REQUEST"
    assert wechat_emulator.refunds[request.refund_no].amount == 1200


@pytest.mark.parametrize("state", ["unpaid", "closed", "unknown"])
async def test_only_a_paid_order_can_be_refunded(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, state: str
) -> None:
    request, _ = await created(wechat_adapter)
    ref = PaymentRef(request.payment_id if state != "unknown" else "pr_nothingHere", None, request.amount)
    if state == "closed":
        await wechat_adapter.close(ref)
    with pytest.raises(errors.GatewayRefused) as refused:
        await wechat_adapter.refund(asking(ref))
    assert refused.value.code == "RESOURCE_NOT_EXISTS" and "unpaid orders cannot be refunded" in refused.value.message
    assert wechat_emulator.refunds == {}


async def test_the_reason_is_cut_to_80_bytes_and_an_empty_one_left_out(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    await wechat_adapter.refund(asking(payment, 100, reason="退款" * 20 + "!"))  # 121 bytes
    await wechat_adapter.refund(asking(payment, 100, reason="  "))
    cut, empty = wechat_emulator.refund_requests
    assert cut["reason"] == "退款" * 13 and len(cut["reason"].encode()) == 78  # a 27th character would split
    assert "reason" not in empty


@pytest.mark.parametrize(("code", "error", "advice"), [
    ("NOT_ENOUGH", errors.GatewayRefused, "top it up"),
    ("USER_ACCOUNT_ABNORMAL", errors.GatewayRefused, "another channel"),
    ("NO_AUTH", errors.GatewayRefused, "no refund permission"),
    ("FREQUENCY_LIMITED", errors.GatewayUnavailable, ""),  # a 429: not clearly "not accepted"
    ("SYSTEM_ERROR", errors.GatewayUnavailable, ""),
])
async def test_the_gateways_refusals_keep_its_code(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef, code: str,
    error: type[Exception], advice: str,
) -> None:
    wechat_emulator.refund_error = code
    with pytest.raises(error) as raised:
        await wechat_adapter.refund(asking(payment))
    assert isinstance(raised.value, errors.GatewayRefused | errors.GatewayUnavailable)
    assert raised.value.code == code and advice in raised.value.message
    assert wechat_emulator.refunds == {}


async def test_an_outage_is_unknown_and_refunds_nothing(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    wechat_emulator.down = True
    request = asking(payment)
    with pytest.raises(errors.GatewayUnavailable) as raised:
        await wechat_adapter.refund(request)
    assert raised.value.retryable and raised.value.outcome_unknown
    wechat_emulator.down = False
    assert await wechat_adapter.query_refund(request) is None


async def test_a_timeout_after_the_refund_is_made_is_found_by_query(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver,
    payment: PaymentRef,
) -> None:
    hasty = WechatAdapter(wechat_config(wechat_emulator), wechat_receiver.url, AiohttpTransport(), timeout=0.3)
    wechat_emulator.refund_delay = 1.0
    request = asking(payment, 700)
    try:
        with pytest.raises(errors.GatewayUnavailable, match="timed out") as raised:
            await hasty.refund(request)
    finally:
        await hasty.aclose()
    assert raised.value.retryable and raised.value.outcome_unknown
    found = await wechat_adapter.query_refund(request)  # the refund was made all the same
    assert found is not None and (found.status, found.amount) == (RefundStatus.SUCCEEDED, Money(700, "CNY"))
    wechat_emulator.refund_delay = 0.0
    assert await wechat_adapter.refund(request) == found  # asked again under its id: nothing more
    assert len(wechat_emulator.refunds) == 1


async def test_the_query_of_an_unknown_refund_no_is_none(wechat_adapter: WechatAdapter, payment: PaymentRef) -> None:
    assert await wechat_adapter.query_refund(asking(payment)) is None


async def test_unsupported_and_unverified(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    with pytest.raises(errors.UnsupportedOperation):
        await wechat_adapter.refund(dataclasses.replace(asking(payment), amount=Money(100, "USD")))
    assert wechat_emulator.calls["refund"] == 0
    wechat_emulator.unsigned_responses = True
    with pytest.raises(errors.GatewayProtocolError) as raised:
        await wechat_adapter.refund(asking(payment))
    assert raised.value.outcome_unknown  # it answered, but nobody can tell what it did


# ---- refunds that end later, by notification ------------------------------------------------------


@pytest.mark.parametrize(("outcome", "status", "gateway_state", "event_type"), [
    ("succeed_later", RefundStatus.SUCCEEDED, "SUCCESS", "REFUND.SUCCESS"),
    ("abnormal_later", RefundStatus.FAILED, "ABNORMAL", "REFUND.ABNORMAL"),
    ("closed_later", RefundStatus.FAILED, "CLOSED", "REFUND.CLOSED"),
])
async def test_a_refund_in_flight_ends_by_a_verified_decrypted_notification(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver,
    payment: PaymentRef, outcome: str, status: RefundStatus, gateway_state: str, event_type: str,
) -> None:
    wechat_emulator.refund_outcome = outcome  # type: ignore[assignment]
    request = asking(payment, 900)
    started = await wechat_adapter.refund(request)
    assert (started.status, started.gateway_state) == (RefundStatus.PROCESSING, "PROCESSING")
    assert await wechat_adapter.query_refund(request) == started
    await wechat_emulator.notified()
    assert len(wechat_receiver.received) == 1  # the payment's only: nothing until it ends
    await wechat_emulator.settle_refund(request.refund_no)

    notice = wechat_receiver.received[1]
    envelope = json.loads(notice.body)
    assert envelope["event_type"] == event_type and envelope["resource"]["original_type"] == "refund"
    event = await wechat_adapter.parse_webhook(notice.headers, notice.body)
    assert event is not None and event.state is None
    assert event.refund == RefundState(
        refund_no=request.refund_no, status=status, gateway_state=gateway_state,
        gateway_reference=started.gateway_reference, amount=Money(900, "CNY"),
        failure_reason=wx.REFUND_FAILURES.get(gateway_state), payment_id=payment.payment_id,
    )
    assert await wechat_adapter.query_refund(request) == event.refund
    with pytest.raises(ValueError, match="not PROCESSING"):
        await wechat_emulator.settle_refund(request.refund_no)


async def test_an_abnormal_refund_tells_the_operator_what_to_do(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    wechat_emulator.refund_outcome = "succeed_later"
    request = asking(payment)
    await wechat_adapter.refund(request)
    await wechat_emulator.settle_refund(request.refund_no, "abnormal")  # overrides the plan
    state = await wechat_adapter.query_refund(request)
    assert state is not None and state.status is RefundStatus.FAILED and state.failure_reason is not None
    assert "another channel" in state.failure_reason and "merchant account" in state.failure_reason


async def test_the_official_sdk_accepts_the_emulators_refund_notification(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef
) -> None:
    request = asking(payment, 300)
    await wechat_adapter.refund(request)
    body, headers = wechat_emulator.signed_refund_callback(request.refund_no)
    notice = official_sdk(wechat_emulator.keys).callback(headers, body)
    assert notice is not None and notice["event_type"] == "REFUND.SUCCESS" and notice["summary"] == "退款成功"
    resource = notice["resource"]
    assert set(resource) == {"mchid", "out_trade_no", "transaction_id", "out_refund_no", "refund_id",
                             "refund_status", "success_time", "user_received_account", "amount"}
    assert resource["amount"] == {"total": 2500, "refund": 300, "payer_total": 2500, "payer_refund": 300}


@pytest.mark.parametrize(("forgery", "error"), [
    ({"sign_key": "stranger"}, errors.WebhookSignatureError),
    ({"apiv3_key": "k" * 32}, errors.WebhookSignatureError),
    ({"timestamp": int(time.time()) - 400}, errors.WebhookSignatureError),
    ({"overrides": {"mchid": "1900000109"}}, errors.WebhookMismatch),
    ({"overrides": {"out_refund_no": None}}, errors.WebhookPayloadError),
    ({"overrides": {"out_trade_no": ""}}, errors.WebhookPayloadError),
    ({"overrides": {"amount": {"refund": "300"}}}, errors.WebhookPayloadError),
    ({"refund_status": "REFUNDCLOSE"}, errors.WebhookPayloadError),
], ids=["forged", "wrong-apiv3-key", "stale", "other-merchant", "no-refund-no", "no-trade-no", "no-amount",
        "unknown-status"])
async def test_a_forged_or_unusable_refund_notification_raises(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, payment: PaymentRef,
    forgery: dict[str, object], error: type[Exception],
) -> None:
    request = asking(payment)
    await wechat_adapter.refund(request)
    if forgery.get("sign_key"):
        forgery = {"sign_key": stranger_key()}
    body, headers = wechat_emulator.signed_refund_callback(request.refund_no, **forgery)  # type: ignore[arg-type]
    with pytest.raises(error):
        await wechat_adapter.parse_webhook(headers, body)


# ---- data -----------------------------------------------------------------------------------------


def test_the_refund_status_table_covers_wechats_states_and_raises_on_others() -> None:
    assert dict(wx.REFUND_STATES) == {
        "SUCCESS": RefundStatus.SUCCEEDED,
        "PROCESSING": RefundStatus.PROCESSING,
        "CLOSED": RefundStatus.FAILED,
        "ABNORMAL": RefundStatus.FAILED,
    }
    assert set(wx.REFUND_FAILURES) == {s for s, ours in wx.REFUND_STATES.items() if ours is RefundStatus.FAILED}
    for unknown in ("REFUNDCLOSE", "success", "", "NOTSURE"):
        with pytest.raises(errors.GatewayProtocolError, match="unknown refund state"):
            map_state(wx.REFUND_STATES, unknown, "WeChat Pay", "refund state")
    with pytest.raises(TypeError):
        wx.REFUND_STATES["NEW"] = RefundStatus.SUCCEEDED  # type: ignore[index]


def test_the_refund_limits_are_data() -> None:
    assert WechatAdapter.refund_limits == RefundLimits(window_days=365, minimum_minor=1, partial=True,
                                                       max_per_payment=50)
    with pytest.raises(dataclasses.FrozenInstanceError):
        WechatAdapter.refund_limits.window_days = 0  # type: ignore[misc]
