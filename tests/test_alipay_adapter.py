"""AlipayAdapter against the Alipay emulator over real HTTP, with the real python-alipay-sdk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import alipay
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from adapters import transport as tp
from adapters.alipay import transformers as tf
from adapters.alipay.adapter import PRODUCTION_GATEWAY, AlipayAdapter, signed_query
from adapters.alipay.config import AlipayConfig
from adapters.base import CreateRequest, Money, PaymentRef, RefundLimits, RefundRequest, RefundStatus, Status, map_state
from adapters.config import GatewayConfigError, Secret
from adapters.errors import (
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnavailable,
    UnsupportedOperation,
    WebhookMismatch,
    WebhookPayloadError,
    WebhookSignatureError,
)
from adapters.transport import AiohttpTransport, MockTransport, Transport
from sandbox.alipay import AlipayEmulator, CashierError
from sandbox.keys import rsa_pair
from sandbox.runner import ServerThread
from tests.fixtures_alipay import Receiver, alipay_config

CHINA = timezone(timedelta(hours=8))
_counter = iter(range(10**6))


def make_request(minor: int = 8900, description: str = "Pro membership · 10 GB 容量包",
                 expires_in: int = 1800, **changes: Any) -> CreateRequest:
    fields: dict[str, Any] = {
        "payment_id": f"pr_00test{next(_counter):020d}",
        "amount": Money(minor, "CNY"),
        "description": description,
        "complete_url": "https://shop.example/done?order=1",
        "cancel_url": "https://shop.example/cancel",
        "expires_at": int(time.time()) + expires_in,
    }
    return CreateRequest(**(fields | changes))


def ref_of(request: CreateRequest) -> PaymentRef:
    return PaymentRef(request.payment_id, None, request.amount)


def biz_content(payment_url: str) -> dict[str, Any]:
    query = dict(parse_qsl(urlsplit(payment_url).query))
    return json.loads(query["biz_content"])  # type: ignore[no-any-return]


async def open_cashier(payment_url: str) -> httpx.Response:
    """The customer's browser opens the payment URL (and lands on the cashier)."""
    async with httpx.AsyncClient(follow_redirects=True) as client:
        return await client.get(payment_url)


async def opened(adapter: AlipayAdapter, request: CreateRequest) -> str:
    created = await adapter.create(request)
    assert (await open_cashier(created.payment_url or "")).status_code == 200
    return created.payment_url or ""


# -- create, query, pay, close ----------------------------------------------------------------------


async def test_create_opens_the_cashier_and_the_trade_waits(alipay_adapter: AlipayAdapter,
                                                            alipay_emulator: AlipayEmulator) -> None:
    request = make_request()
    created = await alipay_adapter.create(request)
    assert created.status is Status.WAITING and created.gateway_reference is None
    assert created.payment_url and created.payment_url.startswith(alipay_emulator.base_url + "/gateway.do?")
    assert alipay_emulator.calls["create"] == 0  # page pay makes no call; the cashier creates the trade

    page = await open_cashier(created.payment_url)
    assert page.status_code == 200 and "Pro membership · 10 GB 容量包" in page.text and "89.00" in page.text
    assert alipay_emulator.calls["create"] == 1

    state = await alipay_adapter.query(ref_of(request))
    assert state.status is Status.WAITING and state.gateway_state == "WAIT_BUYER_PAY"
    assert state.amount == Money(8900, "CNY")
    assert state.gateway_reference and len(state.gateway_reference) == 28 and state.gateway_reference.isdigit()


async def test_query_before_the_cashier_is_opened_finds_no_trade(alipay_adapter: AlipayAdapter) -> None:
    request = make_request()
    await alipay_adapter.create(request)
    state = await alipay_adapter.query(ref_of(request))
    assert state.status is None and state.gateway_state == "ACQ.TRADE_NOT_EXIST"


async def test_pay_sends_a_notification_that_verifies(alipay_adapter: AlipayAdapter,
                                                      alipay_emulator: AlipayEmulator,
                                                      alipay_receiver: Receiver) -> None:
    request = make_request()
    created = await alipay_adapter.create(request)
    landed = await alipay_emulator.pay(created.payment_url or "", "paid")

    assert len(alipay_receiver.bodies) == 1
    event = await alipay_adapter.parse_webhook({}, alipay_receiver.bodies[0])
    assert event is not None
    assert event.state.payment_id == request.payment_id
    assert event.state.status is Status.SUCCEEDED and event.state.gateway_state == "TRADE_SUCCESS"
    assert event.state.amount == Money(8900, "CNY")
    form = dict(parse_qsl(alipay_receiver.bodies[0].decode()))
    assert event.event_id == form["notify_id"] and event.state.gateway_reference == form["trade_no"]
    assert alipay_emulator.webhooks_sent == [(form["notify_id"], 200)]

    # the browser returns to complete_url with the synchronous return parameters, signed by Alipay
    assert landed.startswith("https://shop.example/done?order=1&")
    returned = dict(parse_qsl(urlsplit(landed).query))
    assert returned.pop("order") == "1"  # complete_url's own parameter, not Alipay's: not signed
    sign = returned.pop("sign")
    assert alipay_adapter._sdk.verify(returned, sign)
    assert returned["out_trade_no"] == request.payment_id and returned["total_amount"] == "89.00"

    state = await alipay_adapter.query(ref_of(request))
    assert state.status is Status.SUCCEEDED and state.amount == Money(8900, "CNY")
    assert state.gateway_reference == form["trade_no"]


async def test_close_then_the_cashier_refuses(alipay_adapter: AlipayAdapter,
                                              alipay_emulator: AlipayEmulator,
                                              alipay_receiver: Receiver) -> None:
    request = make_request()
    url = await opened(alipay_adapter, request)

    state = await alipay_adapter.close(ref_of(request))
    assert state.status is Status.CLOSED and state.gateway_state == "TRADE_CLOSED"
    assert state.gateway_reference and len(state.gateway_reference) == 28
    with pytest.raises(CashierError) as refused:
        await alipay_emulator.pay(url, "paid")
    assert refused.value.code == "ACQ.TRADE_HAS_CLOSE"
    assert (await alipay_adapter.query(ref_of(request))).status is Status.CLOSED
    assert alipay_receiver.bodies == []  # Alipay does not notify a merchant's own close


async def test_pay_button_pressed_after_close_is_refused(alipay_adapter: AlipayAdapter,
                                                         alipay_emulator: AlipayEmulator) -> None:
    request = make_request()
    created = await alipay_adapter.create(request)
    cashier = await open_cashier(created.payment_url or "")  # the customer has the page open …
    await alipay_adapter.close(ref_of(request))  # … when payrelay closes the trade
    async with httpx.AsyncClient() as client:
        pressed = await client.post(str(cashier.url) + "/pay")
    assert pressed.status_code == 409 and "ACQ.TRADE_HAS_CLOSE" in pressed.text
    assert (await alipay_adapter.query(ref_of(request))).status is Status.CLOSED


async def test_close_of_a_never_opened_trade_finds_none(alipay_adapter: AlipayAdapter,
                                                        alipay_emulator: AlipayEmulator) -> None:
    request = make_request()
    await alipay_adapter.create(request)
    state = await alipay_adapter.close(ref_of(request))
    assert state.status is None and state.gateway_state == "ACQ.TRADE_NOT_EXIST"
    assert alipay_emulator.calls["close"] == 1


async def test_close_after_pay_answers_the_paid_state(alipay_adapter: AlipayAdapter,
                                                      alipay_emulator: AlipayEmulator) -> None:
    request = make_request()
    created = await alipay_adapter.create(request)
    await alipay_emulator.pay(created.payment_url or "", "paid")
    state = await alipay_adapter.close(ref_of(request))
    assert state.status is Status.SUCCEEDED and state.amount == Money(8900, "CNY")
    assert alipay_emulator.calls["close"] == 1 and alipay_emulator.trades[request.payment_id].status == "TRADE_SUCCESS"


async def test_many_concurrent_queries(alipay_emulator: AlipayEmulator, alipay_receiver: Receiver) -> None:
    adapter = AlipayAdapter(alipay_config(alipay_emulator), alipay_receiver.url, AiohttpTransport(max_connections=4))
    request = make_request()
    await opened(adapter, request)
    try:
        states = await asyncio.gather(*(adapter.query(ref_of(request)) for _ in range(20)))
    finally:
        await adapter.aclose()
    assert {s.status for s in states} == {Status.WAITING}


# -- failures -----------------------------------------------------------------------------------------


async def test_forged_answer_signature_is_a_protocol_error(alipay_adapter: AlipayAdapter,
                                                           alipay_emulator: AlipayEmulator) -> None:
    request = make_request()
    await opened(alipay_adapter, request)
    alipay_emulator.forge_signatures = True
    with pytest.raises(GatewayProtocolError, match="does not verify"):
        await alipay_adapter.query(ref_of(request))
    with pytest.raises(GatewayProtocolError):
        await alipay_adapter.close(ref_of(request))


@pytest.mark.parametrize(("status", "body", "error", "match"), [
    (200, '{"alipay_trade_query_response":{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS",'
          '"out_trade_no":"x","total_amount":"89.00"}}', GatewayProtocolError, "not signed"),
    (200, "<html>maintenance</html>", GatewayProtocolError, "unreadable"),
    (200, '{"alipay_trade_query_response":{"code":"20000","msg":"Service Currently Unavailable",'
          '"sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}}', GatewayUnavailable, "isp.unknow-error"),
    (404, "not found", GatewayProtocolError, "HTTP 404"),
    (502, "bad gateway", GatewayUnavailable, "HTTP 502"),
])
async def test_odd_answers(alipay_emulator: AlipayEmulator, served: Callable[[Any], ServerThread],
                           transport: Transport, status: int, body: str, error: type[Exception],
                           match: str) -> None:
    async def answer(request: Any) -> Response:
        return Response(body, status_code=status, media_type="text/html;charset=utf-8")

    server = served(Starlette(routes=[Route("/gateway.do", answer)]))
    config = alipay_config(alipay_emulator)
    adapter = AlipayAdapter(AlipayConfig(config.app_id, config.private_key, config.alipay_public_key,
                                         server.url + "/gateway.do"), "http://127.0.0.1:9", transport)
    with pytest.raises(error, match=match):
        await adapter.query(ref_of(make_request()))


def test_business_errors_from_verified_answers() -> None:
    other = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_PARAMETER", "sub_msg": "参数无效"}
    with pytest.raises(GatewayRefused) as refused:
        tf.trade_state("pr_1", other)
    assert refused.value.code == "ACQ.INVALID_PARAMETER" and "参数无效" in refused.value.message
    with pytest.raises(GatewayUnavailable):
        tf.close_outcome("pr_1", other | {"sub_code": "ACQ.SYSTEM_ERROR"})
    with pytest.raises(GatewayProtocolError, match="not 'pr_1'"):
        tf.trade_state("pr_1", {"code": "10000", "out_trade_no": "pr_2", "trade_status": "TRADE_SUCCESS",
                                "total_amount": "1.00"})
    with pytest.raises(GatewayProtocolError, match="total_amount"):
        tf.trade_state("pr_1", {"code": "10000", "trade_status": "TRADE_SUCCESS", "total_amount": "1.001"})


# -- create parameters --------------------------------------------------------------------------------


async def test_time_expire_is_china_time_of_expires_at(alipay_adapter: AlipayAdapter) -> None:
    request = make_request(expires_in=1800)
    biz = biz_content((await alipay_adapter.create(request)).payment_url or "")
    expected = datetime.fromtimestamp(request.expires_at, UTC_PLUS_8).strftime("%Y-%m-%d %H:%M:%S")
    assert biz["time_expire"] == expected
    assert datetime.strptime(biz["time_expire"], "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=CHINA).timestamp() == request.expires_at
    assert biz["total_amount"] == "89.00" and biz["product_code"] == "FAST_INSTANT_TRADE_PAY"
    assert biz["out_trade_no"] == request.payment_id


UTC_PLUS_8 = CHINA


def test_time_expire_is_clamped_to_what_alipay_takes() -> None:
    now = 1_800_000_000.5
    assert tf.time_expire(int(now) + 5, now) == tf.china_time(int(now) + 60)
    assert tf.time_expire(int(now) + 30 * 86400, now) == tf.china_time(int(now) + 15 * 86400)
    assert tf.china_time(0) == "1970-01-01 08:00:00"


async def test_description_is_cut_by_characters(alipay_adapter: AlipayAdapter,
                                                alipay_emulator: AlipayEmulator) -> None:
    request = make_request(description="容" * 300)
    created = await alipay_adapter.create(request)
    assert biz_content(created.payment_url or "")["subject"] == "容" * 256
    assert (await open_cashier(created.payment_url or "")).status_code == 200  # Alipay takes it
    # characters as Java counts them (UTF-16 units): an emoji is two, and is never split
    for description, subject in (("😀" * 200, "😀" * 128), ("a" + "😀" * 200, "a" + "😀" * 127)):
        created = await alipay_adapter.create(make_request(description=description))
        assert biz_content(created.payment_url or "")["subject"] == subject
        assert (await open_cashier(created.payment_url or "")).status_code == 200
    blank = make_request(description="  ")
    assert biz_content((await alipay_adapter.create(blank)).payment_url or "")["subject"] == (
        f"Payment {blank.payment_id}")


@pytest.mark.parametrize(("changes", "param"), [
    ({"online": False}, "onlineScenario"),
    ({"save_method": True}, "supportOfflineScenario"),
    ({"amount": Money(2500, "USD")}, "currency"),
    ({"amount": Money(100_000_000_01, "CNY")}, "amount"),
])
async def test_unsupported_requests(alipay_adapter: AlipayAdapter, changes: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedOperation) as refused:
        await alipay_adapter.create(make_request(**changes))
    assert refused.value.param == param
    if param == "onlineScenario":
        assert refused.value.message == "Alipay page pay has no off-session charge"


def test_declared_capabilities() -> None:
    assert AlipayAdapter.gateway_type == "alipay-page" and AlipayAdapter.webhook_name == "alipay"
    assert AlipayAdapter.currencies == frozenset({"CNY"}) and AlipayAdapter.supports_offline is False


# -- where requests go and how they are signed ------------------------------------------------------


async def test_calls_go_to_the_configured_gateway(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator,
                                                 alipay_receiver: Receiver) -> None:
    request = make_request()
    payment_url = await opened(alipay_adapter, request)
    assert payment_url.startswith(alipay_emulator.base_url + "/gateway.do?")
    await alipay_adapter.query(ref_of(request))
    await alipay_adapter.close(ref_of(request))
    assert alipay_emulator.calls["query"] == alipay_emulator.calls["close"] == 1


async def test_without_a_gateway_url_calls_go_to_production(alipay_emulator: AlipayEmulator) -> None:
    sent: list[tp.Request] = []

    def production(request: tp.Request) -> tp.Response:
        sent.append(request)
        return tp.Response(503, tp.Headers(), b"")

    config = alipay_config(alipay_emulator)
    adapter = AlipayAdapter(AlipayConfig(config.app_id, config.private_key, config.alipay_public_key, None),
                            "https://pay.example", MockTransport(production))
    assert adapter.gateway_url == PRODUCTION_GATEWAY
    created = await adapter.create(make_request())
    assert (created.payment_url or "").startswith(PRODUCTION_GATEWAY + "?")
    with pytest.raises(GatewayUnavailable):
        await adapter.query(ref_of(make_request()))
    assert [(r.method, r.url.partition("?")[0]) for r in sent] == [("GET", PRODUCTION_GATEWAY)]


def plain_sdk(keys: dict[str, tuple[str, str]]) -> Any:
    return alipay.AliPay(appid="2021000000000000", app_notify_url=None, app_private_key_string=keys["app_key"][0],
                         alipay_public_key_string=keys["platform_key"][1])


def test_requests_are_signed_byte_for_byte_like_the_sdk(alipay_keys: dict[str, tuple[str, str]]) -> None:
    """The adapter signs with OpenSSL what the SDK's public ``sign_data`` signs with pycryptodome:
    the same string, signature included (PKCS#1 v1.5 is deterministic)."""
    sdk = plain_sdk(alipay_keys)
    key = serialization.load_pem_private_key(alipay_keys["app_key"][0].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    bodies = [
        sdk.build_body("alipay.trade.query", {"out_trade_no": "pr_1"}),
        sdk.build_body("alipay.trade.close", {"out_trade_no": "pr_00test" + "9" * 20}),
        sdk.build_body("alipay.trade.page.pay", {"subject": "容量包 & more <b>=</b> 100%", "out_trade_no": "pr_2",
                                                 "total_amount": "89.00", "product_code": "FAST_INSTANT_TRADE_PAY"},
                       return_url="https://shop.example/done?a=1&b=2", notify_url=None),
        {"a": "", "b": "x" * 5000, "c": "+ /?#"},
    ]
    for body in bodies:
        assert signed_query(key, dict(body)) == sdk.sign_data(dict(body))


async def test_the_payment_url_is_the_sdks_page_pay(alipay_adapter: AlipayAdapter,
                                                   alipay_keys: dict[str, tuple[str, str]]) -> None:
    """Built from the SDK's ``build_body``: the parameters ``api_alipay_trade_page_pay`` makes,
    and the very query string its ``sign_data`` writes for them."""
    request = make_request(description="Pro <plan> & 10 GB 容量包")
    url = (await alipay_adapter.create(request)).payment_url or ""
    ours = dict(parse_qsl(urlsplit(url).query))
    sdk = alipay_adapter._sdk
    assert urlsplit(url).query == sdk.sign_data({k: v for k, v in ours.items() if k != "sign"})
    params = tf.page_pay_params(request, "http://127.0.0.1:9/webhooks/alipay", time.time())
    theirs = dict(parse_qsl(sdk.api_alipay_trade_page_pay(**params)))
    assert ours.keys() == theirs.keys()
    for name in ours.keys() - {"timestamp", "sign", "notify_url"}:
        assert ours[name] == theirs[name], name


# -- keys and secrets ---------------------------------------------------------------------------------


async def test_bare_base64_keys_from_alipays_console_work(alipay_emulator: AlipayEmulator,
                                                         transport: Transport) -> None:
    def bare(pem: str) -> str:
        return "".join(line for line in pem.splitlines() if not line.startswith("-----"))

    config = alipay_config(alipay_emulator)
    adapter = AlipayAdapter(AlipayConfig(config.app_id, Secret(bare(config.private_key.reveal())),
                                         bare(config.alipay_public_key), config.gateway_url), "http://127.0.0.1:9",
                            transport)
    request = make_request()
    await opened(adapter, request)
    assert (await adapter.query(ref_of(request))).status is Status.WAITING


def test_a_broken_private_key_is_not_shown(alipay_emulator: AlipayEmulator) -> None:
    config = alipay_config(alipay_emulator)
    secret_body = config.private_key.reveal().splitlines()[1]
    broken = "-----BEGIN PRIVATE KEY-----\n" + secret_body + "\n-----END PRIVATE KEY-----\n"
    with pytest.raises(GatewayConfigError) as raised:
        AlipayAdapter(AlipayConfig(config.app_id, Secret(broken), config.alipay_public_key, None), "x",
                      AiohttpTransport())
    assert secret_body not in str(raised.value) and raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    with pytest.raises(GatewayConfigError, match="PUBLIC_KEY"):
        AlipayAdapter(AlipayConfig(config.app_id, config.private_key, "not a key", None), "x", AiohttpTransport())


# -- notifications --------------------------------------------------------------------------------------


async def paid_trade(adapter: AlipayAdapter, emulator: AlipayEmulator) -> CreateRequest:
    request = make_request()
    await opened(adapter, request)
    return request


def encode(form: dict[str, str]) -> bytes:
    return urlencode(form).encode()


async def test_signed_notification_parses(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator) -> None:
    request = await paid_trade(alipay_adapter, alipay_emulator)
    for trade_status, status in [("WAIT_BUYER_PAY", Status.WAITING), ("TRADE_SUCCESS", Status.SUCCEEDED),
                                 ("TRADE_FINISHED", Status.SUCCEEDED), ("TRADE_CLOSED", Status.CLOSED)]:
        form = alipay_emulator.signed_notification(request.payment_id, trade_status)
        event = await alipay_adapter.parse_webhook({}, encode(form))
        assert event is not None and event.state.status is status and event.event_id == form["notify_id"]


async def test_event_id_falls_back_without_notify_id(alipay_adapter: AlipayAdapter,
                                                     alipay_emulator: AlipayEmulator) -> None:
    request = await paid_trade(alipay_adapter, alipay_emulator)
    form = alipay_emulator.signed_notification(request.payment_id, "TRADE_SUCCESS", notify_id=None,
                                               gmt_payment="2026-11-21 10:00:00")
    event = await alipay_adapter.parse_webhook({}, encode(form))
    assert event is not None and event.event_id == f"{request.payment_id}:TRADE_SUCCESS:2026-11-21 10:00:00"


@pytest.mark.parametrize(("overrides", "match"), [
    ({"app_id": "2021000000000001"}, "another app_id"),
    ({"seller_id": "2088000000000001"}, "another seller_id"),
    ({"seller_id": None}, "another seller_id"),
])
async def test_notifications_about_another_app_or_merchant_are_mismatches(
        alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator, overrides: dict[str, str | None],
        match: str) -> None:
    request = await paid_trade(alipay_adapter, alipay_emulator)
    form = alipay_emulator.signed_notification(request.payment_id, "TRADE_SUCCESS", **overrides)
    with pytest.raises(WebhookMismatch, match=match):
        await alipay_adapter.parse_webhook({}, encode(form))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"out_trade_no": None}, "no out_trade_no"),
    ({"total_amount": "89"}, None),  # whole yuan is a valid amount
    ({"total_amount": "89.001"}, "total_amount"),
    ({"total_amount": "-1.00"}, "total_amount"),
    ({"total_amount": None}, "total_amount"),
    ({"trade_status": "TRADE_PENDING"}, "unknown trade_status"),
    ({"trade_status": None}, "unknown trade_status"),
])
async def test_verified_notifications_with_unusable_content(alipay_adapter: AlipayAdapter,
                                                            alipay_emulator: AlipayEmulator,
                                                            overrides: dict[str, str | None],
                                                            match: str | None) -> None:
    request = await paid_trade(alipay_adapter, alipay_emulator)
    form = alipay_emulator.signed_notification(request.payment_id, "TRADE_SUCCESS", **overrides)
    if match is None:
        event = await alipay_adapter.parse_webhook({}, encode(form))
        assert event is not None and event.state.amount == Money(8900, "CNY")
        return
    with pytest.raises(WebhookPayloadError, match=match):
        await alipay_adapter.parse_webhook({}, encode(form))


@pytest.mark.parametrize("body", [b"sign=%ZZ&a", b"\xff\xfe=1", b"a=1&a=2&sign=x", b"a=1&&b=2"])
async def test_malformed_notification_bodies(alipay_adapter: AlipayAdapter, body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        await alipay_adapter.parse_webhook({}, body)


async def test_missing_or_empty_body_is_unsigned(alipay_adapter: AlipayAdapter) -> None:
    for body in (b"", b"trade_status=TRADE_SUCCESS&sign="):
        with pytest.raises(WebhookSignatureError, match="not signed"):
            await alipay_adapter.parse_webhook({}, body)


async def test_refund_after_success_reports_closed(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator,
                                                   alipay_receiver: Receiver) -> None:
    request = make_request()
    created = await alipay_adapter.create(request)
    await alipay_emulator.pay(created.payment_url or "", "paid")
    await alipay_emulator.refund(request.payment_id)
    first, second = [await alipay_adapter.parse_webhook({}, body) for body in alipay_receiver.bodies]
    assert first is not None and first.state.status is Status.SUCCEEDED
    # reported as it is; the service refuses to move a succeeded payment back
    assert second is not None and second.state.status is Status.CLOSED and second.event_id != first.event_id
    assert second.state.amount == Money(8900, "CNY")
    assert (await alipay_adapter.query(ref_of(request))).status is Status.CLOSED


# -- refunds -------------------------------------------------------------------------------------------


def refund_of(request: CreateRequest, minor: int | None = None, reason: str | None = "不想要了") -> RefundRequest:
    return RefundRequest(refund_no=f"rf_{next(_counter):026d}", payment=ref_of(request),
                         amount=Money(request.amount.minor if minor is None else minor, "CNY"), reason=reason)


async def paid(adapter: AlipayAdapter, emulator: AlipayEmulator, minor: int = 8900) -> CreateRequest:
    request = make_request(minor)
    created = await adapter.create(request)
    await emulator.pay(created.payment_url or "", "paid")
    return request


async def events(adapter: AlipayAdapter, receiver: Receiver) -> list[Any]:
    return [await adapter.parse_webhook({}, body) for body in receiver.bodies]


async def test_full_refund_succeeds_and_closes_the_trade(alipay_adapter: AlipayAdapter,
                                                         alipay_emulator: AlipayEmulator,
                                                         alipay_receiver: Receiver) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request)
    state = await alipay_adapter.refund(refund)
    assert (state.refund_no, state.status, state.gateway_state) == (refund.refund_no, RefundStatus.SUCCEEDED,
                                                                    "fund_change=Y")
    assert state.amount == Money(8900, "CNY") and state.payment_id == request.payment_id
    found = await alipay_adapter.query_refund(refund)
    assert found is not None and found.status is RefundStatus.SUCCEEDED and found.gateway_state == "REFUND_SUCCESS"
    assert found.amount == Money(8900, "CNY")
    # the payment's own state is reported as Alipay says it; the core keeps the payment succeeded
    assert (await alipay_adapter.query(ref_of(request))).gateway_state == "TRADE_CLOSED"
    event = (await events(alipay_adapter, alipay_receiver))[-1]
    assert event.state.gateway_state == "TRADE_CLOSED" and event.state.status is Status.CLOSED
    assert event.refund.refund_no == refund.refund_no and event.refund.status is RefundStatus.SUCCEEDED
    assert event.refund.payment_id == request.payment_id and event.refund.amount is None


async def test_several_partial_refunds(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator,
                                       alipay_receiver: Receiver) -> None:
    request = await paid(alipay_adapter, alipay_emulator, 10000)
    first, second, rest = refund_of(request, 3000), refund_of(request, 2500, None), refund_of(request, 4500)
    for refund in (first, second):
        state = await alipay_adapter.refund(refund)
        assert state.status is RefundStatus.SUCCEEDED and state.amount == refund.amount
    assert (await alipay_adapter.query(ref_of(request))).gateway_state == "TRADE_SUCCESS"
    partial = (await events(alipay_adapter, alipay_receiver))[1:]
    assert [(e.state.gateway_state, e.refund.refund_no) for e in partial] == [
        ("TRADE_SUCCESS", first.refund_no), ("TRADE_SUCCESS", second.refund_no)]
    assert partial[0].event_id != partial[1].event_id
    assert [dict(parse_qsl(b.decode()))["refund_fee"] for b in alipay_receiver.bodies[1:]] == ["30.00", "55.00"]

    assert (await alipay_adapter.refund(rest)).status is RefundStatus.SUCCEEDED
    last = (await events(alipay_adapter, alipay_receiver))[-1]
    assert last.state.gateway_state == "TRADE_CLOSED" and last.refund.refund_no == rest.refund_no
    for refund in (first, second, rest):
        found = await alipay_adapter.query_refund(refund)
        assert found is not None and found.amount == refund.amount


async def test_over_refund_is_refused_with_alipays_code(alipay_adapter: AlipayAdapter,
                                                        alipay_emulator: AlipayEmulator) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    await alipay_adapter.refund(refund_of(request, 5000))
    too_much = refund_of(request, 4000)
    with pytest.raises(GatewayRefused, match="more than the payment has left to refund") as refused:
        await alipay_adapter.refund(too_much)
    assert refused.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" and not refused.value.retryable
    assert await alipay_adapter.query_refund(too_much) is None


async def test_refund_of_an_unpaid_trade_is_refused(alipay_adapter: AlipayAdapter,
                                                    alipay_emulator: AlipayEmulator) -> None:
    request = make_request()
    await opened(alipay_adapter, request)
    with pytest.raises(GatewayRefused, match="not paid") as refused:
        await alipay_adapter.refund(refund_of(request))
    assert refused.value.code == "ACQ.TRADE_STATUS_ERROR"
    never = make_request()
    with pytest.raises(GatewayRefused) as missing:
        await alipay_adapter.refund(refund_of(never))
    assert missing.value.code == "ACQ.TRADE_NOT_EXIST"


async def test_the_same_refund_no_twice_is_one_refund(alipay_adapter: AlipayAdapter,
                                                      alipay_emulator: AlipayEmulator,
                                                      alipay_receiver: Receiver) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request, 1000)
    first = await alipay_adapter.refund(refund)
    again = await alipay_adapter.refund(refund)  # fund_change N; the query finds it made
    assert first.status is again.status is RefundStatus.SUCCEEDED
    assert again.gateway_state == "REFUND_SUCCESS" and again.amount == Money(1000, "CNY")
    trade = alipay_emulator.trades[request.payment_id]
    assert trade.refunded_fen == 1000 and len(trade.refunds) == 1
    assert len(alipay_receiver.bodies) == 2  # the payment's notification and one refund's


async def test_the_same_refund_no_with_another_amount_is_refused(alipay_adapter: AlipayAdapter,
                                                                 alipay_emulator: AlipayEmulator) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request, 1000)
    await alipay_adapter.refund(refund)
    changed = RefundRequest(refund.refund_no, refund.payment, Money(2000, "CNY"))
    with pytest.raises(GatewayRefused, match="another amount") as refused:
        await alipay_adapter.refund(changed)
    assert refused.value.code == "ACQ.DISCORDANT_REPEAT_REQUEST"
    assert alipay_emulator.trades[request.payment_id].refunded_fen == 1000


async def test_query_of_an_unknown_refund_no_is_none(alipay_adapter: AlipayAdapter,
                                                     alipay_emulator: AlipayEmulator) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    assert await alipay_adapter.query_refund(refund_of(request)) is None
    assert await alipay_adapter.query_refund(refund_of(make_request())) is None  # no such trade either


async def test_timeout_after_the_effect_then_the_query_finds_it(alipay_emulator: AlipayEmulator,
                                                                alipay_receiver: Receiver) -> None:
    adapter = AlipayAdapter(alipay_config(alipay_emulator), alipay_receiver.url, AiohttpTransport(), timeout=0.5)
    try:
        request = await paid(adapter, alipay_emulator)
        refund = refund_of(request)
        alipay_emulator.refund_delay = 1.5
        with pytest.raises(GatewayUnavailable, match="did not answer the refund") as unknown:
            await adapter.refund(refund)
        assert unknown.value.retryable and unknown.value.outcome_unknown
        alipay_emulator.refund_delay = 0
        found = await adapter.query_refund(refund)
        assert found is not None and found.status is RefundStatus.SUCCEEDED
        assert (await adapter.refund(refund)).status is RefundStatus.SUCCEEDED  # asked again: nothing more
        assert alipay_emulator.trades[request.payment_id].refunded_fen == 8900
    finally:
        await adapter.aclose()


async def test_refund_down_is_unavailable_and_refunds_nothing(alipay_adapter: AlipayAdapter,
                                                              alipay_emulator: AlipayEmulator) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request)
    alipay_emulator.refund_down = True
    with pytest.raises(GatewayUnavailable, match="HTTP 503"):
        await alipay_adapter.refund(refund)
    alipay_emulator.refund_down = False
    assert await alipay_adapter.query_refund(refund) is None


async def test_refund_later_succeeded(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator,
                                      alipay_receiver: Receiver) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request, 2000)
    alipay_emulator.refund_outcome = "succeed_later"
    state = await alipay_adapter.refund(refund)
    assert state.status is RefundStatus.PROCESSING and state.gateway_state == "fund_change=N"
    assert await alipay_adapter.query_refund(refund) is None  # "未返回该字段表示退款请求未收到或者退款失败"
    assert len(alipay_receiver.bodies) == 1

    form = await alipay_emulator.settle_refund(refund.refund_no, "succeeded")
    assert form is not None and form["out_biz_no"] == refund.refund_no
    event = (await events(alipay_adapter, alipay_receiver))[-1]
    assert event.state.gateway_state == "TRADE_SUCCESS" and event.state.status is Status.SUCCEEDED
    assert event.refund.refund_no == refund.refund_no and event.refund.status is RefundStatus.SUCCEEDED
    found = await alipay_adapter.query_refund(refund)
    assert found is not None and found.status is RefundStatus.SUCCEEDED


async def test_refund_later_failed(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator,
                                   alipay_receiver: Receiver) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request)
    alipay_emulator.refund_outcome = "fail_later"
    assert (await alipay_adapter.refund(refund)).status is RefundStatus.PROCESSING
    assert await alipay_emulator.settle_refund(refund.refund_no, "failed") is None
    assert len(alipay_receiver.bodies) == 1  # Alipay notifies no failed refund
    assert await alipay_adapter.query_refund(refund) is None
    with pytest.raises(GatewayRefused, match="top it up") as refused:  # sent again, as Alipay asks
        await alipay_adapter.refund(refund)
    assert refused.value.code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    assert alipay_emulator.trades[request.payment_id].refunded_fen == 0


async def test_refund_requests_are_the_sdks_refund(alipay_emulator: AlipayEmulator) -> None:
    """The biz_content holds what python-alipay-sdk's api_alipay_trade_refund(refund_amount,
    out_trade_no=…, out_request_no=…, refund_reason=…) puts in it; the reason is cut to 256."""
    sent: list[str] = []

    def handler(request: tp.Request) -> tp.Response:
        sent.append(request.url)
        return tp.Response(503, tp.Headers(), b"")

    adapter = AlipayAdapter(alipay_config(alipay_emulator), "https://relay.example", MockTransport(handler))
    refund = refund_of(make_request(), 1234, "  " + "退" * 300)
    with pytest.raises(GatewayUnavailable):
        await adapter.refund(refund)
    query = dict(parse_qsl(urlsplit(sent[0]).query))
    assert query["method"] == "alipay.trade.refund"
    biz = json.loads(query["biz_content"])
    assert biz == {"refund_amount": "12.34", "out_request_no": refund.refund_no,
                   "out_trade_no": refund.payment.payment_id, "refund_reason": "退" * 256}


@pytest.mark.parametrize(("answer", "error", "code"), [
    ({"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"}, GatewayUnavailable, "ACQ.SYSTEM_ERROR"),
    ({"code": "40004", "sub_code": "ACQ.TRADE_HAS_FINISHED"}, GatewayRefused, "ACQ.TRADE_HAS_FINISHED"),
    ({"code": "40004", "sub_code": "ACQ.SOMETHING_NEW", "sub_msg": "新"}, GatewayRefused, "ACQ.SOMETHING_NEW"),
    ({"code": "10000"}, GatewayProtocolError, None),  # no fund_change
    ({"code": "10000", "fund_change": "M"}, GatewayProtocolError, None),
    ({"code": "10000", "fund_change": "Y", "out_trade_no": "someone_else"}, GatewayProtocolError, None),
])
def test_refund_answers(answer: dict[str, str], error: type[Exception], code: str | None) -> None:
    refund = refund_of(make_request())
    with pytest.raises(error) as raised:
        tf.refund_answer(refund, answer)
    assert getattr(raised.value, "code", None) == code


@pytest.mark.parametrize("answer", [
    {"code": "10000", "refund_amount": "89.00"},  # data without refund_status: not ours to guess
    {"code": "10000", "refund_amount": "89.00", "refund_status": "REFUND_PROCESSING"},
    {"code": "10000", "refund_amount": "x", "refund_status": "REFUND_SUCCESS"},
    {"code": "10000", "refund_amount": "89.00", "refund_status": "REFUND_SUCCESS", "out_request_no": "rf_other"},
])
def test_odd_refund_query_answers_are_protocol_errors(answer: dict[str, str]) -> None:
    with pytest.raises(GatewayProtocolError):
        tf.refund_query_state(refund_of(make_request()), answer)


def test_refund_tables_cover_the_documented_states_and_raise_on_others() -> None:
    assert dict(tf.FUND_CHANGE) == {"Y": RefundStatus.SUCCEEDED, "N": RefundStatus.PROCESSING}
    assert dict(tf.REFUND_STATUS) == {"REFUND_SUCCESS": RefundStatus.SUCCEEDED}
    assert dict(tf.REFUND_NOTIFIED) == {"TRADE_SUCCESS": RefundStatus.SUCCEEDED,
                                        "TRADE_CLOSED": RefundStatus.SUCCEEDED}
    for table in (tf.FUND_CHANGE, tf.REFUND_STATUS, tf.REFUND_NOTIFIED):
        with pytest.raises(TypeError):
            table["X"] = RefundStatus.FAILED  # type: ignore[index]
        with pytest.raises(GatewayProtocolError, match="unknown refund state"):
            map_state(table, "REFUND_FAIL", "Alipay", "refund state")
    # the refund error table's codes each have a remedy a person can act on
    assert set(tf.REFUND_REMEDIES) == {
        "ACQ.SELLER_BALANCE_NOT_ENOUGH", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "ACQ.REASON_TRADE_REFUND_FEE_ERR",
        "ACQ.REASON_TRADE_BEEN_FREEZEN", "ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_HAS_FINISHED", "ACQ.TRADE_STATUS_ERROR",
        "ACQ.DISCORDANT_REPEAT_REQUEST", "ACQ.TRADE_NOT_ALLOW_REFUND", "ACQ.INVALID_PARAMETER"}


def test_refund_limits_are_data() -> None:
    assert AlipayAdapter.refund_limits == RefundLimits(window_days=None, minimum_minor=1, partial=True,
                                                       max_per_payment=None)


@pytest.mark.parametrize(("amount", "param"), [(Money(100, "USD"), "currency"), (Money(0, "CNY"), "amount")])
async def test_unsupported_refunds(alipay_adapter: AlipayAdapter, amount: Money, param: str) -> None:
    refund = RefundRequest("rf_" + "0" * 26, ref_of(make_request()), amount)
    with pytest.raises(UnsupportedOperation) as raised:
        await alipay_adapter.refund(refund)
    assert raised.value.param == param


async def test_refund_notifications(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request, 1000)
    await alipay_adapter.refund(refund)
    form = alipay_emulator.signed_notification(request.payment_id, "TRADE_SUCCESS")
    assert form["out_biz_no"] == refund.refund_no and form["refund_fee"] == "10.00"
    assert len(form["gmt_refund"]) == 23  # yyyy-MM-dd HH:mm:ss.SSS
    event = await alipay_adapter.parse_webhook({}, urlencode(form).encode())
    assert event is not None and event.state is not None and event.refund is not None
    assert event.state.status is Status.SUCCEEDED and event.state.amount == Money(8900, "CNY")
    assert event.refund.refund_no == refund.refund_no and event.refund.gateway_state == "TRADE_SUCCESS"

    without_id = alipay_emulator.signed_notification(request.payment_id, "TRADE_SUCCESS", out_biz_no=None,
                                                     notify_id=None)
    plain = await alipay_adapter.parse_webhook({}, urlencode(without_id).encode())
    assert plain is not None and plain.refund is None  # a refund payrelay did not make (no out_biz_no)

    odd = alipay_emulator.signed_notification(request.payment_id, "TRADE_FINISHED")
    with pytest.raises(WebhookPayloadError, match="refund notification"):
        await alipay_adapter.parse_webhook({}, urlencode(odd).encode())

    forged = dict(form, refund_fee="89.00")
    with pytest.raises(WebhookSignatureError):
        await alipay_adapter.parse_webhook({}, urlencode(forged).encode())
    alipay_emulator.forge_signatures = True
    with pytest.raises(WebhookSignatureError):
        signed_by_another = alipay_emulator.signed_notification(request.payment_id, "TRADE_CLOSED")
        await alipay_adapter.parse_webhook({}, urlencode(signed_by_another).encode())


async def test_refund_event_id_falls_back_without_notify_id(alipay_adapter: AlipayAdapter,
                                                            alipay_emulator: AlipayEmulator) -> None:
    request = await paid(alipay_adapter, alipay_emulator)
    refund = refund_of(request, 1000)
    await alipay_adapter.refund(refund)
    form = alipay_emulator.signed_notification(request.payment_id, "TRADE_SUCCESS", notify_id=None)
    event = await alipay_adapter.parse_webhook({}, urlencode(form).encode())
    assert event is not None
    assert event.event_id == f"{request.payment_id}:TRADE_SUCCESS:{refund.refund_no}:{form['gmt_refund']}"


# -- the cryptography verifier accepts exactly what the SDK's verify accepts -----------------------------

_names = st.sampled_from(["app_id", "out_trade_no", "total_amount", "subject", "trade_status", "notify_id",
                          "body", "gmt_payment", "fund_bill_list", "passback_params", "a", "z_"])
_values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_mutations = st.sampled_from(["none", "change", "add", "drop", "blank", "sign_type_rsa", "sign_type_blank",
                              "sign_noise", "sign_cut", "sign_other_key", "sign_padding"])


@settings(max_examples=150, deadline=None)
@given(fields=st.dictionaries(_names, _values, min_size=1), mutation=_mutations, extra=_values)
def test_verifier_matches_the_sdk(alipay_keys: dict[str, tuple[str, str]], fields: dict[str, str],
                                  mutation: str, extra: str) -> None:
    emulator, adapter, other = _verifier_setup(alipay_keys)
    reference = _setup_cache["sdk"]
    form = emulator.sign_fields(fields | {"sign_type": "RSA2"})
    name = sorted(fields)[0]
    if mutation == "change":
        form[name] = form[name] + (extra or "x")
    elif mutation == "add":
        form.setdefault("zz_added", extra)
    elif mutation == "drop" and len(fields) > 1:
        form.pop(name)
    elif mutation == "blank":
        form[name] = ""
    elif mutation == "sign_type_rsa":
        form["sign_type"] = "RSA"
    elif mutation == "sign_type_blank":
        form["sign_type"] = ""
    elif mutation == "sign_noise":
        form["sign"] = "\n".join([form["sign"][:40], form["sign"][40:]]) + " "  # decodebytes skips these
    elif mutation == "sign_cut":
        form["sign"] = form["sign"][:-4]
    elif mutation == "sign_other_key":
        form["sign"] = other.sign_fields(form)["sign"]
    elif mutation == "sign_padding":
        form["sign"] = form["sign"].rstrip("=")

    sign = form.get("sign", "")
    ours = _parse_accepts(adapter, form)
    try:
        theirs = bool(reference.verify({k: v for k, v in form.items() if k != "sign"}, sign))
    except Exception:  # the SDK raises on a foreign sign_type or broken base64: not accepted
        theirs = False
    assert ours == theirs
    if mutation == "none":
        assert ours


def _parse_accepts(adapter: AlipayAdapter, form: dict[str, str]) -> bool:
    """Whether the adapter's real notification parse takes the form's signature: its sign_type
    gate and verifier, on the urlencoded body (random fields may then fail as content: that is a
    verified notification, refused for what it says)."""
    body = urlencode(form).encode()
    assert dict(parse_qsl(body.decode(), keep_blank_values=True)) == form
    try:
        asyncio.run(adapter.parse_webhook({}, body))
    except WebhookSignatureError:
        return False
    except (WebhookPayloadError, WebhookMismatch):  # verified, refused or set aside for what it says
        return True
    return True


_setup_cache: dict[str, Any] = {}


def _verifier_setup(keys: dict[str, tuple[str, str]]) -> tuple[AlipayEmulator, AlipayAdapter, AlipayEmulator]:
    if _setup_cache.get("keys") != keys:  # built once per session's keys (a process may run several sessions)
        emulator = AlipayEmulator(**keys)
        other = AlipayEmulator(platform_key=rsa_pair(), app_key=keys["app_key"])
        adapter = AlipayAdapter(AlipayConfig(emulator.app_id, Secret(emulator.app_private_key),
                                             emulator.alipay_public_key, None), "http://127.0.0.1:9",
                                AiohttpTransport())  # only parses notifications: never opens a connection
        _setup_cache.update(keys=keys, emulator=emulator, adapter=adapter, other=other, sdk=plain_sdk(keys))
    return _setup_cache["emulator"], _setup_cache["adapter"], _setup_cache["other"]


def test_verifier_takes_the_digest_encoding_without_null_like_the_sdk(
        alipay_keys: dict[str, tuple[str, str]]) -> None:
    """PKCS#1 v1.5 signatures whose DigestInfo omits the NULL parameter: pycryptodome (the SDK)
    accepts them, OpenSSL alone does not; the adapter accepts them too, for the same content only."""
    emulator, adapter, _ = _verifier_setup(alipay_keys)
    private = serialization.load_pem_private_key(emulator.alipay_private_key.encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    form = {"out_trade_no": "pr_1", "total_amount": "89.00", "trade_status": "TRADE_SUCCESS", "sign_type": "RSA2"}
    content = tf.signed_content(form).encode()
    info = bytes.fromhex("302f300b0609608648016503040201") + b"\x04\x20" + hashlib.sha256(content).digest()
    size = private.key_size // 8
    encoded = b"\x00\x01" + b"\xff" * (size - len(info) - 3) + b"\x00" + info
    numbers = private.private_numbers()
    signature = pow(int.from_bytes(encoded, "big"), numbers.d, numbers.public_numbers.n).to_bytes(size, "big")
    sign = base64.b64encode(signature).decode()
    sdk = plain_sdk(alipay_keys)
    assert sdk.verify(dict(form), sign) and adapter.verifies(form, sign)
    assert adapter._sdk.verify(dict(form), sign)  # the adapter's SDK client, by its public verify
    tampered = form | {"total_amount": "0.01"}
    assert not sdk.verify(dict(tampered), sign) and not adapter.verifies(tampered, sign)
