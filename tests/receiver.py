"""A receiving test server for payrelay's notifications: records every request and answers by a
script (fail, redirect, stall, answer JSON…), then with ``default``.

Serve ``Receiver().app`` with ``sandbox.runner`` (or the ``served`` fixture) and set ``url``. The
server runs in its own thread; ``wait_for`` polls from the test's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None  # a JSON body to answer with
    location: str | None = None  # a redirect target (with a 3xx status)
    stall: float = 0.0  # seconds to hold the request first (``release()`` ends it early)


OK = Reply()


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int = 0  # what it was answered (0 until the reply is chosen)


@dataclass
class Receiver:
    url: str = ""
    default: Reply = OK
    plan: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)

    def then(self, *replies: Reply) -> Receiver:
        """Answer the next requests with ``replies``, in order, then with ``default``."""
        self.plan.extend(replies)
        return self

    def release(self) -> None:
        """End every stall now (and every later one at once)."""
        self._release.set()

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, count: int, timeout: float = 10.0, path: str | None = None) -> list[Received]:
        """Wait until ``count`` requests (to ``path``, if given) have arrived; answer them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received if path is None else self.on(path)
            if len(got) >= count:
                return list(got)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {count} requests arrived in {timeout} s")
            await asyncio.sleep(0.01)

    @property
    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            received = Received(request.method, request.url.path, request.url.query, dict(request.headers),
                                await request.body(), time.monotonic())
            self.received.append(received)
            reply = self.plan.pop(0) if self.plan else self.default
            received.status = reply.status
            deadline = time.monotonic() + reply.stall
            while time.monotonic() < deadline and not self._release.is_set():
                await asyncio.sleep(0.01)
            if reply.json is not None:
                return JSONResponse(reply.json, status_code=reply.status)
            headers = {"Location": reply.location} if reply.location else None
            return Response(b"", status_code=reply.status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["GET", "POST"])])
