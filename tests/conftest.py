"""Shared fixtures: a real Redis (started here when none answers), and payrelay served over real
HTTP in front of the sandbox emulators."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import redis

from adapters import registry
from adapters.transport import AiohttpTransport
from sandbox.base import Emulator
from sandbox.runner import ServerThread, free_port
from service.app import create_app
from service.settings import Settings
from service.store import Store, connect
from tests.receiver import Receiver
from tests.redis_cluster import RedisCluster

# fixtures_wechat first: fixtures_stripe imports its Switchboard
pytest_plugins = ["tests.fixtures_wechat", "tests.fixtures_stripe", "tests.fixtures_alipay", "tests.log_capture"]

API_KEY = "test_key_" + "k" * 24
TEST_DB = 9
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, driven by Playwright (tests/test_browser.py, test_console_browser.py)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """PAYRELAY_TEST_REDIS_URL, else a redis-server of the run's own (nothing else on the machine
    sees or touches its data, and concurrent runs do not meet), else db 9 of 127.0.0.1:6379."""
    given = os.environ.get("PAYRELAY_TEST_REDIS_URL")
    if given:
        yield given
        return
    if shutil.which("redis-server") is not None:
        server = RedisProcess()
        yield server.url
        server.stop()
        return
    if not _answers("127.0.0.1", 6379):
        pytest.exit("redis-server is not installed and no Redis answers on 127.0.0.1:6379", 2)
    yield f"redis://127.0.0.1:6379/{TEST_DB}"


class RedisProcess:
    """A redis-server of the test's own, which the test may stop to see payrelay without Redis."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="payrelay-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def disposable_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    yield server
    server.stop()


# Tests that also run on a 3-master Redis Cluster (same code, same scripts): those of these modules,
# and these tests of other modules, that use clean_redis run twice, as [single] and [cluster].
CLUSTER_MODULES = frozenset({"test_store", "test_expiry", "test_outbox", "test_deliveries", "test_listing"})
CLUSTER_TESTS = ("test_contract::test_expiry", "test_contract::test_paid_just_before_expiry",
                 "test_contract::test_gateway_outage", "test_console::test_sign_ins_are_limited",
                 "test_console::test_each_action_is_confirmed", "test_console::test_dead_notifications")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    name = f"{module}::{metafunc.function.__name__}"
    if "clean_redis" in metafunc.fixturenames and (module in CLUSTER_MODULES or name.startswith(CLUSTER_TESTS)):
        # on the cluster the store's own tests stay in the fast loop; the rest run in the full one
        cluster = "cluster" if module == "test_store" else pytest.param("cluster", marks=pytest.mark.slow)
        metafunc.parametrize("clean_redis", ["single", cluster], indirect=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the run (started on first use, in a temp dir)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli are not installed: no Redis Cluster")
    cluster = RedisCluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def clean_redis(request: pytest.FixtureRequest, redis_url: str) -> str:
    """A Redis emptied for this test: the single Redis's test database, or, where the test is
    parametrized with "cluster", every master of the Redis Cluster (``redis+cluster://`` URL)."""
    if getattr(request, "param", "single") == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return cluster.url
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return redis_url


RETENTION_S = 90 * 86400  # the stores' retention in tests


@pytest.fixture(params=["redis", "embedded"])
async def store(request: pytest.FixtureRequest, clean_redis: str) -> AsyncIterator[Store]:
    """The payment store on a real Redis, then on the embedded store: the same scripts on both."""
    embedded = request.param == "embedded"
    client: Any = fakeredis.FakeAsyncRedis(decode_responses=True) if embedded else connect(clean_redis)
    yield Store(client, RETENTION_S)
    await client.aclose()


@pytest.fixture
async def redis_client(clean_redis: str) -> AsyncIterator[Any]:
    """An async client (redis.asyncio Redis or RedisCluster, as payrelay would connect)."""
    client = connect(clean_redis)
    yield client
    await client.aclose()


@dataclass
class Relay:
    """A payrelay served over real HTTP, with its settings and the emulators it talks to."""

    url: str
    settings: Settings
    app: Any
    emulators: dict[str, Emulator]
    env: dict[str, str]  # the PAYRELAY_* variables it runs with, for processes of the same setup

    def client(self, api_key: str = API_KEY) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"},
                                 timeout=30)


StartRelay = Callable[..., Relay]


@pytest.fixture
def start_relay(clean_redis: str) -> Iterator[StartRelay]:
    """start_relay(*emulators, embedded=False, workers=True, **env) → a payrelay in front of
    already served emulators.

    Each emulator must be served (sandbox.runner) before; this binds it to payrelay's webhook
    URL. ``env`` overrides PAYRELAY_* variables; ``embedded`` runs it on the embedded store;
    ``workers=False`` leaves the background work to other processes; ``worker_options``: the
    workers' timings (``create_app``).
    """
    with ExitStack() as stack:

        def start(*emulators: Emulator, embedded: bool = False, workers: bool = True,
                  worker_options: dict[str, dict[str, Any]] | None = None, **env: str) -> Relay:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            values = {
                "PAYRELAY_PUBLIC_URL": url,
                "PAYRELAY_API_KEYS": f"shop:{API_KEY},other:other_key_{'o' * 24}",
            }
            if not embedded:
                values["PAYRELAY_REDIS_URL"] = clean_redis
            for emulator in emulators:
                emulator.bind(emulator.base_url, f"{url}/webhooks/{registry.BY_TYPE[emulator.gateway_type].webhook}")
                values.update(emulator.env())
            values.update(env)
            settings = Settings.from_env(values)
            app = create_app(settings, run_workers=workers, worker_options=worker_options)
            server = ServerThread(app, port=port).start()
            stack.callback(server.stop)
            return Relay(url, settings, app, {e.gateway_type: e for e in emulators}, values)

        yield start


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (Playwright's Browser), closed after the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                    headless=True)
        yield launched
        await launched.close()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    """An HTTP transport for the adapters a test builds itself, closed after the test."""
    made = AiohttpTransport()
    yield made
    await made.aclose()


@pytest.fixture
def served() -> Iterator[Callable[[Any], ServerThread]]:
    """served(app) → a ServerThread for any ASGI app, stopped after the test."""
    with ExitStack() as stack:

        def serve(app: Any) -> ServerThread:
            server = ServerThread(app).start()
            stack.callback(server.stop)
            return server

        yield serve


@pytest.fixture
def receiver(served: Callable[[Any], ServerThread]) -> Receiver:
    receiver = Receiver()
    receiver.url = served(receiver.app).url
    return receiver
