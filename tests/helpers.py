"""Helpers the test modules share (no fixtures: those are in conftest.py and fixtures_*.py).

Test modules import from here, never from each other."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from sandbox.base import Emulator
from sandbox.runner import free_port
from service import keys
from service.model import Payment
from service.store import Store
from tests.conftest import Relay

# -- payrelay's API, as the storage app calls it (tests/test_contract.py and the service tests) ---

def order(emulator: Emulator | str, **changes: Any) -> dict[str, Any]:
    """A transaction request for the emulator's gateway (or the paymentGatewayType given)."""
    gateway = emulator if isinstance(emulator, str) else emulator.gateway_type
    stripe = gateway == "stripe-connect"
    body = {
        "transactionId": f"order-{uuid.uuid4().hex[:10]}",
        "amount": "25.00" if stripe else "89.00",
        "currency": "USD" if stripe else "CNY",
        "date": "2026-11-21T10:00:00+08:00",
        "paymentGatewayType": gateway,
        "completePayRedirectUrl": "https://shop.example/done",
        "cancelPayRedirectUrl": "https://shop.example/cancel",
        "onlineScenario": True,
        "customerIdentifier": "buyer@example.com",
        "description": "Pro membership · 10 GB 容量包",
    }
    return body | changes


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def status_of(relay: Relay, payment_id: str, sync: bool = False) -> dict[str, Any]:
    async with relay.client() as client:
        answer = await client.get(f"/api/transactions/{payment_id}", params={"sync": str(sync).lower()})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def create(relay: Relay, body: dict[str, Any]) -> dict[str, Any]:
    async with relay.client() as client:
        answer = await client.post("/api/transactions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


MISSING = ...  # valid(field=MISSING): the field left out


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transactionId": f"order-{uuid.uuid4().hex[:12]}",
        "amount": "25.00",
        "currency": "USD",
        "date": "2026-11-21",
        "paymentGatewayType": "stripe-connect",
        "completePayRedirectUrl": "https://shop.example/done",
        "cancelPayRedirectUrl": "https://shop.example/cancel",
        "onlineScenario": True,
        "customerIdentifier": "buyer@example.com",
        "description": "10 GB storage pack",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


# -- records in the store (tests/test_store.py, tests/test_transition.py) -------------------------

NOW = 1_900_000_000_000


def record(payment_id: str, **fields: str) -> Payment:
    return Payment.from_hash({
        "paymentId": payment_id, "client": "shop", "transactionId": "t1", "gateway": "stripe-connect",
        "amount": "2500", "currency": "USD", "date": "2026-11-21", "description": "10 GB",
        "customerIdentifier": "", "completeUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no",
        "online": "1", "saveMethod": "0", "notifyUrl": "https://shop.example/hook",
        "notifyKind": "generic", "createdAt": str(NOW), "updatedAt": str(NOW), "expiresAt": str(NOW + 1_800_000),
        "status": "creating", "version": "0", "previous": "", "fingerprint": "f1", **fields})


async def reserve(store: Store, fingerprint: str = "f1", now: int = NOW, txn: str = "t1") -> Any:
    bucket = keys.bucket_for("shop", txn)
    pid = keys.new_payment_id(bucket)
    return await store.reserve(record(pid, transactionId=txn, fingerprint=fingerprint), now_ms=now)


async def apply(store: Store, pid: str, **changes: Any) -> Any:
    """The word of the payment's own gateway (the records here are stripe-connect's)."""
    return await store.apply(pid, gateway="stripe-connect", **{"source": "webhook", **changes})


async def opened(store: Store) -> str:
    reservation = await reserve(store)
    await store.finalize(reservation.payment_id, "https://pay.example/x", "cs_1", NOW)
    return reservation.payment_id


# -- Redis as payrelay uses it --------------------------------------------------------------------

async def commands_during(redis_url: str, action: Callable[[], Awaitable[Any]]) -> list[str]:
    """The commands payrelay sent Redis while ``action`` ran, as Redis saw them (MONITOR), by
    name: what its clients sent, not what its scripts ran, nor a new connection's handshake."""
    import redis.asyncio as aioredis

    sentinel = f"end-{uuid.uuid4().hex}"
    seen: list[str] = []
    async with aioredis.from_url(redis_url, decode_responses=True) as client, client.monitor() as monitor:
        await client.ping()  # MONITOR is on once the server answers something after it
        await action()
        await client.echo(sentinel)
        while True:
            command = await monitor.next_command()
            if sentinel in command["command"]:
                return seen
            name = command["command"].split(" ")[0].upper()
            if command["client_type"] != "lua" and name not in HANDSHAKE:
                seen.append(name)


HANDSHAKE = frozenset({"HELLO", "CLIENT", "SELECT", "AUTH", "PING"})


async def due_now(redis: Any, zset: str, member: str) -> None:
    """Make an entry of a schedule due at once and announce it as the scripts do (``keys.wake``),
    so that a sleeping worker wakes: a test's shortcut past a backoff or a lease."""
    await redis.zadd(zset, {member: 0})
    await redis.publish(keys.wake(zset.rpartition(":")[2]), 0)


# -- schedules (tests/test_schedule.py, tests/test_workers.py) -------------------------------------


async def due(redis: Any, bucket: int, entries: dict[str, int]) -> None:
    """Entries in the bucket's due set, each with its payment hash (claims drop those without)."""
    for id_ in entries:
        await redis.hset(keys.payment_prefix(bucket) + id_, "status", "waiting")
    await redis.zadd(keys.due(bucket), entries)


# -- money (tests/test_currencies.py, tests/test_money.py) ------------------------------------------

# ISO 4217, list one, published 2026-01-01: every active code whose minor unit is not 2.
ISO_NOT_TWO = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}


def expected_iso_exponent(currency: str) -> int:
    return next((e for e, codes in ISO_NOT_TWO.items() if currency in codes.split()), 2)


# -- the image's declared facts (tests/test_deploy.py, tests/test_image.py) --------------------------

# Keys, PEMs and secrets: never in a ConfigMap or env file, always a mounted file via NAME_FILE.
SECRET_VARIABLES = frozenset(
    {
        "PAYRELAY_API_KEYS",
        "PAYRELAY_NOTIFY_SECRET",
        "PAYRELAY_CLOUDREVE_KEY",
        "PAYRELAY_CONSOLE_USERS",  # password hashes
        "PAYRELAY_STRIPE_SECRET_KEY",
        "PAYRELAY_STRIPE_WEBHOOK_SECRET",
        "PAYRELAY_ALIPAY_PRIVATE_KEY",
        "PAYRELAY_ALIPAY_PUBLIC_KEY",
        "PAYRELAY_WECHAT_PRIVATE_KEY",
        "PAYRELAY_WECHAT_APIV3_KEY",
        "PAYRELAY_WECHAT_PUBLIC_KEY",
    }
)


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def instructions(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in dockerfile if instruction == name]


@dataclass(frozen=True)
class ImageFacts:
    """What the image offers the deployments: its user, port, health check path, command."""

    uid: int
    gid: int
    port: int
    health_path: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str


def health_url(check: str) -> tuple[int, str]:
    """(port, path) of the loopback URL a HEALTHCHECK command asks."""
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/-]*)", check)
    assert found, f"the HEALTHCHECK asks no loopback URL: {check}"
    return int(found.group(1)), found.group(2)


def image_facts(dockerfile: list[tuple[str, str]]) -> ImageFacts:
    """The facts as the Dockerfile declares them (tests/test_image.py: the built image agrees)."""
    uid, _, gid = instructions(dockerfile, "USER")[-1].partition(":")
    (port,) = instructions(dockerfile, "EXPOSE")[-1].split()
    (healthcheck,) = instructions(dockerfile, "HEALTHCHECK")
    health_port, health_path = health_url(healthcheck)
    assert health_port == int(port), "the HEALTHCHECK asks another port than the one exposed"
    return ImageFacts(int(uid), int(gid or uid), int(port), health_path,
                      tuple(json.loads(instructions(dockerfile, "ENTRYPOINT")[-1])),
                      tuple(json.loads(instructions(dockerfile, "CMD")[-1])), instructions(dockerfile, "WORKDIR")[-1])


# -- the operator console's forms (tests/test_console.py, tests/test_demo.py) ----------------------

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a console page's forms carry."""
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


# -- the customer, over HTTP, on a sandbox's page (for sandboxes running in another process) ---

@dataclass
class _Form:
    action: str
    ids: set[str]  # the form's own id and its buttons'
    hidden: dict[str, str]
    buttons: dict[str, str]  # value → name, of the buttons that have a name


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(found.get("action", ""), {found.get("id", "")}, {}, {}))
        elif self.forms and tag == "input" and found.get("type") == "hidden":
            self.forms[-1].hidden[found.get("name", "")] = found.get("value", "")
        elif self.forms and tag == "button":
            self.forms[-1].ids.add(found.get("id", ""))
            if "name" in found:
                self.forms[-1].buttons[found.get("value", "")] = found["name"]


def pay_on_page(page_url: str) -> httpx.Response:
    """Open a sandbox's payment page (following redirects: Alipay's paymentUrl leads to its
    cashier) and submit what pays: Stripe's form with action=pay, WeChat's button "paid",
    Alipay's pay form. The answer is not followed."""
    with httpx.Client(timeout=30) as client:
        page = client.get(page_url, follow_redirects=True)
        assert page.status_code == 200, page.text[:500]
        parser = _Forms()
        parser.feed(page.text)
        for form in parser.forms:
            data = dict(form.hidden)
            if "paid" in form.buttons:
                data[form.buttons["paid"]] = "paid"
            elif "pay" not in data.values() and not form.ids & {"pay", "pay-form"}:
                continue
            return client.post(urljoin(str(page.url), form.action), data=data)
    raise AssertionError(f"no form that pays on {page_url}: {page.text[:500]}")


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 (sandboxes listen on P, P+1, …)."""
    for _ in range(100):
        first = free_port()
        try:
            with ExitStack() as held:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError(f"no {count} consecutive free ports")
