"""The operator console (/console) through real HTTP against payrelay with the Stripe sandbox and
the test Redis: sign-in, its limits and cookies, CSRF, the pages, the actions and their timeline,
and that no secret ever reaches a page. Its configuration (PAYRELAY_CONSOLE_USERS) is read here too."""

from __future__ import annotations

import datetime as dt
import html
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.config import ConfigError, Secret
from sandbox.stripe import StripeEmulator
from service import keys, passwords
from service.console.auth import SESSION_MAX_S, Sessions
from service.delivery_store import DeliveryStore
from service.settings import Settings, SettingsError
from tests.conftest import Relay, StartRelay
from tests.helpers import create, csrf_of, eventually, order, status_of
from tests.receiver import Receiver, Reply

PASSWORD = "correct horse battery"
HASHES = {"alice": passwords.hash_password(PASSWORD), "bob": passwords.hash_password("bobs password")}
USERS = " ".join(f"{name}:{hashed}" for name, hashed in HASHES.items())
NOTIFY_SECRET = "notify-secret-" + "n" * 20
CLOUDREVE_KEY = "cloudreve-key-" + "c" * 20
PAYMENT_LINK = re.compile(r'<a class="mono" href="/console/payments/(pr_\w+)">')


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: StripeEmulator, receiver: Receiver) -> Relay:
    return start_relay(stripe_emulator, PAYRELAY_CONSOLE_USERS=USERS, PAYRELAY_NOTIFY_URL=receiver.url,
                       PAYRELAY_NOTIFY_SECRET=NOTIFY_SECRET, PAYRELAY_CLOUDREVE_KEY=CLOUDREVE_KEY)


def browser(relay: Relay, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=relay.url, headers=headers, timeout=30)


async def sign_in(http: httpx.AsyncClient, name: str = "alice", password: str = PASSWORD,
                  **fields: str) -> httpx.Response:
    form = await http.get("/console/signin")
    assert form.status_code == 200, form.text
    return await http.post("/console/signin", data={"csrf": csrf_of(form.text), "name": name,
                                                    "password": password, **fields})


@pytest.fixture
async def operator(relay: Relay) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(relay) as http:
        answer = await sign_in(http)
        assert answer.status_code == 303, answer.text
        yield http


async def session_csrf(http: httpx.AsyncClient, page: str = "/console/payments") -> str:
    answer = await http.get(page)
    assert answer.status_code == 200, answer.text
    return csrf_of(answer.text)


async def timeline(relay: Relay, payment_id: str) -> list[dict[str, str]]:
    """The payment's operator events, as the storage app's API gives its timeline."""
    async with relay.client() as api:
        answer = await api.get(f"/api/transactions/{payment_id}/events")
    assert answer.status_code == 200, answer.text
    return [event for event in answer.json()["data"] if event["type"] == "operator"]


async def act(http: httpx.AsyncClient, payment_id: str, action: str, **query: str) -> httpx.Response:
    """The operator's way: the confirm page, then its form as it is."""
    page = await http.get(f"/console/payments/{payment_id}/confirm", params={"action": action, **query})
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    assert f'action="/console/payments/{payment_id}/{action}"' in page.text
    return await http.post(f"/console/payments/{payment_id}/{action}", data=fields)


# -- on, off, and signing in -----------------------------------------------------------------------

async def test_the_console_is_off_without_users(start_relay: StartRelay, stripe_emulator: StripeEmulator) -> None:
    relay = start_relay(stripe_emulator)
    async with browser(relay) as http:
        for path in ("/console", "/console/signin", "/console/payments", "/console/static/console.css"):
            assert (await http.get(path)).status_code == 404, path
        assert (await http.post("/console/signin", data={"name": "alice"})).status_code == 404


async def test_sign_in_sign_out_and_the_cookie(relay: Relay) -> None:
    async with browser(relay) as http:
        first = await http.get("/console/payments")
        assert first.status_code == 303 and first.headers["location"] == "/console/signin?next=%2Fconsole%2Fpayments"
        answer = await sign_in(http, next="/console/queues")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/queues"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("payrelay_console="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console"} <= flags and "secure" not in flags
        page = await http.get("/console/queues")
        assert page.status_code == 200 and "alice" in page.text
        signed_out = await http.post("/console/signout", data={"csrf": csrf_of(page.text)})
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/console/signin?signedout=1"
        assert (await http.get("/console/queues")).status_code == 303
        assert "You are signed out." in (await http.get("/console/signin?signedout=1")).text


async def test_a_session_replayed_after_sign_out_is_refused(relay: Relay) -> None:
    async with browser(relay) as http:
        await sign_in(http)
        token = http.cookies["payrelay_console"]
        csrf = await session_csrf(http)
        await http.post("/console/signout", data={"csrf": csrf})
    async with browser(relay) as other:
        other.cookies.set("payrelay_console", token, path="/console")
        assert (await other.get("/console/payments")).status_code == 303


async def test_sessions_expire(relay: Relay, redis_client: Any) -> None:
    async with browser(relay) as http:
        await sign_in(http)
        token = http.cookies["payrelay_console"]
        (key,) = [key async for key in redis_client.scan_iter(match="payrelay:console:session:*")]
        assert token not in key and token not in str(await redis_client.hgetall(key))  # only its digest
        assert keys.CONSOLE_SESSION_TTL - 5 < await redis_client.ttl(key) <= keys.CONSOLE_SESSION_TTL
        await redis_client.expire(key, 100)
        assert (await http.get("/console/payments")).status_code == 200
        assert await redis_client.ttl(key) > 100  # renewed by the request
        users = relay.settings.console_users
        assert await Sessions(redis_client, users).session_of(token) is not None
        changed = {**users, "alice": Secret(passwords.hash_password("a new password"))}
        assert await Sessions(redis_client, changed).session_of(token) is None  # and the session is gone
        assert (await http.get("/console/payments")).status_code == 303
        await sign_in(http)
        (key,) = [key async for key in redis_client.scan_iter(match="payrelay:console:session:*")]
        await redis_client.hset(key, "signedInAt", str(int(time.time()) - SESSION_MAX_S - 1))
        assert (await http.get("/console/payments")).status_code == 303
        assert await redis_client.exists(key) == 0


async def test_without_redis_the_console_says_so(start_relay: StartRelay, stripe_emulator: StripeEmulator,
                                                 disposable_redis: Any) -> None:
    relay = start_relay(stripe_emulator, PAYRELAY_CONSOLE_USERS=USERS, PAYRELAY_REDIS_URL=disposable_redis.url)
    async with browser(relay) as http, browser(relay) as anonymous:
        await sign_in(http)
        form = await anonymous.get("/console/signin")
        disposable_redis.stop()
        for answer in (await http.get("/console/payments"), await http.get("/console/signin"),
                       await anonymous.post("/console/signin", data={"csrf": csrf_of(form.text), "name": "alice",
                                                                     "password": PASSWORD})):
            assert answer.status_code == 503, answer.text
            assert "cannot reach Redis" in answer.text or "unreachable" in answer.text
            assert answer.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("name", "password"), [("alice", "wrong"), ("mallory", PASSWORD), ("bob", PASSWORD)])
async def test_a_wrong_name_or_password_is_refused_alike(relay: Relay, name: str, password: str) -> None:
    async with browser(relay) as http:
        answer = await sign_in(http, name, password)
        assert answer.status_code == 401
        assert "That name and password do not match." in answer.text
        assert "payrelay_console" not in http.cookies
        assert (await http.get("/console/payments")).status_code == 303


async def test_the_next_page_stays_in_the_console(relay: Relay) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console\\@evil.example", "/api/x"):
        async with browser(relay) as http:
            answer = await sign_in(http, next=target)
            assert answer.headers["location"] == "/console/payments", target


async def test_the_cookie_is_secure_behind_https(relay: Relay, start_relay: StartRelay,
                                                 stripe_emulator: StripeEmulator) -> None:
    async with browser(relay, **{"X-Forwarded-Proto": "https"}) as http:  # uvicorn trusts 127.0.0.1
        form = await http.get("/console/signin")
        assert "secure" in form.headers["set-cookie"].lower()
        token = form.cookies["payrelay_console_signin"]  # Secure: httpx keeps it from http:// itself
        answer = await http.post("/console/signin", data={"csrf": csrf_of(form.text), "name": "alice",
                                                          "password": PASSWORD},
                                 headers={"Cookie": f"payrelay_console_signin={token}"})
        assert answer.status_code == 303
        assert "; secure" in answer.headers["set-cookie"].lower()
    https = start_relay(stripe_emulator, PAYRELAY_CONSOLE_USERS=USERS, PAYRELAY_PUBLIC_URL="https://pay.example")
    async with browser(https) as http:
        assert "; secure" in (await http.get("/console/signin")).headers["set-cookie"].lower()


async def test_sign_ins_are_limited_per_name_and_per_address(relay: Relay) -> None:
    async with browser(relay) as http:
        for _ in range(5):
            assert (await sign_in(http, "alice", "guess")).status_code == 401
        refused = await sign_in(http, "alice", PASSWORD)  # even the right password, now
        assert refused.status_code == 429
        assert "Too many sign-ins for this name: try again in 15 minutes." in refused.text
        assert 890 < int(refused.headers["retry-after"]) <= 900
        assert "payrelay_console" not in http.cookies
        assert (await sign_in(http, "bob", "bobs password")).status_code == 303  # another name is fine
    async with browser(relay) as http:
        for attempt in range(30 - 7):
            assert (await sign_in(http, f"guess{attempt}", "x")).status_code == 401
        refused = await sign_in(http, "bob", "bobs password")
        assert refused.status_code == 429 and "from this address" in refused.text


# -- CSRF, headers, static files -------------------------------------------------------------------

async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(relay: Relay,
                                                                          operator: httpx.AsyncClient) -> None:
    created = await create(relay, order(relay.emulators["stripe-connect"]))
    payment_id = created["paymentId"]
    for data in ({}, {"csrf": "forged"}, {"csrf": (await session_csrf(operator)) + "x"}):
        answer = await operator.post(f"/console/payments/{payment_id}/close", data=data)
        assert answer.status_code == 403 and "This form is out of date" in answer.text
        assert (await operator.post("/console/signout", data=data)).status_code == 403
    assert (await status_of(relay, payment_id))["status"] == "waiting"
    assert await timeline(relay, payment_id) == []
    assert (await operator.get("/console/payments")).status_code == 200  # still signed in
    async with browser(relay) as http:  # the sign-in form's own token: a cookie and the field, equal
        form = await http.get("/console/signin")
        http.cookies.clear()
        answer = await http.post("/console/signin", data={"csrf": csrf_of(form.text), "name": "alice",
                                                          "password": PASSWORD})
        assert answer.status_code == 403 and "payrelay_console=" not in ";".join(answer.headers.get_list("set-cookie"))


async def test_every_answer_carries_the_security_headers(relay: Relay, operator: httpx.AsyncClient) -> None:
    for path in ("/console/signin", "/console/payments", "/console/queues", "/console/dashboard",
                 "/console/static/console.css", "/console/static/live.js", "/console/payments/pr_00nothing"):
        answer = await operator.get(path)
        csp = answer.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
        if "/static/" not in path:
            assert answer.headers.get("cache-control") == "no-store", path
            assert re.search(r"<script(?![^>]*\bsrc=)", answer.text) is None  # no inline script
            assert " style=" not in answer.text and "<style" not in answer.text
    assert (await operator.get("/console/static/console.css")).headers["content-type"].startswith("text/css")
    assert (await operator.get("/console/static/nothing.css")).status_code == 404


# -- pages -----------------------------------------------------------------------------------------

async def test_payments_list_filters_and_search(relay: Relay, operator: httpx.AsyncClient) -> None:
    emulator = relay.emulators["stripe-connect"]
    paid = await create(relay, order(emulator))
    await emulator.pay(paid["paymentUrl"], "paid")
    waiting = await create(relay, order(emulator))
    await eventually(lambda: _status_is(relay, paid["paymentId"], "succeeded"))
    listed = (await operator.get("/console/payments")).text
    assert listed.index(waiting["paymentId"]) < listed.index(paid["paymentId"])  # newest first
    succeeded = (await operator.get("/console/payments", params={"status": "succeeded"})).text
    assert paid["paymentId"] in succeeded and waiting["paymentId"] not in succeeded
    reference = (await status_of(relay, paid["paymentId"]))["gatewayReference"]
    for text in (paid["paymentId"], reference):
        found = (await operator.get("/console/payments", params={"q": text})).text
        assert paid["paymentId"] in found and waiting["paymentId"] not in found
    for params, says in (({"from": "yesterday"}, "from must be a date such as 2026-11-21"),
                         ({"status": "paid"}, "status must be one of waiting, processing, succeeded"),
                         ({"gateway": "paypal"}, "gateway must be one of stripe-connect"),
                         ({"flag": "late"}, "flag must be one of latePayment"),
                         ({"client": "nobody"}, "client must be one of shop, other"),
                         ({"page": "not-a-token"}, "next_page_token is not one this listing gave")):
        bad = await operator.get("/console/payments", params=params)
        assert bad.status_code == 400 and says in bad.text, params


async def test_payments_come_in_cursor_pages_and_by_date(relay: Relay, operator: httpx.AsyncClient) -> None:
    emulator = relay.emulators["stripe-connect"]
    made = [(await create(relay, order(emulator)))["paymentId"] for _ in range(53)]
    first = await operator.get("/console/payments")
    shown = PAYMENT_LINK.findall(first.text)
    assert len(shown) == 50 and shown[-1] != made[-1] and made[-1] in shown[:2]  # newest first
    next_page = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', first.text)
    assert next_page, "no next page"
    second = await operator.get(html.unescape(next_page.group(1)))
    rest = PAYMENT_LINK.findall(second.text)
    assert len(rest) == 3 and sorted(shown + rest) == sorted(made)  # each once
    assert 'rel="next"' not in second.text and "First page" in second.text
    today = dt.datetime.now(dt.UTC).date()
    assert len(PAYMENT_LINK.findall((await operator.get(f"/console/payments?from={today}&to={today}")).text)) == 50
    before = (await operator.get(f"/console/payments?to={today - dt.timedelta(days=1)}")).text
    assert PAYMENT_LINK.findall(before) == [] and "No payment matches." in before


async def _status_is(relay: Relay, payment_id: str, status: str) -> bool:
    return (await status_of(relay, payment_id))["status"] == status


async def test_the_payment_page_and_its_live_state(relay: Relay, operator: httpx.AsyncClient) -> None:
    emulator = relay.emulators["stripe-connect"]
    created = await create(relay, order(emulator))
    payment_id = created["paymentId"]
    page = await operator.get(f"/console/payments/{payment_id}")
    assert page.status_code == 200 and 'data-live="yes"' in page.text and 'http-equiv="refresh"' in page.text
    assert "/console/static/live.js" in page.text
    before = (await operator.get(f"/console/payments/{payment_id}/live")).json()
    assert before["status"] == "waiting" and before["live"] is True
    await emulator.pay(created["paymentUrl"], "paid")
    await eventually(lambda: _live_status(operator, payment_id, "succeeded"))
    after = (await operator.get(f"/console/payments/{payment_id}/live")).json()
    assert after["stamp"] != before["stamp"]
    assert (await operator.get("/console/payments/pr_00nothing")).status_code == 404
    assert (await operator.get("/console/payments/not-an-id")).status_code == 404
    async with browser(relay) as anonymous:
        assert (await anonymous.get(f"/console/payments/{payment_id}/live")).status_code == 401


async def _live_status(http: httpx.AsyncClient, payment_id: str, status: str) -> bool:
    return bool((await http.get(f"/console/payments/{payment_id}/live")).json()["status"] == status)


async def test_queues_and_dashboard_render(operator: httpx.AsyncClient) -> None:
    queues = await operator.get("/console/queues")
    assert queues.status_code == 200
    for title in ("Late payments", "Integrity errors", "Dead notifications", "Past expiry, not final"):
        assert title in queues.text
    dashboard = await operator.get("/console/dashboard")
    assert dashboard.status_code == 200 and dashboard.text.count("<svg") >= 3
    for title in ("Payments by status", "Conversion per gateway", "Webhook to applied", "Notification attempts"):
        assert title in dashboard.text


async def test_dead_notifications_are_queued_latest_first(start_relay: StartRelay, stripe_emulator: StripeEmulator,
                                                          receiver: Receiver, redis_client: Any) -> None:
    """The outbox gives each notification up at its first failed attempt (no retry window)."""
    relay = start_relay(stripe_emulator, PAYRELAY_CONSOLE_USERS=USERS, PAYRELAY_NOTIFY_URL=receiver.url,
                        PAYRELAY_NOTIFY_SECRET=NOTIFY_SECRET, worker_options={"outbox": {"give_up_ms": 0}})
    receiver.default = Reply(500)
    store = DeliveryStore(redis_client)
    given_up: list[str] = []
    for _ in range(3):
        paid = await create(relay, order(stripe_emulator))
        await stripe_emulator.pay(paid["paymentUrl"], "paid")
        given_up.insert(0, paid["paymentId"])
        await eventually(lambda: _dead_are(store, given_up))
    assert [d.payment_id for d in await store.dead(2)] == given_up[:2]
    async with browser(relay) as operator:
        await sign_in(operator)
        page = (await operator.get("/console/queues")).text
    section = page.split('id="dead-title"')[1].split("</section>")[0]
    assert [section.index(payment_id) for payment_id in given_up] == sorted(
        section.index(payment_id) for payment_id in given_up)
    assert '<span class="count">3</span>' in page.split('href="#dead"')[1]


async def _dead_are(store: DeliveryStore, payment_ids: list[str]) -> bool:
    return [d.payment_id for d in await store.dead(10)] == payment_ids


# -- actions ---------------------------------------------------------------------------------------

async def test_each_action_is_confirmed_then_recorded_with_the_operator(relay: Relay, operator: httpx.AsyncClient,
                                                                        receiver: Receiver) -> None:
    emulator = relay.emulators["stripe-connect"]
    receiver.default = Reply(500)  # the storage app refuses notifications: they stay pending
    to_close = await create(relay, order(emulator))
    page = (await operator.get(f"/console/payments/{to_close['paymentId']}")).text
    assert 'method="post"' not in page.split("</header>")[1]  # every action goes through its confirm page
    closed = await act(operator, to_close["paymentId"], "close")
    assert closed.status_code == 303 and closed.headers["location"].endswith("?done=close")
    assert (await status_of(relay, to_close["paymentId"]))["status"] == "closed"
    assert "Closed." in (await operator.get(closed.headers["location"])).text

    paid = await create(relay, order(emulator))
    payment_id = paid["paymentId"]
    await emulator.pay(paid["paymentUrl"], "paid")
    await eventually(lambda: _status_is(relay, payment_id, "succeeded"))
    assert (await act(operator, payment_id, "sync")).status_code == 303
    await receiver.wait_for(1)
    delivery = re.search(r"delivery=(dlv_[\w-]+)", (await operator.get(f"/console/payments/{payment_id}")).text)
    assert delivery, "no notification to redeliver"
    assert (await act(operator, payment_id, "redeliver", delivery=delivery.group(1))).status_code == 303
    refunded = await act(operator, payment_id, "refund", amount="10.00", reason="customer asked")
    assert refunded.status_code == 303
    async with relay.client() as api:
        refunds = (await api.get(f"/api/transactions/{payment_id}/refunds")).json()["data"]
    assert [(r["amount"], r["reason"]) for r in refunds] == [("10.00", "customer asked")]

    closing = await timeline(relay, to_close["paymentId"])
    assert [(e["actor"], e["action"]) for e in closing] == [("alice", "close")]
    events = await timeline(relay, payment_id)
    assert [(e["actor"], e["action"]) for e in events] == [("alice", "sync"), ("alice", "redeliver"),
                                                          ("alice", "refund")]
    assert events[1]["deliveryId"] == delivery.group(1)
    assert (events[2]["amount"], events[2]["reason"], events[2]["refundId"]) == (
        "10.00", "customer asked", refunds[0]["refundId"])
    page = (await operator.get(f"/console/payments/{payment_id}")).text
    assert "customer asked" in page and "alice" in page


async def test_refused_actions_change_nothing(relay: Relay, operator: httpx.AsyncClient) -> None:
    emulator = relay.emulators["stripe-connect"]
    paid = await create(relay, order(emulator))
    payment_id = paid["paymentId"]
    await emulator.pay(paid["paymentUrl"], "paid")
    await eventually(lambda: _status_is(relay, payment_id, "succeeded"))
    csrf = await session_csrf(operator)
    close = await operator.post(f"/console/payments/{payment_id}/close", data={"csrf": csrf})
    assert close.status_code == 409 and "close is not possible now" in close.text
    confirm = await operator.get(f"/console/payments/{payment_id}/confirm", params={"action": "close"})
    assert confirm.status_code == 409
    for amount, says in (("-1", "amount"), ("1.001", "amount")):
        answer = await operator.get(f"/console/payments/{payment_id}/confirm", params={"action": "refund",
                                                                                        "amount": amount})
        assert answer.status_code == 400 and says in answer.text
        posted = await operator.post(f"/console/payments/{payment_id}/refund", data={"csrf": csrf, "amount": amount})
        assert posted.status_code == 400
    unknown = await operator.post(f"/console/payments/{payment_id}/explode", data={"csrf": csrf})
    assert unknown.status_code == 404
    redeliver = await operator.post(f"/console/payments/{payment_id}/redeliver", data={"csrf": csrf,
                                                                                       "delivery": "dlv_nope"})
    assert redeliver.status_code in (404, 409)
    assert await timeline(relay, payment_id) == []
    async with relay.client() as api:
        assert (await api.get(f"/api/transactions/{payment_id}/refunds")).json()["data"] == []
    over = await act(operator, payment_id, "refund", amount="999.00")  # refused by the gateway side: recorded
    assert over.status_code == 409 and "remains to refund" in over.text
    assert [(e["action"], e.get("outcome")) for e in await timeline(relay, payment_id)] == [
        ("refund", None), ("refund", "refused")]


# -- no secret on any page ------------------------------------------------------------------------

async def test_no_secret_on_any_page(relay: Relay, operator: httpx.AsyncClient, receiver: Receiver) -> None:
    emulator = relay.emulators["stripe-connect"]
    paid = await create(relay, order(emulator, notifyUrl=f"{receiver.url}/hook?token=url-secret-token"))
    await emulator.pay(paid["paymentUrl"], "paid")
    await eventually(lambda: _status_is(relay, paid["paymentId"], "succeeded"))
    await receiver.wait_for(1)
    waiting = await create(relay, order(emulator))
    payment_id = paid["paymentId"]
    pages = ["/console/signin", "/console/payments", f"/console/payments?q={payment_id}", "/console/queues",
             "/console/dashboard", f"/console/payments/{payment_id}", f"/console/payments/{waiting['paymentId']}",
             f"/console/payments/{payment_id}/live", f"/console/payments/{payment_id}/confirm?action=refund",
             f"/console/payments/{waiting['paymentId']}/confirm?action=close"]
    rendered = [(await operator.get(page)).text for page in pages]
    rendered.append((await act(operator, payment_id, "refund", amount="1.00")).text)
    api_keys = [key.reveal() for client in relay.settings.clients for key in client.keys]
    configured = [value for name, value in relay.env.items() if name.endswith(("_KEY", "_SECRET"))]
    hash_parts = [part for hashed in HASHES.values() for part in hashed.split("$")[-2:]]  # salts, digests
    secrets = [*api_keys, NOTIFY_SECRET, CLOUDREVE_KEY, "url-secret-token", *configured, *HASHES.values(),
               *hash_parts]
    assert len(api_keys) == 2 and len(configured) >= 2
    for secret in secrets:
        for page, text in zip([*pages, "refund"], rendered, strict=True):
            assert secret not in text, (page, secret[:12])


# -- configuration ---------------------------------------------------------------------------------

BASE = {"PAYRELAY_API_KEYS": "shop:k", "PAYRELAY_STRIPE_SECRET_KEY": "sk_test_x",
        "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_x"}
SCRYPT = ("$scrypt$ln=10,r=8,p=16$TmFDbA$"  # RFC 7914's "password" / "NaCl" vector
          "/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWIurzDZLiKjiG/xCSedmDDaxyevuUqD7m2DYMvfoswGQA")


@pytest.mark.parametrize("separated", [",", "\n", " ", ",\n"])
def test_console_users_are_read_whatever_separates_them(separated: str) -> None:
    value = separated.join([f"alice:{HASHES['alice']}", f"bob.smith@ops:{SCRYPT}", f"carol:{HASHES['bob']}"])
    users = Settings.from_env(BASE | {"PAYRELAY_CONSOLE_USERS": value}).console_users
    assert list(users) == ["alice", "bob.smith@ops", "carol"]
    assert users["alice"].reveal() == HASHES["alice"] and users["bob.smith@ops"].reveal() == SCRYPT
    assert HASHES["alice"] not in repr(Settings.from_env(BASE | {"PAYRELAY_CONSOLE_USERS": value}))


def test_console_users_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"alice:{HASHES['alice']}\nbob:{SCRYPT}\n")
    users = Settings.from_env(BASE | {"PAYRELAY_CONSOLE_USERS_FILE": str(path)}).console_users
    assert list(users) == ["alice", "bob"]
    assert Settings.from_env(BASE).console_users == {}


@pytest.mark.parametrize(("value", "message"), [
    ("alice", "entry 1 must look like name:<password hash>"),
    (f"alice:{HASHES['alice']} :{SCRYPT}", "entry 2 must look like name:<password hash>"),
    (f"al ice:{SCRYPT}", "entry 1 must look like"),
    (f"ali/ce:{SCRYPT}", "entry 1 must look like"),
    ("alice:hunter2", "the password of 'alice' is not an argon2 or scrypt hash (a password in plain text?)"),
    (f"alice:{SCRYPT},bob:hunter2", "the password of 'alice' is not a well-formed scrypt hash"),
    ("alice:$argon2id$v=19$m=65536,t=3,p=4$short", "the password of 'alice' is not a well-formed argon2 hash"),
    (f"alice:{SCRYPT} alice:{HASHES['bob']}", "the user 'alice' is there twice"),
])
def test_malformed_console_users_are_named_without_their_hash(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(BASE | {"PAYRELAY_CONSOLE_USERS": value})
    (problem,) = caught.value.problems
    assert isinstance(problem, ConfigError) and problem.variable == "PAYRELAY_CONSOLE_USERS"
    assert str(problem).startswith("PAYRELAY_CONSOLE_USERS: ") and message in str(problem)
    for part in ("hunter2", SCRYPT, HASHES["alice"], HASHES["bob"], "short"):
        assert part not in str(problem)


def test_check_reports_console_users_and_hash_password_makes_one(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "service.cli", "hash-password"], input="s3cret pass\n",
                          capture_output=True, text=True, check=False, timeout=60)
    assert made.returncode == 0, made.stderr
    hashed = made.stdout.strip()
    assert hashed.startswith("$argon2id$") and passwords.verify_password(hashed, "s3cret pass")
    empty = subprocess.run([sys.executable, "-m", "service.cli", "hash-password"], input="",
                           capture_output=True, text=True, check=False, timeout=60)
    assert empty.returncode == 2 and "no password given" in empty.stderr
    env = tmp_path / "payrelay.env"
    env.write_text("".join(f"{name}={value}\n" for name, value in BASE.items()) +
                   f"PAYRELAY_CONSOLE_USERS=alice:{hashed},bob:plain-password\n")
    clean = {"PATH": "/usr/bin:/bin"}
    bad = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(env)],
                         capture_output=True, text=True, env=clean, check=False, timeout=60)
    assert bad.returncode == 1 and "PAYRELAY_CONSOLE_USERS: the password of 'alice'" in bad.stderr
    assert hashed not in bad.stderr + bad.stdout and "plain-password" not in bad.stderr
    env.write_text("".join(f"{name}={value}\n" for name, value in BASE.items()) +
                   f"PAYRELAY_CONSOLE_USERS=alice:{hashed}\n")
    ok = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(env)],
                        capture_output=True, text=True, env=clean, check=False, timeout=60)
    assert ok.returncode == 0 and "console: /console for alice" in ok.stdout and hashed not in ok.stdout

