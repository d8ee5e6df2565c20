"""Fixtures for the Stripe emulator and adapter tests: everything over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.config import Secret
from adapters.stripe.adapter import StripeAdapter
from adapters.stripe.config import StripeConfig
from adapters.transport import AiohttpTransport
from sandbox.runner import ServerThread, serving
from sandbox.stripe import StripeEmulator
from tests.fixtures_wechat import Switchboard

PUBLIC_URL = "http://127.0.0.1:9"  # payrelay's base URL as the adapter is told it; nothing listens


@pytest.fixture(scope="session")
def _stripe_board() -> Iterator[Switchboard]:
    """One server for the run that forwards to the running test's emulator (a uvicorn start and
    stop per test was most of a short test's time)."""
    board = Switchboard()
    server = ServerThread(board).start()
    board.url = server.url
    yield board
    server.stop()


@pytest.fixture
def stripe_emulator(_stripe_board: Switchboard) -> Iterator[StripeEmulator]:
    """A fresh StripeEmulator served on a loopback port; webhooks go nowhere until bound."""
    emulator = StripeEmulator()
    _stripe_board.target = emulator.app
    emulator.bind(_stripe_board.url, "")
    yield emulator
    _stripe_board.target = None


@dataclass
class Receiver:
    """A webhook endpoint that keeps what it receives and answers ``status``."""

    url: str = ""
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Until ``count`` webhooks arrived (events about API calls go out after the answer)."""
        for _ in range(int(timeout / 0.01)):
            if len(self.received) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{count} webhooks did not arrive in {timeout} s")

    async def endpoint(self, request: Request) -> JSONResponse:
        self.received.append((dict(request.headers), await request.body()))
        return JSONResponse({"received": True}, self.status)


@pytest.fixture
def stripe_webhooks(stripe_emulator: StripeEmulator) -> Iterator[Receiver]:
    """A receiver the emulator's webhooks go to."""
    receiver = Receiver()
    with serving(Starlette(routes=[Route("/webhooks/stripe", receiver.endpoint, methods=["POST"])])) as server:
        receiver.url = f"{server.url}/webhooks/stripe"
        stripe_emulator.bind(stripe_emulator.base_url, receiver.url)
        yield receiver


def stripe_config(emulator: StripeEmulator, **changes: Any) -> StripeConfig:
    config = StripeConfig(
        secret_key=Secret(emulator.secret_key),
        webhook_secrets=(Secret(emulator.webhook_secret),),
        connect_account=emulator.connect_account,
        api_base=emulator.base_url,
    )
    return replace(config, **changes)


MakeAdapter = Callable[..., StripeAdapter]


@pytest.fixture
async def make_stripe_adapter(stripe_emulator: StripeEmulator) -> AsyncIterator[MakeAdapter]:
    """make(**StripeConfig changes) → a StripeAdapter on the emulator, closed after the test."""
    made: list[StripeAdapter] = []

    def make(**changes: Any) -> StripeAdapter:
        made.append(StripeAdapter(stripe_config(stripe_emulator, **changes), PUBLIC_URL, AiohttpTransport()))
        return made[-1]

    yield make
    for adapter in made:
        await adapter.aclose()


@pytest.fixture
def stripe_adapter(make_stripe_adapter: MakeAdapter) -> StripeAdapter:
    return make_stripe_adapter()
