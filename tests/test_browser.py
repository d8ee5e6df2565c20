"""A real browser (Debian's Chromium, driven by Playwright) pays on each sandbox gateway's page:
create a payment through payrelay, open its paymentUrl, press pay, land on the shop's page, and
the payment is succeeded. A screenshot of each checkout page is kept under test-artifacts/."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from sandbox.runner import ServerThread
from tests.conftest import CHROMIUM, Relay, StartRelay

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
STRIPE_SHOP = "https://shop.test"  # Stripe redirects only to https: answered inside the browser

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture
def shop(served: Callable[[Any], ServerThread]) -> str:
    """The storage app's own pages, where the customer comes back to (http, on loopback)."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<h1 id='back'>Back at the shop: {request.url.path}</h1>")

    return served(Starlette(routes=[Route("/{rest:path}", page)])).url


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any, alipay_emulator: Any, wechat_emulator: Any) -> Relay:
    return start_relay(stripe_emulator, alipay_emulator, wechat_emulator)


async def _create(relay: Relay, gateway: str, done: str, cancel: str) -> dict[str, Any]:
    body = {"transactionId": f"web-{uuid.uuid4().hex[:10]}", "amount": "12.00",
            "currency": "USD" if gateway == "stripe-connect" else "CNY", "date": "2026-11-21",
            "paymentGatewayType": gateway, "completePayRedirectUrl": done, "cancelPayRedirectUrl": cancel,
            "onlineScenario": True, "description": "50 GB storage pack"}
    if gateway == "stripe-connect":
        body["customerIdentifier"] = "buyer@example.com"
    async with relay.client() as client:
        answer = await client.post("/api/transactions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _status(relay: Relay, payment_id: str, want: str, timeout: float = 10) -> str:
    async with relay.client() as client:
        for _ in range(int(timeout / 0.1)):
            status = (await client.get(f"/api/transactions/{payment_id}")).json()["status"]
            if status == want:
                break
            await asyncio.sleep(0.1)
    return str(status)


async def _checkout(page: Any, url: str, pay: str, shot: str) -> None:
    await page.goto(url)
    await page.wait_for_selector(pay)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / shot), full_page=True)
    await page.click(pay)


async def test_stripe_checkout(browser: Any, relay: Relay) -> None:
    done = f"{STRIPE_SHOP}/done?order=1"
    created = await _create(relay, "stripe-connect", done, f"{STRIPE_SHOP}/cancel")
    page = await browser.new_page()
    landed: list[str] = []

    async def shop_page(route: Any) -> None:  # the https shop, answered here: no certificate, no DNS
        landed.append(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<h1 id='back'>Back at the shop</h1>")

    await page.route(f"{STRIPE_SHOP}/**", shop_page)
    await _checkout(page, created["paymentUrl"], "form:has(input[name=action][value=pay]) button",
                    "stripe-checkout.png")
    await page.wait_for_url(f"{STRIPE_SHOP}/**")
    assert landed == [done] and page.url == done
    assert await page.inner_text("#back") == "Back at the shop"
    assert await _status(relay, created["paymentId"], "succeeded") == "succeeded"


async def test_alipay_cashier(browser: Any, relay: Relay, shop: str) -> None:
    created = await _create(relay, "alipay-page", f"{shop}/done", f"{shop}/cancel")
    page = await browser.new_page()
    await _checkout(page, created["paymentUrl"], "#pay", "alipay-cashier.png")
    await page.wait_for_url(f"{shop}/done**")
    assert "out_trade_no=" + created["paymentId"] in page.url  # Alipay's signed return parameters
    assert "Back at the shop: /done" in await page.inner_text("#back")
    assert await _status(relay, created["paymentId"], "succeeded") == "succeeded"


async def test_wechat_native_page(browser: Any, relay: Relay, shop: str, wechat_emulator: Any) -> None:
    created = await _create(relay, "wechat-pay-native", f"{shop}/done", f"{shop}/cancel")
    assert created["paymentUrl"].startswith("weixin://")
    page = await browser.new_page()
    # the customer scans the code URL: the emulator's page for it stands in for the WeChat app
    await _checkout(page, wechat_emulator.page_url(created["paymentUrl"]), "button[value=paid]", "wechat-pay.png")
    await page.wait_for_load_state()
    assert await _status(relay, created["paymentId"], "succeeded") == "succeeded"
    # Native pay has no redirect: the storage app's own page learns it by asking payrelay
