"""A real browser (Debian's Chromium, driven by Playwright) on each sandbox gateway's pages: create a
payment through payrelay, open its paymentUrl, press pay, land on the shop's page, and the payment
is succeeded; leave Alipay's cashier and follow its link back; see a closed trade; settle refunds
on the refund pages.

Every page is looked at on a desktop (1280x800) and on a phone (390x844, mobile, 2x): a full-page
screenshot of each is kept under test-artifacts/browser/ as ``<gateway>-<page>-<width>.png``, and
each must fit its width (no horizontal scrolling), label its inputs, name its buttons, reach every
control from the keyboard with a visible focus, and keep its text readable (WCAG AA contrast)."""

from __future__ import annotations

import asyncio
import re
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
WIDTHS: dict[int, dict[str, Any]] = {
    1280: {"viewport": {"width": 1280, "height": 800}},
    390: {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2},
}
VIEWPORT = "width=device-width, initial-scale=1"
CJK = re.compile(r"[\u4e00-\u9fff]")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]

# What the page shows a person, measured in the page: its width, its viewport, inputs without a
# label, buttons and links without a name, and text below WCAG AA contrast (4.5:1; 3:1 for large
# text) against the background it is drawn on (the colours of its ancestors, composited).
MEASURE = """() => {
  const rgba = text => {
    const parts = (text.match(/rgba?\\(([^)]*)\\)/) || [null, '0 0 0 0'])[1].split(/[\\s,\\/]+/).filter(Boolean);
    return [0, 1, 2, 3].map(i => i < parts.length ? Number(parts[i]) : 1);
  };
  const luminance = rgb => rgb.map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const over = (top, below) => below.map((v, i) => top[i] * top[3] + v * (1 - top[3]));
  const backdrop = element => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const colour = rgba(getComputedStyle(e).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] >= 1) break;
    }
    return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255]);
  };
  const low = [];
  for (const element of document.body.querySelectorAll('*')) {
    const text = [...element.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim())
      || element.matches('input:not([type=hidden]), select');
    if (!text || !element.checkVisibility() || element.closest('[disabled], [aria-hidden=true]')) continue;
    const style = getComputedStyle(element);
    const background = backdrop(element);
    const [a, b] = [luminance(over(rgba(style.color), background)), luminance(background)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const needed = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700) ? 3 : 4.5;
    if (ratio < needed) low.push(`${element.tagName} "${element.textContent.trim().slice(0, 40)}" ${ratio.toFixed(2)}`);
  }
  const named = e => (e.innerText || '').trim() || e.getAttribute('aria-label');
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    viewport: (document.querySelector('meta[name=viewport]') || {}).content,
    unlabelled: [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.outerHTML.slice(0, 80)),
    unnamed: [...document.querySelectorAll("button, a[href]")].filter(e => !named(e))
      .map(e => e.outerHTML.slice(0, 80)),
    lowContrast: low,
  };
}"""
# Every control a person can use, numbered in document order (the keyboard's order here)
CONTROLS = """() => [...document.querySelectorAll('a[href], button:not([disabled]), input:not([type=hidden]), select')]
  .filter(e => e.checkVisibility()).map((e, i) => { e.dataset.control = i; return e.outerHTML.slice(0, 60); })"""
FOCUSED = """() => { const e = document.activeElement, style = getComputedStyle(e);
  return [e.dataset.control ?? null, style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0]; }"""


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


async def _status(relay: Relay, path: str, want: str, timeout: float = 10) -> str:
    """The status of the payment (or refund) at ``path`` once it is ``want``, or at the timeout."""
    async with relay.client() as client:
        for _ in range(int(timeout / 0.1)):
            status = (await client.get(path)).json()["status"]
            if status == want:
                break
            await asyncio.sleep(0.1)
    return str(status)


async def _open(browser: Any, width: int, url: str) -> Any:
    context = await browser.new_context(**WIDTHS[width])
    page = await context.new_page()
    await page.goto(url)
    return page


async def _look(page: Any, shot: str) -> None:
    """Keep a screenshot of the page as ``<shot>-<width>.png`` and check what a person meets."""
    width = page.viewport_size["width"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{shot}-{width}.png"), full_page=True)
    seen = await page.evaluate(MEASURE)
    assert seen["viewport"] == VIEWPORT, shot
    assert seen["scrollWidth"] <= seen["innerWidth"] == width, f"{shot} is wider than {width} px: {seen}"
    assert not seen["unlabelled"] and not seen["unnamed"] and not seen["lowContrast"], f"{shot}: {seen}"
    controls = await page.evaluate(CONTROLS)
    reached: dict[str, bool] = {}
    for _ in range(len(controls) + 1):
        await page.keyboard.press("Tab")
        control, outlined = await page.evaluate(FOCUSED)
        if control is not None:
            reached[control] = outlined
    assert sorted(map(int, reached)) == list(range(len(controls))), f"{shot}: the keyboard misses some of {controls}"
    assert all(reached.values()), f"{shot}: focus not visible on some of {controls}"
    await page.evaluate("() => document.activeElement.blur()")


async def test_stripe_checkout(browser: Any, relay: Relay, stripe_emulator: Any) -> None:
    done = f"{STRIPE_SHOP}/done?order=1"
    created = await _create(relay, "stripe-connect", done, f"{STRIPE_SHOP}/cancel")
    [session_id] = stripe_emulator.sessions
    for width in WIDTHS:
        page = await _open(browser, width, created["paymentUrl"])
        heading = await page.inner_text("h1")
        assert "50 GB storage pack" in heading and "US$12.00" in heading, heading
        assert session_id not in heading and created["paymentId"] not in heading
        assert await page.inner_text("#session-id") == session_id  # in small print only
        sizes = await page.evaluate("() => ['#session-id', '#amount'].map(s => "
                                    "parseFloat(getComputedStyle(document.querySelector(s)).fontSize))")
        assert sizes[0] <= 13 < 2 * 13 < sizes[1]
        await _look(page, "stripe-checkout")
        await page.context.close()

    page = await browser.new_page(**WIDTHS[1280])
    landed: list[str] = []

    async def shop_page(route: Any) -> None:  # the https shop, answered here: no certificate, no DNS
        landed.append(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<h1 id='back'>Back at the shop</h1>")

    await page.route(f"{STRIPE_SHOP}/**", shop_page)
    await page.goto(created["paymentUrl"])
    await page.click("form:has(input[name=action][value=pay]) button")
    await page.wait_for_url(f"{STRIPE_SHOP}/**")
    assert landed == [done] and page.url == done
    assert await page.inner_text("#back") == "Back at the shop"
    assert await _status(relay, f"/api/transactions/{created['paymentId']}", "succeeded") == "succeeded"


async def test_alipay_cashier(browser: Any, relay: Relay, shop: str) -> None:
    created = await _create(relay, "alipay-page", f"{shop}/done", f"{shop}/cancel")
    for width in WIDTHS:
        page = await _open(browser, width, created["paymentUrl"])
        assert await page.inner_text("#amount") == "¥12.00"
        assert "50 GB storage pack" in await page.inner_text("h1")
        await _look(page, "alipay-cashier")
    await page.click("#pay")  # on the phone
    await page.wait_for_url(f"{shop}/done**")
    assert "out_trade_no=" + created["paymentId"] in page.url  # Alipay's signed return parameters
    assert "Back at the shop: /done" in await page.inner_text("#back")
    assert await _status(relay, f"/api/transactions/{created['paymentId']}", "succeeded") == "succeeded"


async def test_alipay_leaving_links_back_to_the_shop(browser: Any, relay: Relay, shop: str) -> None:
    created = await _create(relay, "alipay-page", f"{shop}/done", f"{shop}/cancel")
    for width in WIDTHS:
        page = await _open(browser, width, created["paymentUrl"])
        await page.click("#leave")
        await page.wait_for_selector("#back")
        title = await page.inner_text("h1")
        assert CJK.search(title) and "You left the cashier" in title
        await _look(page, "alipay-left")
        await page.click("#back")
        await page.wait_for_url(f"{shop}/**")
        assert page.url == f"{shop}/done"  # the order's return_url, unsigned: nothing was paid
        assert await page.inner_text("#back") == "Back at the shop: /done"
    assert await _status(relay, f"/api/transactions/{created['paymentId']}", "waiting") == "waiting"


async def test_alipay_closed_trade_says_so_in_both_languages(browser: Any, relay: Relay, shop: str) -> None:
    created = await _create(relay, "alipay-page", f"{shop}/done", f"{shop}/cancel")
    opened = await _open(browser, 1280, created["paymentUrl"])  # the cashier opened: the trade exists
    await opened.context.close()
    async with relay.client() as client:
        closed = await client.post(f"/api/transactions/{created['paymentId']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text
    for width in WIDTHS:
        page = await _open(browser, width, created["paymentUrl"])
        message = await page.inner_text("#message")
        assert "交易已关闭" in message and "This transaction has been closed" in message
        assert await page.inner_text("#code") == "ACQ.TRADE_HAS_CLOSE"
        await _look(page, "alipay-closed")


async def test_wechat_native_page(browser: Any, relay: Relay, shop: str, wechat_emulator: Any) -> None:
    created = await _create(relay, "wechat-pay-native", f"{shop}/done", f"{shop}/cancel")
    assert created["paymentUrl"].startswith("weixin://")
    # the customer scans the code URL: the emulator's page for it stands in for the WeChat app
    for width in WIDTHS:
        page = await _open(browser, width, wechat_emulator.page_url(created["paymentUrl"]))
        code = await page.inner_text(".wx-code")
        assert "¥12.00" in code and "微信扫一扫" in code and "Scan the QR code with WeChat" in code
        assert await page.locator(".wx-qr svg").bounding_box() is not None
        await _look(page, "wechat-pay")
    await page.tap("button[value=paid]")  # on the phone
    await page.wait_for_selector("[data-trade-state=SUCCESS]")
    assert await _status(relay, f"/api/transactions/{created['paymentId']}", "succeeded") == "succeeded"
    # Native pay has no redirect: the storage app's own page learns it by asking payrelay


# the refund pages: the gateway, its page for the payment's refunds, what settles the refund as succeeded
REFUND_PAGES = {
    "stripe-refunds": ("stripe-connect", lambda emulator, payment_url: payment_url,  # the paid session's page
                       "button:has-text('succeeds')"),
    "alipay-refunds": ("alipay-page", lambda emulator, _: f"{emulator.base_url}/sandbox/refunds",
                       "form[action$='/settle']:has(input[value=succeeded]) button"),
    "wechat-refunds": ("wechat-pay-native", lambda emulator, _: f"{emulator.base_url}/refunds",
                       "button[name=settle][value=succeed]"),
}


@pytest.mark.parametrize("shot", REFUND_PAGES)
async def test_refund_page_settles_a_refund(browser: Any, relay: Relay, shot: str) -> None:
    gateway, page_of, settle = REFUND_PAGES[shot]
    emulator = relay.emulators[gateway]
    created = await _create(relay, gateway, f"{STRIPE_SHOP}/done", f"{STRIPE_SHOP}/cancel")
    await emulator.pay(created["paymentUrl"], "paid")
    assert await _status(relay, f"/api/transactions/{created['paymentId']}", "succeeded") == "succeeded"
    emulator.refund_outcome = "succeed_later"
    refunds = f"/api/transactions/{created['paymentId']}/refunds"
    async with relay.client() as client:
        answer = await client.post(refunds, json={"refundId": "refund-1", "amount": "5.00"})
    assert answer.status_code == 200 and answer.json()["status"] == "processing", answer.text
    for width in WIDTHS:
        page = await _open(browser, width, page_of(emulator, created["paymentUrl"]))
        assert ("US$5.00" if gateway == "stripe-connect" else "¥5.00") in await page.inner_text("body")
        await _look(page, shot)
    await page.tap(settle)  # on the phone
    await page.wait_for_selector(settle, state="detached")
    assert await _status(relay, f"{refunds}/refund-1", "succeeded") == "succeeded"


async def test_pages_for_what_is_not_there(browser: Any, relay: Relay, stripe_emulator: Any,
                                           wechat_emulator: Any) -> None:
    for url, shot in ((f"{stripe_emulator.base_url}/c/pay/cs_test_nobody", "stripe-missing"),
                      (f"{wechat_emulator.base_url}/qr/nobody", "wechat-expired")):
        for width in WIDTHS:
            page = await _open(browser, width, url)
            await _look(page, shot)
