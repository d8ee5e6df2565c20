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

from adapters.stripe import StripeAdapter
from adapters.transport import HttpxTransport
from sandbox.runner import serving
from sandbox.stripe import StripeEmulator
from service.settings import Secret, StripeConfig

PUBLIC_URL = "http://127.0.0.1:9"  # payrelay's base URL as the adapter is told it; nothing listens


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    """A StripeEmulator served on a loopback port; webhooks go nowhere until bound."""
    emulator = StripeEmulator()
    with serving(emulator.app) as server:
        emulator.bind(server.url, "")
        yield emulator


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
        made.append(StripeAdapter(stripe_config(stripe_emulator, **changes), PUBLIC_URL, HttpxTransport()))
        return made[-1]

    yield make
    for adapter in made:
        await adapter.aclose()


@pytest.fixture
def stripe_adapter(make_stripe_adapter: MakeAdapter) -> StripeAdapter:
    return make_stripe_adapter()
