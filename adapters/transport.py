"""The HTTP transport the adapters are built with: one small async interface, its implementation
on httpx's keep-alive, bounded connection pool, and a fake for tests.

    TransportError          no complete answer: connect, send or read failed
    └── TransportTimeout    no complete answer within the request's deadline

Any HTTP status is an answer, not an error. Every body is read to its end before ``request``
returns, so the connection goes back to the pool. Another implementation (aiohttp, say) is one
more :class:`Transport` here and one line in ``adapters.build_adapters``.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import anyio
import httpx

MAX_CONNECTIONS = 64  # to all gateways together; more callers wait for one (within their deadline)
MAX_IDLE_CONNECTIONS = 16
# shorter than servers keep an idle connection (nginx: 75 s), so that we never send a request on
# a connection the server is closing at that moment
IDLE_SECONDS = 5.0


class TransportError(Exception):
    """The request got no complete answer; the gateway may or may not have acted on it."""


class TransportTimeout(TransportError):
    pass


class Headers(Mapping[str, str]):
    """Answer headers, looked up without regard to case; a repeated header joined by ", "."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        joined: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        self._values = joined

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Headers({self._values!r})"


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Headers
    body: bytes


class Transport(abc.ABC):
    """Sends one request and answers its whole response."""

    @abc.abstractmethod
    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float) -> Response:
        """``timeout``: seconds the whole request may take, waiting for a free connection included."""

    async def aclose(self) -> None:  # noqa: B027 - optional: transports without connections keep it
        """Release the connections. Idempotent; a later request opens new ones."""


class HttpxTransport(Transport):
    """httpx's async client: keep-alive connections, at most ``max_connections`` at once."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS, max_idle: int = MAX_IDLE_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_idle,
                                    keepalive_expiry=idle_seconds)
        self._client: httpx.AsyncClient | None = None  # opened on first use, so building costs nothing

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=self._limits)
        try:
            with anyio.fail_after(timeout):
                answer = await self._client.request(method, url, headers=headers, content=content,
                                                    timeout=timeout)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TransportTimeout(f"no answer within {timeout:g} s") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return Response(answer.status_code, Headers(answer.headers.multi_items()), answer.content)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport(Transport):
    """Answers every request with ``handler(request)`` (plain or async); for tests."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float) -> Response:
        answer = self._handler(Request(method, url, dict(headers or {}), content or b""))
        return await answer if inspect.isawaitable(answer) else answer
