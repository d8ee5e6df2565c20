"""The operator console in a real browser (Debian's Chromium, driven by Playwright): an operator
signs in, finds a payment by its transactionId, watches it go from waiting to succeeded while the
customer pays on the Stripe sandbox's page in another tab, sends a notification again, refunds the
payment and closes another — every step through the pages' own links, forms and confirmations.
Screenshots of the payments list, a payment's page, the queues and the dashboard, at desktop and
phone sizes, are kept under test-artifacts/console/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.stripe import StripeEmulator
from service import passwords
from tests.conftest import CHROMIUM, Relay, StartRelay
from tests.helpers import create, eventually, order, status_of
from tests.receiver import Receiver, Reply

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
PASSWORD = "operator password"
STRIPE_SHOP = "https://shop.test"  # Stripe redirects only to https: answered inside the browser
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: StripeEmulator, receiver: Receiver) -> Relay:
    receiver.default = Reply(503)  # the storage app is down: its notifications are given up at once
    return start_relay(stripe_emulator, PAYRELAY_CONSOLE_USERS=f"alice:{passwords.hash_password(PASSWORD)}",
                       PAYRELAY_NOTIFY_URL=receiver.url, PAYRELAY_NOTIFY_SECRET="s" * 32,
                       worker_options={"outbox": {"give_up_ms": 0}})


async def _context(browser: Any, size: dict[str, Any]) -> Any:
    context = await browser.new_context(**size)

    async def shop_page(route: Any) -> None:  # the https shop, answered here: no certificate, no DNS
        await route.fulfill(status=200, content_type="text/html", body="<h1 id='back'>Back at the shop</h1>")

    await context.route(f"{STRIPE_SHOP}/**", shop_page)
    return context


async def _sign_in(page: Any, relay: Relay) -> None:
    await page.goto(f"{relay.url}/console")
    await page.wait_for_selector("form[action='/console/signin']")
    await page.fill("#name", "alice")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{relay.url}/console/payments")


async def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _confirm(page: Any, link: str, button: str) -> None:
    """Follow an action's link to its confirmation page, and confirm."""
    await page.click(link)
    await page.wait_for_url("**/confirm?**")
    await page.click(f"form button:has-text('{button}')")
    await page.wait_for_url("**?done=*")


async def _payments(relay: Relay, emulator: StripeEmulator) -> dict[str, dict[str, Any]]:
    """A few payments for the pages to show: paid, waiting, one that failed, one cancelled."""
    made = {}
    for name, outcome in (("paid", "paid"), ("declined", "failed"), ("open", None), ("to_close", None)):
        created = await create(relay, order(emulator, completePayRedirectUrl=f"{STRIPE_SHOP}/done",
                                            cancelPayRedirectUrl=f"{STRIPE_SHOP}/cancel"))
        if outcome:
            await emulator.pay(created["paymentUrl"], outcome)
        made[name] = created
    return made


async def test_an_operator_follows_a_payment_and_acts_on_it(browser: Any, relay: Relay, receiver: Receiver) -> None:
    emulator = relay.emulators["stripe-connect"]
    made = await _payments(relay, emulator)
    body = order(emulator, completePayRedirectUrl=f"{STRIPE_SHOP}/done", cancelPayRedirectUrl=f"{STRIPE_SHOP}/cancel")
    watched = await create(relay, body)
    payment_id = watched["paymentId"]
    context = await _context(browser, DESKTOP)
    page = await context.new_page()
    await _sign_in(page, relay)
    await page.wait_for_selector(f"a:has-text('{payment_id}')")
    await _shot(page, "payments-desktop")
    await page.keyboard.press("Tab")  # the keyboard's first stop skips to the content, and shows itself
    assert await page.evaluate("document.activeElement.textContent") == "Skip to the content"
    assert await page.evaluate("document.activeElement.getBoundingClientRect().left") >= 0
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"

    await page.fill("#q", body["transactionId"])
    await page.press("#q", "Enter")
    await page.wait_for_url("**/console/payments?q=*")
    await page.click(f"a:has-text('{payment_id}')")
    await page.wait_for_url(f"**/console/payments/{payment_id}")
    assert await page.inner_text("#status") == "waiting"
    await page.evaluate("window.stillTheSamePage = true")

    customer = await context.new_page()  # the customer pays in another tab
    await customer.goto(watched["paymentUrl"])
    await customer.click("form:has(input[name=action][value=pay]) button")
    await customer.wait_for_url(f"{STRIPE_SHOP}/done")
    await page.wait_for_selector("#status:has-text('succeeded')", timeout=15_000)
    assert await page.evaluate("window.stillTheSamePage === true")  # followed by the script, not reloaded
    await receiver.wait_for(1)
    await eventually(lambda: _has_redeliver(page), timeout=15)
    await _shot(page, "payment-desktop")

    await _confirm(page, "a:has-text('Redeliver')", "Send again")
    assert "The notification is due again now." in await page.inner_text("main")

    await page.fill("#amount", "5.00")
    await page.fill("#reason", "goodwill")
    await page.click("button:has-text('Refund…')")
    await page.wait_for_url("**/confirm?**")
    assert "goodwill" in await page.inner_text("main")
    await _shot(page, "confirm-refund-desktop")
    await page.click("form button:has-text('Refund')")
    await page.wait_for_url("**?done=refund")
    await page.wait_for_selector("td:has-text('goodwill')")
    async with relay.client() as api:
        refunds = (await api.get(f"/api/transactions/{payment_id}/refunds")).json()["data"]
    assert [(r["amount"], r["reason"]) for r in refunds] == [("5.00", "goodwill")]
    await _shot(page, "payment-refunded-desktop")

    await page.goto(f"{relay.url}/console/payments/{made['to_close']['paymentId']}")
    await _confirm(page, "a:has-text('Close')", "Close it")
    assert await page.inner_text("#status") == "closed"
    assert (await status_of(relay, made["to_close"]["paymentId"]))["status"] == "closed"
    async with relay.client() as api:
        events = (await api.get(f"/api/transactions/{payment_id}/events")).json()["data"]
    assert [(e["actor"], e["action"]) for e in events if e["type"] == "operator"] == [
        ("alice", "redeliver"), ("alice", "refund")]

    await page.click("nav a:has-text('Queues')")
    await page.wait_for_selector("h1:has-text('Queues')")
    await _shot(page, "queues-desktop")
    await page.click("nav a:has-text('Dashboard')")
    await page.wait_for_selector("svg.plot")
    await _shot(page, "dashboard-desktop")
    await context.close()

    phone = await _context(browser, PHONE)
    page = await phone.new_page()
    await _sign_in(page, relay)
    for path, name in (("payments", "payments"), (f"payments/{payment_id}", "payment"), ("queues", "queues"),
                       ("dashboard", "dashboard")):
        await page.goto(f"{relay.url}/console/{path}")
        await _shot(page, f"{name}-phone")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px phone"
    await phone.close()


async def _has_redeliver(page: Any) -> bool:
    return bool(await page.locator("a:has-text('Redeliver')").count())
