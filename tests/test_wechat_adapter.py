"""WechatAdapter against the WeChat Pay emulator over real HTTP, signed and checked by the official SDK's
helpers."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from adapters import transport as tp
from adapters.base import CreateRequest, Money, PaymentRef, Status
from adapters.errors import (
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnavailable,
    UnsupportedOperation,
    WebhookMismatch,
    WebhookPayloadError,
)
from adapters.transport import AiohttpTransport, MockTransport
from adapters.wechat import qr
from adapters.wechat import transformers as wx
from adapters.wechat.adapter import WechatAdapter
from sandbox.wechat import PaymentRefused, WechatEmulator
from tests.fixtures_wechat import (
    DESCRIPTION,
    CallbackReceiver,
    created,
    official_sdk,
    order,
    wechat_config,
)


def ref(request: CreateRequest) -> PaymentRef:
    return PaymentRef(request.payment_id, None, request.amount)


# ---- create and query ---------------------------------------------------------------------------


async def test_create_sends_a_native_order_and_the_query_says_waiting(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver
) -> None:
    request = order()
    answer = await wechat_adapter.create(request)
    assert answer.payment_url is not None
    assert answer.payment_url.startswith("weixin://wxpay/bizpayurl?pr=")
    assert answer.gateway_reference is None and answer.status is Status.WAITING
    sent = wechat_emulator.requests[-1]
    assert sent["amount"] == {"total": 2500, "currency": "CNY"}
    china = datetime.fromtimestamp(request.expires_at, timezone(timedelta(hours=8)))
    assert sent["time_expire"] == china.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    assert sent["notify_url"] == f"{wechat_receiver.url}/webhooks/wechat"
    # cut to fit 127 UTF-8 bytes (WeChat's docs do not settle bytes or characters: this fits both)
    assert DESCRIPTION.startswith(sent["description"]) and len(sent["description"].encode()) <= 127
    assert len(DESCRIPTION[: len(sent["description"]) + 1].encode()) > 127  # as long as fits
    assert (sent["out_trade_no"], sent["appid"], sent["mchid"]) == (
        request.payment_id,
        wechat_emulator.keys.appid,
        wechat_emulator.keys.mchid,
    )

    state = await wechat_adapter.query(ref(request))
    assert (state.status, state.gateway_state) == (Status.WAITING, "NOTPAY")
    assert state.amount == Money(2500, "CNY") and state.gateway_reference is None
    assert wechat_emulator.calls == {"create": 1, "query": 1}


@pytest.mark.parametrize(("text", "cut"), [
    ("a" * 200, "a" * 127),
    ("包" * 100, "包" * 42),  # 126 bytes: a 43rd would need 129
    ("a" * 126 + "包", "a" * 126),  # a character is never split
    ("😀" * 40, "😀" * 31),  # 124 bytes
    ("ab" + "é" * 100, "ab" + "é" * 62),  # 126 bytes
], ids=["ascii", "chinese", "not-split", "emoji", "latin"])
def test_the_description_is_cut_to_fit_127_bytes(text: str, cut: str) -> None:
    assert wx.description(text, "pr_x") == cut


async def test_an_empty_description_gets_a_neutral_one(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator
) -> None:
    await created(wechat_adapter, description="  ")
    assert wechat_emulator.requests[-1]["description"] == "Payment pr_00AbCdEfGhIjKlMnOpQrStUvWx"


async def test_the_same_order_twice_gets_the_same_code_url_and_a_changed_one_is_refused(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator
) -> None:
    request, url = await created(wechat_adapter)
    assert (await wechat_adapter.create(request)).payment_url == url
    with pytest.raises(GatewayRefused) as refused:
        await wechat_adapter.create(replace(request, amount=Money(2600, "CNY")))
    assert refused.value.code == "INVALID_REQUEST"
    assert len(wechat_emulator.orders) == 1


@pytest.mark.parametrize(
    ("changes", "param"),
    [({"online": False}, "onlineScenario"), ({"amount": Money(2500, "USD")}, "currency")],
)
async def test_unsupported_requests_never_reach_wechat(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, changes: dict[str, object], param: str
) -> None:
    with pytest.raises(UnsupportedOperation) as unsupported:
        await wechat_adapter.create(order(**changes))
    assert unsupported.value.param == param
    if param == "onlineScenario":
        assert "off-session" in unsupported.value.message
    assert wechat_emulator.calls["create"] == 0


async def test_an_unknown_order_has_no_status(wechat_adapter: WechatAdapter) -> None:
    for answer in (
        await wechat_adapter.query(ref(order("pr_unknown_000"))),
        await wechat_adapter.close(ref(order("pr_unknown_001"))),
    ):
        assert (answer.status, answer.gateway_state) == (None, "ORDER_NOT_EXIST")


# ---- paying -------------------------------------------------------------------------------------


async def test_paying_sends_a_callback_that_parses_to_succeeded(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver
) -> None:
    request, url = await created(wechat_adapter)
    assert await wechat_emulator.pay(url, "paid") == ""

    assert len(wechat_receiver.received) == 1
    callback = wechat_receiver.received[0]
    event = await wechat_adapter.parse_webhook(callback.headers, callback.body)
    assert event is not None
    transaction_id = wechat_emulator.orders[request.payment_id].transaction_id
    assert transaction_id and len(transaction_id) == 28
    assert event.state.status is Status.SUCCEEDED and event.state.gateway_state == "SUCCESS"
    assert event.state.gateway_reference == transaction_id
    assert event.state.amount == Money(2500, "CNY")
    assert wechat_emulator.webhooks_sent == [(event.event_id, 204)]

    queried = await wechat_adapter.query(ref(request))
    assert (queried.status, queried.gateway_reference) == (Status.SUCCEEDED, transaction_id)


async def test_the_official_sdk_accepts_the_emulators_callback(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver
) -> None:
    """The emulator and the adapter share no code: cross-check both with wechatpayv3's callback()."""
    request, url = await created(wechat_adapter)
    await wechat_emulator.pay(url)
    callback = wechat_receiver.received[0]
    keys = wechat_emulator.keys
    sdk = official_sdk(keys)
    result = sdk.callback(callback.headers, callback.body)
    assert result is not None
    assert result["resource"] == wechat_emulator.transaction(request.payment_id)
    assert result["event_type"] == "TRANSACTION.SUCCESS"


@pytest.mark.parametrize(
    ("outcome", "state", "status"), [("paid", "SUCCESS", Status.SUCCEEDED), ("failed", "PAYERROR", Status.FAILED)]
)
async def test_a_payment_in_flight_is_processing_until_settled(
    wechat_adapter: WechatAdapter,
    wechat_emulator: WechatEmulator,
    wechat_receiver: CallbackReceiver,
    outcome: str,
    state: str,
    status: Status,
) -> None:
    request, url = await created(wechat_adapter)
    await wechat_emulator.pay(url, "processing")
    assert (await wechat_adapter.query(ref(request))).status is Status.PROCESSING
    assert wechat_receiver.received == []

    await wechat_emulator.settle(request.payment_id, outcome)  # type: ignore[arg-type]
    settled = await wechat_adapter.query(ref(request))
    assert (settled.status, settled.gateway_state) == (status, state)
    assert len(wechat_receiver.received) == (1 if outcome == "paid" else 0)  # WeChat: success only
    if outcome == "failed":
        assert settled.failure_reason and settled.gateway_reference is None


async def test_a_failed_payment_sends_no_callback_and_is_found_by_query(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver
) -> None:
    request, url = await created(wechat_adapter)
    await wechat_emulator.pay(url, "failed")
    assert wechat_receiver.received == [] and wechat_emulator.webhooks_sent == []
    assert (await wechat_adapter.query(ref(request))).status is Status.FAILED
    await wechat_emulator.pay(url, "cancel")  # leaving changes nothing
    with pytest.raises(PaymentRefused):
        await wechat_emulator.pay(url, "paid")


# ---- closing and expiry -------------------------------------------------------------------------


async def test_close_closes_and_the_page_refuses_payment(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver
) -> None:
    request, url = await created(wechat_adapter)
    state = await wechat_adapter.close(ref(request))
    assert (state.status, state.gateway_state) == (Status.CLOSED, "CLOSED")
    with pytest.raises(PaymentRefused):
        await wechat_emulator.pay(url, "paid")
    assert (await wechat_adapter.query(ref(request))).status is Status.CLOSED
    assert (await wechat_adapter.close(ref(request))).status is Status.CLOSED  # closing twice is fine
    assert wechat_receiver.received == []
    assert wechat_emulator.orders[request.payment_id].history == ["NOTPAY", "CLOSED"]


async def test_close_while_paying_closes(wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator) -> None:
    request, url = await created(wechat_adapter)
    await wechat_emulator.pay(url, "processing")
    assert (await wechat_adapter.close(ref(request))).status is Status.CLOSED


async def test_close_after_paid_answers_succeeded(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator
) -> None:
    request, url = await created(wechat_adapter)
    await wechat_emulator.pay(url)
    state = await wechat_adapter.close(ref(request))
    assert (state.status, state.gateway_state) == (Status.SUCCEEDED, "SUCCESS")
    assert state.gateway_reference == wechat_emulator.orders[request.payment_id].transaction_id
    assert wechat_emulator.calls["close"] == 1


async def test_past_time_expire_an_unpaid_order_is_closed(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator
) -> None:
    request, url = await created(wechat_adapter)
    wechat_emulator.advance(1801)
    assert (await wechat_adapter.query(ref(request))).status is Status.CLOSED
    with pytest.raises(PaymentRefused):
        await wechat_emulator.pay(url)


# ---- failures at the boundary -------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["sign_responses_with_wrong_key", "unsigned_responses"])
async def test_unverified_2xx_answers_are_protocol_errors(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, flag: str
) -> None:
    request, url = await created(wechat_adapter)
    await wechat_emulator.pay(url)  # paid: an unverified answer must not make it anything
    setattr(wechat_emulator, flag, True)
    for call in (
        wechat_adapter.create(order("pr_other_order_2")),
        wechat_adapter.query(ref(request)),
        wechat_adapter.close(ref(order("pr_other_order_2"))),
    ):  # the last one is an empty 204
        with pytest.raises(GatewayProtocolError):
            await call
    assert wechat_emulator.calls == {"create": 2, "query": 1, "close": 1}


async def test_a_wrong_serial_on_an_answer_is_a_protocol_error(wechat_emulator: WechatEmulator) -> None:
    """An answer naming another key id: public key mode has no platform certificate for it."""
    config = replace(wechat_config(wechat_emulator), public_key_id="PUB_KEY_ID_0000000000000000000000000000")
    adapter = WechatAdapter(config, "http://127.0.0.1:9", AiohttpTransport())
    try:
        with pytest.raises(GatewayProtocolError):
            await adapter.create(order())
    finally:
        await adapter.aclose()
    assert wechat_emulator.calls["create"] == 1


def test_error_answers_map_to_the_error_tree() -> None:
    assert isinstance(wx.failure("query", 500, b"<html>bad gateway</html>"), GatewayUnavailable)
    assert isinstance(wx.failure("query", 429, '{"code":"FREQUENCY_LIMITED","message":"slow"}'), GatewayUnavailable)
    refused = wx.failure("create", 400, '{"code":"PARAM_ERROR","message":"bad"}')
    assert isinstance(refused, GatewayRefused) and refused.code == "PARAM_ERROR"
    assert isinstance(wx.failure("create", 302, ""), GatewayProtocolError)


async def test_the_client_is_opened_once_and_reopened_after_aclose(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator
) -> None:
    request, _ = await created(wechat_adapter)
    await wechat_adapter.aclose()
    assert (await wechat_adapter.query(ref(request))).status is Status.WAITING


# ---- callbacks ----------------------------------------------------------------------------------


@pytest.fixture
async def paid_order(wechat_adapter: WechatAdapter) -> str:
    request, _ = await created(wechat_adapter)
    return request.payment_id


async def test_a_genuine_callback_verifies(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, paid_order: str
) -> None:
    body, headers = wechat_emulator.signed_callback(paid_order, timestamp=int(time.time()) - 290)
    event = await wechat_adapter.parse_webhook(headers, body)
    assert event is not None and event.event_id == json.loads(body)["id"]
    assert (event.state.payment_id, event.state.status) == (paid_order, Status.SUCCEEDED)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert await wechat_adapter.parse_webhook(lowered, body) == event


async def test_a_changed_amount_is_reported_as_verified_for_the_service_to_flag(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, paid_order: str
) -> None:
    body, headers = wechat_emulator.signed_callback(paid_order, overrides={"amount": {"total": 1}})
    event = await wechat_adapter.parse_webhook(headers, body)
    assert event is not None and event.state.amount == Money(1, "CNY")


@pytest.mark.parametrize(("overrides", "error"), [
    ({"mchid": "1900000109"}, WebhookMismatch),  # about another merchant: acknowledged, not applied
    ({"appid": "wx0000000000000000"}, WebhookMismatch),
    ({"amount": None}, WebhookPayloadError),
    ({"out_trade_no": None}, WebhookPayloadError),
])
async def test_a_callback_about_another_merchant_or_without_essentials(
    wechat_adapter: WechatAdapter,
    wechat_emulator: WechatEmulator,
    paid_order: str,
    overrides: dict[str, object],
    error: type[Exception],
) -> None:
    body, headers = wechat_emulator.signed_callback(paid_order, overrides=overrides)
    with pytest.raises(error):
        await wechat_adapter.parse_webhook(headers, body)


async def test_an_unknown_trade_state_raises(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, paid_order: str
) -> None:
    body, headers = wechat_emulator.signed_callback(paid_order, trade_state="ACCEPT")
    with pytest.raises(WebhookPayloadError, match="unknown state 'ACCEPT'"):
        await wechat_adapter.parse_webhook(headers, body)


async def test_other_events_are_ignored(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, paid_order: str
) -> None:
    body, headers = wechat_emulator.signed_callback(paid_order, event_type="REFUND.SUCCESS")
    assert await wechat_adapter.parse_webhook(headers, body) is None


async def test_a_redelivered_callback_reaches_the_receiver(
    wechat_adapter: WechatAdapter,
    wechat_emulator: WechatEmulator,
    wechat_receiver: CallbackReceiver,
    paid_order: str,
) -> None:
    body, headers = wechat_emulator.signed_callback(paid_order)
    wechat_receiver.status = 500
    assert await wechat_emulator.deliver(body, headers) == 500
    assert wechat_emulator.webhooks_sent == [(json.loads(body)["id"], 500)]
    assert wechat_receiver.received[0].body == body


# ---- data -----------------------------------------------------------------------------------------


def test_time_expire_is_rfc3339_in_china_time() -> None:
    assert wx.rfc3339_china(0) == "1970-01-01T08:00:00+08:00"
    assert wx.rfc3339_china(1795228496) == "2026-11-21T10:34:56+08:00"


def test_class_facts() -> None:
    assert (WechatAdapter.gateway_type, WechatAdapter.webhook_name) == ("wechat-pay-native", "wechat")
    assert WechatAdapter.currencies == frozenset({"CNY"}) and WechatAdapter.supports_offline is False


def test_the_registry_builds_it(wechat_emulator: WechatEmulator) -> None:
    from adapters.registry import build_adapters
    from service.settings import Settings

    settings = Settings.from_env(
        {**wechat_emulator.env(), "PAYRELAY_API_KEYS": "t:k", "PAYRELAY_PUBLIC_URL": "https://relay.example"}
    )
    adapter = build_adapters(settings.gateways, settings.public_url)["wechat-pay-native"]
    assert isinstance(adapter, WechatAdapter)
    assert adapter.notify_url == "https://relay.example/webhooks/wechat"


# ---- where requests go --------------------------------------------------------------------------


async def test_calls_go_to_the_configured_api_base(
    wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator
) -> None:
    request, _ = await created(wechat_adapter)
    await wechat_adapter.query(ref(request))
    await wechat_adapter.close(ref(request))
    assert wechat_emulator.calls == {"create": 1, "query": 2, "close": 1}  # close asks what it is after


async def test_without_an_api_base_calls_go_to_wechat_pay(wechat_emulator: WechatEmulator) -> None:
    sent: list[tp.Request] = []

    def production(request: tp.Request) -> tp.Response:
        sent.append(request)
        return tp.Response(500, tp.Headers(), b"")

    adapter = WechatAdapter(replace(wechat_config(wechat_emulator), api_base=None), "https://relay.example",
                            MockTransport(production))
    with pytest.raises(GatewayUnavailable):
        await adapter.query(ref(order("pr_00test00000000000000000042")))
    assert [(r.method, r.url) for r in sent] == [
        ("GET", "https://api.mch.weixin.qq.com/v3/pay/transactions/out-trade-no/pr_00test00000000000000000042"
                f"?mchid={wechat_emulator.keys.mchid}")
    ]
    authorization = sent[0].headers["Authorization"]
    assert authorization.startswith(f'WECHATPAY2-SHA256-RSA2048 mchid="{wechat_emulator.keys.mchid}"')


# ---- QR codes ---------------------------------------------------------------------------------------

CODE_URL = "weixin://wxpay/bizpayurl?pr=AbC123xyz789"


def test_the_qr_svg_is_an_svg_document() -> None:
    svg = qr.svg(CODE_URL)
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"</svg>" in svg
    assert qr.svg(CODE_URL) == svg and qr.svg(CODE_URL + "0") != svg
    with pytest.raises(ValueError):
        qr.svg("")


def test_the_qr_png_decodes_back_to_the_code_url() -> None:
    zxingcpp = pytest.importorskip("zxingcpp", reason="the QR decoder (zxing-cpp) is a test dependency")
    image_module = pytest.importorskip("PIL.Image", reason="zxing-cpp reads the PNG through Pillow")
    png = qr.png(CODE_URL)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = image_module.open(io.BytesIO(png))
    results = zxingcpp.read_barcodes(image)
    assert [(r.text, r.format) for r in results] == [(CODE_URL, zxingcpp.BarcodeFormat.QRCode)]
