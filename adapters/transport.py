"""The HTTP transport the adapters and the outbox are built with: one small async interface, its
implementations on aiohttp's and on httpx's keep-alive, bounded connection pools, and a fake for
tests. ``AiohttpTransport`` is the one payrelay runs on: per request it costs several times less
client CPU than httpx (bench/README.md, "transport"); ``HttpxTransport`` stays as the measured
alternative.

    TransportError          no complete answer: connect, send or read failed
    ├── TransportTimeout    no complete answer within the request's deadline
    ├── Unreachable         no connection could be made (refused, no route, no such host)
    └── UnusableUrl         not a URL the client can send to; nothing was sent

Any HTTP status is an answer, not an error. Every body is read to its end before ``request``
returns, so the connection goes back to the pool; a body longer than the request's ``limit`` is
cut there (``Response.cut``) and its connection closed instead. A URL is sent exactly as given (no
re-quoting: a signed query string stays the one that was signed).
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import aiohttp
import anyio
import httpx
from yarl import URL

MAX_CONNECTIONS = 64  # to all gateways together; more callers wait for one (within their deadline)
MAX_IDLE_CONNECTIONS = 16
# shorter than servers keep an idle connection (nginx: 75 s), so that we never send a request on
# a connection the server is closing at that moment
IDLE_SECONDS = 5.0


class TransportError(Exception):
    """The request got no complete answer; the gateway may or may not have acted on it."""


class TransportTimeout(TransportError):
    pass


class Unreachable(TransportError):
    pass


class UnusableUrl(TransportError):
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
    cut: bool = False  # the body went on past the request's limit; ``body`` is its first bytes


class Transport(abc.ABC):
    """Sends one request and answers its whole response."""

    @abc.abstractmethod
    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float, limit: int | None = None) -> Response:
        """``timeout``: seconds the whole request may take, waiting for a free connection included;
        ``limit``: the most bytes of the body to read (None: all of it)."""

    async def aclose(self) -> None:  # noqa: B027 - optional: transports without connections keep it
        """Release the connections. Idempotent; a later request opens new ones."""


# aiohttp rounds a timeout longer than its ceil_threshold (5 s by default) up to a whole second of
# the loop's clock: a 10 s deadline would fall anywhere up to 11 s
NO_ROUNDING = math.inf


class AiohttpTransport(Transport):
    """aiohttp's client: keep-alive connections, at most ``max_connections`` at once."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS, max_idle: int = MAX_IDLE_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        del max_idle  # aiohttp keeps every connection it has open until idle_seconds pass
        self._max_connections = max_connections
        self._idle_seconds = idle_seconds
        self._session: aiohttp.ClientSession | None = None  # opened on first use, inside the event loop

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float, limit: int | None = None) -> Response:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._idle_seconds)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        try:
            target = URL(url, encoded=True)
            async with self._session.request(method, target, headers=headers, data=content,
                                             allow_redirects=False,
                                             timeout=aiohttp.ClientTimeout(total=timeout, ceil_threshold=NO_ROUNDING)
                                             ) as answer:
                body = await (answer.read() if limit is None else answer.content.read(limit + 1))
                if limit is not None and len(body) > limit:
                    answer.close()  # the rest is not read: this connection cannot be reused
                return _answer(answer.status, Headers(answer.headers.items()), body, limit)
        except TimeoutError as exc:
            raise TransportTimeout(f"no answer within {timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, aiohttp.NonHttpUrlClientError) as exc:  # aiohttp.InvalidURL is a ValueError
            raise UnusableUrl(f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class HttpxTransport(Transport):
    """httpx's async client: keep-alive connections, at most ``max_connections`` at once."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS, max_idle: int = MAX_IDLE_CONNECTIONS,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_idle,
                                    keepalive_expiry=idle_seconds)
        self._client: httpx.AsyncClient | None = None  # opened on first use, so building costs nothing

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float, limit: int | None = None) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=self._limits)
        try:
            with anyio.fail_after(timeout):
                request = self._client.build_request(method, url, headers=headers, content=content, timeout=timeout)
                answer = await self._client.send(request, stream=True)
                try:
                    body = b""
                    async for chunk in answer.aiter_bytes():
                        body += chunk
                        if limit is not None and len(body) > limit:
                            break
                finally:
                    await answer.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TransportTimeout(f"no answer within {timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise UnusableUrl(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return _answer(answer.status_code, Headers(answer.headers.multi_items()), body, limit)

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
                      content: bytes | None = None, timeout: float, limit: int | None = None) -> Response:
        answer = self._handler(Request(method, url, dict(headers or {}), content or b""))
        whole = await answer if inspect.isawaitable(answer) else answer
        return _answer(whole.status, whole.headers, whole.body, limit)


def _answer(status: int, headers: Headers, body: bytes, limit: int | None) -> Response:
    cut = limit is not None and len(body) > limit
    return Response(status, headers, body[:limit] if cut else body, cut)
