"""The Cloudreve v4 custom payment provider bridge over real HTTP, signed as Cloudreve's Go code
signs (``service.cloudreve_auth``, pinned to GATEWAYS.md's vector in test_cloudreve_auth), in
front of the gateway emulators, with a fake Cloudreve that takes payrelay's paid callback."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.base import Emulator
from sandbox.runner import ServerThread, free_port
from service import keys
from service.app import create_app
from service.cloudreve import business_date
from service.cloudreve_auth import sign_get, sign_post
from service.settings import Settings
from tests.receiver import Receiver, Reply

KEY = "test-communication-key-" + "c" * 16
SITE_ID = "b7de8bba-8f86-40fe-8171-c2625b6c4a61"
STRIPE_FAKE_ENV = {"PAYRELAY_STRIPE_SECRET_KEY": "sk_test_" + "x" * 24,
                   "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_x"}
FAST = {"retry_base_ms": 50, "retry_cap_ms": 1_000, "timeout": 1.0}
EMULATORS = ["stripe_emulator", "alipay_emulator", "wechat_emulator"]


def order_no() -> str:
    """A Cloudreve v4 order number: 26 digits, starting with the date and time."""
    return time.strftime("%Y%m%d%H%M%S") + "".join(secrets.choice("0123456789") for _ in range(12))


@dataclass
class Cloudreve:
    """Cloudreve's side of the protocol: signs and sends create and query as Cloudreve v4 does."""

    base_url: str
    key: str = KEY
    site_url: str = "https://cr.example.com"
    site_id: str = SITE_ID

    def headers(self) -> dict[str, str]:
        return {"X-Cr-Version": "4.0.0", "X-Cr-Site-Id": self.site_id, "X-Cr-Site-Url": self.site_url}

    async def create(self, gateway: str, order: dict[str, Any], *, key: str | None = None,
                     expires: int | None = None, sent_body: bytes | None = None,
                     sent_headers: dict[str, str] | None = None) -> httpx.Response:
        path = f"/cloudreve/{gateway}"
        body = json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode()
        headers = self.headers()
        authorization = sign_post(key or self.key, path, headers, body, expires or int(time.time()) + 60)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.post(path, content=sent_body if sent_body is not None else body, headers={
                **(sent_headers or headers), "Authorization": authorization, "User-Agent": "Cloudreve/4.0.0"})

    async def query(self, gateway: str, number: str, *, key: str | None = None,
                    expires: int | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        path = f"/cloudreve/{gateway}"
        sign = sign_get(key or self.key, path, expires or int(time.time()) + 60)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.get(path, params={"order_no": number, "sign": sign},
                                  headers={**(self.headers() if headers is None else headers),
                                           "User-Agent": "Cloudreve/4.0.0"})


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text  # Cloudreve reads only the body
    return dict(response.json())


@pytest.fixture
def relay(clean_redis: str) -> Iterator[Callable[..., str]]:
    """relay(*emulators, **env) → the URL of a payrelay with the bridge on and a fast outbox."""
    with ExitStack() as stack:

        def start(*emulators: Emulator, **env: str) -> str:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            values = {"PAYRELAY_PUBLIC_URL": url, "PAYRELAY_REDIS_URL": clean_redis,
                      "PAYRELAY_CLOUDREVE_KEY": KEY}
            for emulator in emulators:
                emulator.bind(emulator.base_url, f"{url}/webhooks/{emulator.gateway_type.split('-')[0]}")
                values.update(emulator.env())
            values.update(env)
            app = create_app(Settings.from_env(values), idle_seconds=0.02, worker_options={"outbox": FAST})
            stack.callback(ServerThread(app, port=port).start().stop)
            return url

        yield start


@pytest.fixture
def cloudreve_site(served: Callable[[Any], ServerThread]) -> Receiver:
    """Cloudreve's callback endpoint: first a refusal ({"code":1}), then {"code":0}."""
    site = Receiver(default=Reply(json={"code": 0}))
    site.then(Reply(json={"code": 1, "error": "busy"}))
    site.url = served(site.app).url
    return site


@pytest.mark.parametrize("emulator_fixture", EMULATORS)
async def test_create_pay_notify_query(emulator_fixture: str, request: pytest.FixtureRequest,
                                       relay: Callable[..., str], cloudreve_site: Receiver,
                                       redis_client: Any) -> None:
    emulator: Emulator = request.getfixturevalue(emulator_fixture)
    gateway = emulator.gateway_type
    cloudreve = Cloudreve(relay(emulator))
    number = order_no()
    notify_path = f"/api/v4/callback/custom/{number}"
    order = {"name": "Pro <plan> & 10 GB 容量包", "order_no": number,
             "notify_url": cloudreve_site.url + notify_path, "amount": 8900, "currency": "CNY"}

    created = answer(await cloudreve.create(gateway, order))
    assert created["code"] == 0 and isinstance(created["data"], str) and created["data"]
    assert answer(await cloudreve.create(gateway, order)) == created  # a re-sent create: same payment
    if gateway == "wechat-pay-native":
        assert created["data"].startswith("weixin://")  # Cloudreve shows it as a QR code
    assert answer(await cloudreve.query(gateway, number)) == {"code": 0, "data": "waiting"}
    assert cloudreve_site.received == []

    await emulator.pay(created["data"])
    refused, taken = await cloudreve_site.wait_for(2, path=notify_path)  # {"code":1}, then {"code":0}
    for callback in (refused, taken):
        assert callback.method == "GET" and callback.body == b"" and callback.query == ""
        assert callback.headers["user-agent"] == "payrelay"
    assert answer(await cloudreve.query(gateway, number)) == {"code": 0, "data": "PAID"}
    await asyncio.sleep(0.3)
    assert len(cloudreve_site.received) == 2  # {"code":0} ends it
    (key,) = [k for b in range(keys.BUCKETS) async for k in redis_client.scan_iter(match=keys.delivery(b, "*"))]
    delivery = await redis_client.hgetall(key)
    assert delivery["kind"] == "cloudreve" and delivery["type"] == "transaction.succeeded"
    assert delivery["state"] == "delivered" and delivery["attempts"] == "2"
    assert delivery["lastStatusCode"] == "200" and "lastError" not in delivery


@pytest.fixture
def bridge(relay: Callable[..., str]) -> Cloudreve:
    """A bridge whose only gateway (Stripe, unreachable) is never called by these tests."""
    return Cloudreve(relay(**STRIPE_FAKE_ENV))


def stripe_order(**changes: Any) -> dict[str, Any]:
    number = order_no()
    return {"name": "10 GB", "order_no": number, "amount": 8900, "currency": "USD",
            "notify_url": f"https://cr.example.com/api/v4/callback/custom/{number}", **changes}


@pytest.mark.parametrize("how", ["wrong key", "expired", "tampered body", "tampered header", "missing"])
async def test_create_refuses_bad_signatures(bridge: Cloudreve, how: str) -> None:
    order = stripe_order()
    body = json.dumps(order).encode()
    options: dict[str, dict[str, Any]] = {
        "wrong key": {"key": "another-key"},
        "expired": {"expires": int(time.time()) - 1},
        "tampered body": {"sent_body": body.replace(b"8900", b"1")},
        "tampered header": {"sent_headers": {**bridge.headers(), "X-Cr-Site-Url": "https://evil.example"}},
        "missing": {},
    }
    kwargs = options[how]
    if how == "missing":
        async with httpx.AsyncClient(base_url=bridge.base_url) as http:
            response = await http.post("/cloudreve/stripe-connect", content=body, headers=bridge.headers())
    else:
        response = await bridge.create("stripe-connect", order, **kwargs)
    got = answer(response)
    assert got["code"] == 40101 and got["error"] and "data" not in got
    assert KEY not in response.text


@pytest.mark.parametrize("how", ["wrong key", "expired", "missing"])
async def test_query_refuses_bad_signatures(bridge: Cloudreve, how: str) -> None:
    if how == "missing":
        async with httpx.AsyncClient(base_url=bridge.base_url) as http:
            response = await http.get("/cloudreve/stripe-connect", params={"order_no": "1"},
                                      headers=bridge.headers())
    else:
        kwargs: dict[str, Any] = (
            {"key": "another-key"} if how == "wrong key" else {"expires": int(time.time()) - 1})
        response = await bridge.query("stripe-connect", "1", **kwargs)
    assert answer(response)["code"] == 40101


@pytest.mark.parametrize(("gateway", "changes", "code", "says"), [
    ("stripe-connect", {"amount": 0}, 40001, "amount"),
    ("stripe-connect", {"amount": -5}, 40001, "amount"),
    ("stripe-connect", {"amount": "8900"}, 40001, "amount"),
    ("stripe-connect", {"amount": 89.5}, 40001, "amount"),
    ("stripe-connect", {"amount": True}, 40001, "amount"),
    ("stripe-connect", {"currency": "usd"}, 40001, "currency"),
    ("stripe-connect", {"order_no": "has space"}, 40001, "order_no"),
    ("stripe-connect", {"notify_url": "not a url"}, 40001, "notify_url"),
    ("stripe-connect", {"name": 7}, 40001, "name"),
    ("alipay-page", {}, 40001, "alipay-page is not configured"),
    ("paypal", {}, 40001, "paymentGatewayType"),
])
async def test_create_validates_like_the_api(bridge: Cloudreve, gateway: str, changes: dict[str, Any],
                                             code: int, says: str) -> None:
    got = answer(await bridge.create(gateway, stripe_order(**changes)))
    assert got["code"] == code and says in got["error"], got


async def test_stripe_needs_an_https_site(bridge: Cloudreve) -> None:
    bridge.site_url = "http://cr.example.com"
    got = answer(await bridge.create("stripe-connect", stripe_order()))
    assert got["code"] == 40002 and "https" in got["error"]


async def test_a_signed_query_without_any_x_cr_header_is_answered(
        relay: Callable[..., str], stripe_emulator: Emulator) -> None:
    """Only the path is signed on a query, and Cloudreve's query may carry no X-Cr-* header at all:
    the order is found by its order_no alone (one namespace for all of Cloudreve's orders)."""
    cloudreve = Cloudreve(relay(stripe_emulator))
    order = stripe_order()
    created = answer(await cloudreve.create("stripe-connect", order))
    assert created["code"] == 0
    assert answer(await cloudreve.query("stripe-connect", order["order_no"], headers={})) == {
        "code": 0, "data": "waiting"}
    other_site = {**cloudreve.headers(), "X-Cr-Site-Id": "another-site"}  # not signed on a query
    assert answer(await cloudreve.query("stripe-connect", order["order_no"], headers=other_site))["code"] == 0
    assert answer(await cloudreve.query("stripe-connect", order_no(), headers={}))["code"] == 40401
    assert answer(await cloudreve.query("alipay-page", order["order_no"], headers={}))["code"] == 40401


async def test_unknown_order_and_missing_fields(bridge: Cloudreve) -> None:
    assert answer(await bridge.query("stripe-connect", order_no()))["code"] == 40401
    bridge.site_id = ""
    assert answer(await bridge.create("stripe-connect", stripe_order()))["code"] == 40001
    bridge.site_id = SITE_ID
    bridge.site_url = ""
    assert "X-Cr-Site-Url" in answer(await bridge.create("stripe-connect", stripe_order()))["error"]


async def test_bridge_off_without_a_key(relay: Callable[..., str]) -> None:
    cloudreve = Cloudreve(relay(**STRIPE_FAKE_ENV, PAYRELAY_CLOUDREVE_KEY="",
                                PAYRELAY_API_KEYS="shop:key_" + "k" * 24))
    assert answer(await cloudreve.create("stripe-connect", stripe_order()))["code"] == 40301
    assert answer(await cloudreve.query("stripe-connect", "1"))["code"] == 40301


@pytest.mark.parametrize(("number", "date"), [
    ("20250612141601003370839825", "2025-06-12"),  # v4
    ("20230209190648343421", "2023-02-09"),  # v3
    ("20251399000000000000000000", "2026-01-02"),  # not a date: today
    ("abc", "2026-01-02"),
])
def test_business_date_comes_from_the_order_number(number: str, date: str) -> None:
    import datetime as dt

    assert business_date(number, today=dt.date(2026, 1, 2)) == date
