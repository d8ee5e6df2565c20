"""Fixtures for the wechat emulator and adapter tests.

``wechat_emulator`` is a fresh emulator per test, served over real HTTP on a loopback port;
``wechat_receiver`` is a small app that records the callbacks sent to it; ``wechat_adapter`` is a
WechatAdapter configured from the emulator's env(), whose notify URL is the receiver's.
Keys are generated and the two servers started once per session (a uvicorn stop costs ~0.2 s):
each server forwards to the current test's app through a :class:`Switchboard`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

from adapters.base import CreateRequest, Money
from adapters.config import Env
from adapters.transport import AiohttpTransport
from adapters.wechat.adapter import WechatAdapter
from adapters.wechat.config import WechatConfig
from sandbox.keys import rsa_pair
from sandbox.runner import ServerThread
from sandbox.wechat import WechatEmulator, WechatKeys


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackReceiver:
    """Records POST /webhooks/wechat and answers ``status`` (WeChat wants 200 or 204)."""

    url: str = ""
    status: int = 204
    received: list[Received] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            self.received.append(Received(dict(request.headers), await request.body()))
            return Response(status_code=self.status)

        return Starlette(routes=[Route("/webhooks/wechat", record, methods=["POST"])])


def wechat_config(emulator: WechatEmulator) -> WechatConfig:
    """The WeChat settings payrelay would read from the emulator's env()."""
    config = WechatConfig.from_env(Env(emulator.env()))
    assert config is not None
    return config


class Switchboard:
    """An ASGI app served for the whole session that forwards to the running test's app."""

    def __init__(self) -> None:
        self.target: Any = None
        self.url = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.target is None:
            await Response("no test is using this server", 503)(scope, receive, send)
            return
        await self.target(scope, receive, send)


@functools.cache
def stranger_key() -> str:
    """A private key (PEM) WeChat Pay has never heard of, for forged signatures."""
    return rsa_pair()[0]


@pytest.fixture(scope="session")
def wechat_keys() -> WechatKeys:
    return WechatKeys.generate()


@pytest.fixture(scope="session")
def _wechat_boards() -> Iterator[tuple[Switchboard, Switchboard]]:
    boards = (Switchboard(), Switchboard())
    servers = [ServerThread(board).start() for board in boards]
    for board, server in zip(boards, servers, strict=True):
        board.url = server.url
    yield boards
    for server in servers:
        server.stop()


@pytest.fixture
def wechat_emulator(
    wechat_keys: WechatKeys, _wechat_boards: tuple[Switchboard, Switchboard]
) -> Iterator[WechatEmulator]:
    board = _wechat_boards[0]
    emulator = WechatEmulator(wechat_keys)
    board.target = emulator.app
    emulator.bind(board.url, "")
    yield emulator
    board.target = None


@pytest.fixture
def wechat_receiver(_wechat_boards: tuple[Switchboard, Switchboard]) -> Iterator[CallbackReceiver]:
    board = _wechat_boards[1]
    receiver = CallbackReceiver(url=board.url)
    board.target = receiver.app
    yield receiver
    board.target = None


@pytest.fixture
async def wechat_adapter(
    wechat_emulator: WechatEmulator, wechat_receiver: CallbackReceiver
) -> AsyncIterator[WechatAdapter]:
    adapter = WechatAdapter(wechat_config(wechat_emulator), wechat_receiver.url, AiohttpTransport())
    wechat_emulator.bind(wechat_emulator.base_url, adapter.notify_url)
    yield adapter
    await adapter.aclose()


def official_sdk(keys: WechatKeys) -> AsyncWeChatPay:
    """wechatpayv3's own client for these keys, to cross-check the emulator and the adapter."""
    return AsyncWeChatPay(
        WeChatPayType.NATIVE, keys.mchid, keys.merchant_private_key, keys.cert_serial_no, keys.appid,
        keys.apiv3_key, public_key=keys.platform_public_key, public_key_id=keys.public_key_id,
    )


# ---- orders for the tests ------------------------------------------------------------------------

DESCRIPTION = "10 GB 容量包 · " + "存储空间" * 60  # 252 characters, most of them 3 bytes in UTF-8


def order(payment_id: str = "pr_00AbCdEfGhIjKlMnOpQrStUvWx", **changes: object) -> CreateRequest:
    request = CreateRequest(
        payment_id=payment_id,
        amount=Money(2500, "CNY"),
        description=DESCRIPTION,
        complete_url="https://shop.example/done",
        cancel_url="https://shop.example/cancel",
        expires_at=int(time.time()) + 1800,
    )
    return replace(request, **changes)  # type: ignore[arg-type]


async def created(adapter: WechatAdapter, **changes: object) -> tuple[CreateRequest, str]:
    request = order(**changes)
    answer = await adapter.create(request)
    assert answer.payment_url is not None
    return request, answer.payment_url
