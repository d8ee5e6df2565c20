"""The HTTP transport (adapters.transport) on real loopback servers, and what it buys the adapters:
one kept-alive connection for a run of gateway calls, and no worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.alipay.adapter import AlipayAdapter
from adapters.base import Adapter, CreateRequest, Money, PaymentRef, Status
from adapters.stripe.adapter import StripeAdapter
from adapters.transport import (
    AiohttpTransport,
    HttpxTransport,
    Transport,
    TransportTimeout,
    Unreachable,
    UnusableUrl,
)
from adapters.wechat.adapter import WechatAdapter
from sandbox.alipay import AlipayEmulator
from sandbox.runner import free_port, serving
from sandbox.stripe import StripeEmulator
from sandbox.wechat import WechatEmulator, WechatKeys
from tests.fixtures_alipay import alipay_config
from tests.fixtures_stripe import PUBLIC_URL, stripe_config
from tests.fixtures_wechat import wechat_config

CALLS = 10


class Connections:
    """An ASGI app in front of another that notes the client address of every request: one
    address per TCP connection."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.clients: list[tuple[str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.clients.append(tuple(scope["client"]))
        await self.app(scope, receive, send)

    @property
    def opened(self) -> int:
        return len(set(self.clients))


@contextmanager
def no_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Notes every thread started, and every job handed to the event loop's executor, meanwhile."""
    started: list[str] = []
    start = threading.Thread.start

    def noting(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    loop = asyncio.get_running_loop()
    run_in_executor = loop.run_in_executor

    def executing(executor: Any, function: Callable[..., Any], *args: Any) -> Any:
        started.append(f"executor: {function!r}")
        return run_in_executor(executor, function, *args)

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", noting)
        patch.setattr(loop, "run_in_executor", executing)
        yield started


def create_request(currency: str) -> CreateRequest:
    return CreateRequest(
        payment_id=f"pr_00keepalive{uuid.uuid4().hex[:16]}", amount=Money(2500, currency),
        description="10 GB 容量包", complete_url="https://shop.example/done", cancel_url="https://shop.example/cancel",
        expires_at=int(time.time()) + 3600, customer="buyer@example.com",
    )


# (emulator, its adapter on a transport of its own once the emulator is bound, the currency)
Setup = tuple[Any, Callable[[], Adapter], str]


def stripe_setup(keys: None) -> Setup:
    emulator = StripeEmulator()
    return emulator, lambda: StripeAdapter(stripe_config(emulator), PUBLIC_URL, AiohttpTransport()), "USD"


def alipay_setup(keys: dict[str, tuple[str, str]]) -> Setup:
    emulator = AlipayEmulator(**keys)
    return emulator, lambda: AlipayAdapter(alipay_config(emulator), PUBLIC_URL, AiohttpTransport()), "CNY"


def wechat_setup(keys: WechatKeys) -> Setup:
    emulator = WechatEmulator(keys)
    return emulator, lambda: WechatAdapter(wechat_config(emulator), PUBLIC_URL, AiohttpTransport()), "CNY"


SETUPS: dict[str, tuple[Callable[[Any], Setup], str | None]] = {
    "stripe": (stripe_setup, None), "alipay": (alipay_setup, "alipay_keys"), "wechat": (wechat_setup, "wechat_keys"),
}


@pytest.mark.parametrize("gateway", sorted(SETUPS))
async def test_a_run_of_queries_keeps_one_connection_and_no_thread(
    gateway: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expiry sweep's and sync's queries, one after another through one adapter: one TCP
    connection at the gateway for all of them, and no worker thread for any."""
    setup, keys_fixture = SETUPS[gateway]
    emulator, make, currency = setup(request.getfixturevalue(keys_fixture) if keys_fixture else None)
    connections = Connections(emulator.app)
    with serving(connections) as server:
        emulator.bind(server.url, "")
        adapter = make()
        try:
            with no_threads(monkeypatch) as started:
                order = create_request(currency)
                created = await adapter.create(order)
                ref = PaymentRef(order.payment_id, created.gateway_reference, order.amount)
                states = [await adapter.query(ref) for _ in range(CALLS)]
        finally:
            await adapter.aclose()
    assert emulator.calls["query"] == CALLS
    assert {state.status for state in states} == ({None} if gateway == "alipay" else {Status.WAITING})
    assert len(connections.clients) == CALLS + (gateway != "alipay")  # Alipay's create makes no call
    assert connections.opened == 1
    assert started == []


# -- the transport itself ---------------------------------------------------------------------------


@pytest.fixture
def echo() -> Iterator[tuple[str, Connections, dict[str, Any]]]:
    """(URL, the connections it saw, knobs): answers a POST's body, after ``delay`` seconds."""
    knobs: dict[str, Any] = {"delay": 0.0, "in_flight": 0, "most_in_flight": 0}

    async def answer(request: Request) -> Response:
        body = await request.body()
        knobs["in_flight"] += 1
        knobs["most_in_flight"] = max(knobs["most_in_flight"], knobs["in_flight"])
        try:
            await asyncio.sleep(knobs["delay"])
            return Response(b"echo:" + body + b"x" * 100_000, status_code=int(request.query_params.get("status", 200)),
                            headers={"X-Answer": "yes", "X-Query": request.scope["query_string"].decode()})
        finally:
            knobs["in_flight"] -= 1

    connections = Connections(Starlette(routes=[Route("/echo", answer, methods=["GET", "POST"])]))
    with serving(connections) as server:
        yield server.url + "/echo", connections, knobs


@pytest.fixture(params=[AiohttpTransport, HttpxTransport])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """A transport of at most two connections: the one payrelay runs on, and the alternative the
    bench measures it against."""
    made = request.param(max_connections=2)
    yield made
    await made.aclose()


async def test_any_status_is_an_answer_with_its_whole_body(pool: Transport, echo: Any) -> None:
    url, connections, _ = echo
    for status in (200, 404, 503):
        answer = await pool.request("POST", f"{url}?status={status}", content=b"ping", timeout=5)
        assert answer.status == status and answer.body == b"echo:ping" + b"x" * 100_000
        assert answer.headers["x-answer"] == answer.headers["X-Answer"] == "yes" and "X-ANSWER" in answer.headers
    assert connections.opened == 1  # each body read to its end: the connection went back to the pool


async def test_unreachable_is_a_transport_error(pool: Transport) -> None:
    with pytest.raises(Unreachable):
        await pool.request("GET", f"http://127.0.0.1:{free_port()}/", timeout=5)
    for unusable in ("not a url", "ftp://127.0.0.1/x", "http://[::1/"):
        with pytest.raises(UnusableUrl):
            await pool.request("GET", unusable, timeout=5)


async def test_the_deadline_covers_the_whole_request(pool: Transport, echo: Any) -> None:
    url, _, knobs = echo
    knobs["delay"] = 1.0
    started = time.monotonic()
    with pytest.raises(TransportTimeout):
        await pool.request("GET", url, timeout=0.2)
    assert time.monotonic() - started < 0.8


@pytest.mark.slow  # a 6-second deadline, run out
async def test_a_long_deadline_is_kept_to_the_fraction_of_a_second(pool: Transport, echo: Any) -> None:
    """aiohttp rounds a timeout over 5 s up to a whole second of the loop's clock unless told not to:
    the 10 s Stripe calls then waited up to 11 s. Started just past a whole second, where that
    rounding adds the most, the deadline still falls when it is due."""
    url, _, knobs = echo
    knobs["delay"] = 7.5
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.05 - loop.time() % 1)
    started = loop.time()
    with pytest.raises(TransportTimeout):
        await pool.request("GET", url, timeout=6)
    assert loop.time() - started < 6.4


async def test_the_pool_is_bounded(pool: Transport, echo: Any) -> None:
    url, connections, knobs = echo
    knobs["delay"] = 0.1
    answers = await asyncio.gather(*(pool.request("GET", url, timeout=5) for _ in range(6)))
    assert {answer.status for answer in answers} == {200}
    assert knobs["most_in_flight"] <= 2 and connections.opened <= 2


async def test_aclose_releases_and_a_later_request_opens_again(pool: Transport, echo: Any) -> None:
    url, connections, _ = echo
    await pool.request("GET", url, timeout=5)
    await pool.aclose()
    await pool.aclose()
    assert (await pool.request("GET", url, timeout=5)).status == 200
    assert connections.opened == 2


async def test_a_body_past_the_limit_is_cut_and_the_next_answer_is_whole(pool: Transport, echo: Any) -> None:
    url, _, _ = echo
    for _ in range(3):  # the cut answer's connection is closed, or reused only once its body had all arrived
        cut = await pool.request("POST", url, content=b"ping", timeout=5, limit=100)
        assert cut.cut and cut.body == b"echo:ping" + b"x" * 91
        whole = await pool.request("POST", url, content=b"pong", timeout=5, limit=200_000)
        assert not whole.cut and whole.body == b"echo:pong" + b"x" * 100_000


async def test_a_url_is_sent_exactly_as_given(pool: Transport, echo: Any) -> None:
    url, _, _ = echo
    query = "sign=a%2Bb%2F%3D&biz_content=%7B%22x%22%3A1%7D&t=2026-12-01+10%3A00%3A00&status=200"
    answer = await pool.request("GET", f"{url}?{query}", timeout=5)
    assert answer.headers["x-query"] == query  # a signed query string is not re-quoted on the way
