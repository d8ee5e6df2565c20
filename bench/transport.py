"""Outbound HTTP clients, measured (issue 15 item 2): ``count`` requests with ``in_flight`` at once
against a local server; per client, its process's CPU time per request and its throughput.

Each measurement runs in a process of its own, on uvloop as payrelay's ``serve`` does, so the CPU
is that client's alone: ``python -m bench.transport CLIENT METHOD URL COUNT IN_FLIGHT`` (the body,
if any, on stdin) prints one JSON line. ``clients()`` names every candidate: httpx with pools of
8, 32 and 64 connections, aiohttp, aiosonic and curl_cffi where installed, and payrelay's own
``adapters.transport`` implementations (what the adapters and the outbox actually use).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from adapters import transport

WARM = 200  # requests before the clock starts: connections opened, code paths warm
TIMEOUT = 10.0
# a request answers its status code
Send = Callable[[str, str, bytes, dict[str, str]], Awaitable[int]]


@contextlib.asynccontextmanager
async def httpx_client(pool: int) -> AsyncIterator[Send]:
    import httpx

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT) as client:
        async def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> int:
            return (await client.request(method, url, content=body or None, headers=headers)).status_code

        yield send


@contextlib.asynccontextmanager
async def aiohttp_client() -> AsyncIterator[Send]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=transport.MAX_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        async def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> int:
            async with session.request(method, url, data=body or None, headers=headers) as answer:
                await answer.read()
                return answer.status

        yield send


@contextlib.asynccontextmanager
async def aiosonic_client() -> AsyncIterator[Send]:
    import aiosonic
    from aiosonic.pools import PoolConfig

    connector = aiosonic.TCPConnector({":default": PoolConfig(size=transport.MAX_CONNECTIONS)})
    async with aiosonic.HTTPClient(connector) as client:
        async def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> int:
            answer = await client.request(url, method=method, data=body or None, headers=headers)
            await answer.content()
            return int(answer.status_code)

        yield send


@contextlib.asynccontextmanager
async def curl_cffi_client() -> AsyncIterator[Send]:
    from curl_cffi.requests import AsyncSession

    async with AsyncSession(max_clients=transport.MAX_CONNECTIONS, timeout=TIMEOUT) as session:
        async def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> int:
            answer = await session.request(method, url, data=body or None, headers=headers)
            return int(answer.status_code)

        yield send


def transport_client(kind: type[transport.Transport]) -> Callable[[], contextlib.AbstractAsyncContextManager[Send]]:
    @contextlib.asynccontextmanager
    async def made() -> AsyncIterator[Send]:
        client = kind()  # with the defaults payrelay builds it with
        try:
            async def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> int:
                answer = await client.request(method, url, headers=headers, content=body or None, timeout=TIMEOUT)
                return answer.status

            yield send
        finally:
            await client.aclose()

    return made


def clients() -> dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Send]]]:
    found: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Send]]] = {
        f"httpx (pool {pool})": lambda pool=pool: httpx_client(pool) for pool in (8, 32, 64)}
    for name, module, make in (("aiohttp", "aiohttp", aiohttp_client), ("aiosonic", "aiosonic", aiosonic_client),
                               ("curl_cffi", "curl_cffi", curl_cffi_client)):
        if importlib.util.find_spec(module) is not None:
            found[name] = make
    for name, kind in inspect.getmembers(transport, inspect.isclass):
        real = issubclass(kind, transport.Transport) and not inspect.isabstract(kind)
        if real and kind is not transport.MockTransport:
            found[f"payrelay {name}"] = transport_client(kind)
    return found


async def measure(client: str, method: str, url: str, count: int, in_flight: int, body: bytes) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} if body else {}
    statuses: dict[int, int] = {}
    async with clients()[client]() as send:
        async def lane(todo: list[int]) -> None:
            while todo:
                todo.pop()
                status = await send(method, url, body, headers)
                statuses[status] = statuses.get(status, 0) + 1

        warm = list(range(WARM))
        await asyncio.gather(*(lane(warm) for _ in range(in_flight)))
        statuses.clear()
        todo = list(range(count))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane(todo) for _ in range(in_flight)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"client": client, "requests": count, "in_flight": in_flight, "seconds": round(wall, 3),
            "per_s": round(count / wall, 1), "cpu_us_per_request": round(cpu / count * 1e6, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def main() -> None:
    client, method, url, count, in_flight = sys.argv[1:6]
    body = sys.stdin.buffer.read()
    run = measure(client, method, url, int(count), int(in_flight), body)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run)
    else:
        result = uvloop.run(run)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
