"""Fixtures for the alipay emulator and adapter tests.

``alipay_emulator``: a fresh AlipayEmulator served over real HTTP. Keys are generated once per
run and the two servers run for the whole session (starting and stopping uvicorn per test was
most of the run time); each test plugs its own fresh emulator and receiver into them.
``alipay_receiver``: a small server standing in for payrelay's /webhooks/alipay; it records each
notification and answers with ``alipay_adapter.webhook_ok()``.
``alipay_adapter``: an AlipayAdapter pointed at both, on a transport of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.alipay.adapter import AlipayAdapter
from adapters.alipay.config import AlipayConfig
from adapters.config import Secret
from adapters.transport import AiohttpTransport
from sandbox.alipay import AlipayEmulator
from sandbox.keys import rsa_pair
from sandbox.runner import ServerThread


@pytest.fixture(scope="session")
def alipay_keys() -> dict[str, tuple[str, str]]:
    """RSA pairs for Alipay's platform key and the merchant app key, made once per run."""
    return {"platform_key": rsa_pair(), "app_key": rsa_pair()}


class Socket:
    """An ASGI app that forwards to whichever app is plugged in now."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def alipay_sockets() -> Iterator[tuple[tuple[Socket, str], tuple[Socket, str]]]:
    """(emulator socket, its URL), (receiver socket, its URL), served for the whole run."""
    emulator, receiver = Socket(), Socket()
    servers = [ServerThread(emulator).start(), ServerThread(receiver).start()]
    yield (emulator, servers[0].url), (receiver, servers[1].url)
    for server in servers:
        server.stop()


@pytest.fixture
def alipay_emulator(alipay_keys: dict[str, tuple[str, str]], alipay_sockets: Any) -> AlipayEmulator:
    (socket, url), _ = alipay_sockets
    emulator = AlipayEmulator(**alipay_keys)
    socket.app = emulator.app
    emulator.bind(url, "")  # Alipay takes notify_url from each request
    return emulator


@dataclass
class Receiver:
    """What arrived at the stand-in /webhooks/alipay, and what it answers."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    answer: tuple[int, bytes] = (200, b"success")


@pytest.fixture
def alipay_receiver(alipay_sockets: Any) -> Receiver:
    _, (socket, url) = alipay_sockets
    receiver = Receiver(url=url)

    async def webhook(request: Request) -> Response:
        receiver.bodies.append(await request.body())
        status, body = receiver.answer
        return Response(body, status_code=status, media_type="text/plain")

    socket.app = Starlette(routes=[Route("/webhooks/alipay", webhook, methods=["POST"])])
    return receiver


def alipay_config(emulator: AlipayEmulator) -> AlipayConfig:
    env = emulator.env()
    return AlipayConfig(
        app_id=env["PAYRELAY_ALIPAY_APP_ID"],
        private_key=Secret(env["PAYRELAY_ALIPAY_PRIVATE_KEY"]),
        alipay_public_key=env["PAYRELAY_ALIPAY_PUBLIC_KEY"],
        gateway_url=env["PAYRELAY_ALIPAY_GATEWAY_URL"],
        seller_id=env["PAYRELAY_ALIPAY_SELLER_ID"],
    )


@pytest.fixture
async def alipay_adapter(alipay_emulator: AlipayEmulator, alipay_receiver: Receiver) -> AsyncIterator[AlipayAdapter]:
    adapter = AlipayAdapter(alipay_config(alipay_emulator), alipay_receiver.url, AiohttpTransport(), timeout=5)
    yield adapter
    await adapter.aclose()
