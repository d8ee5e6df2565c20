"""Body limits (service.body_limit) over real sockets: oversized bodies are refused with a 413 while
they stream in, or at once when their Content-Length already says so, on every route; and a real
``payrelay serve`` keeps its memory flat under many concurrent oversized bodies."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.cloudreve_auth import sign_post
from service.settings import Settings, SettingsError
from tests.conftest import API_KEY, Relay, StartRelay
from tests.relay_process import RelayProcess

CLOUDREVE_KEY = "limits-communication-key-" + "l" * 16
KIB, MIB = 1024, 1024 * 1024
ROUTES = ["/api/transactions", "/cloudreve/stripe-connect", "/webhooks/stripe"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client got to send before the answer came

    def json(self) -> Any:
        return json.loads(self.body)


def _head(path: str, host: str, *, length: int | None, extra: dict[str, str] | None = None) -> bytes:
    headers = {"Host": host, "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
               **(extra or {})}
    if path.startswith("/cloudreve/"):  # a valid signature over an empty body: the size is what is refused
        headers["Authorization"] = sign_post(CLOUDREVE_KEY, path, {}, b"", int(time.time()) + 600)
    headers.update({"Content-Length": str(length)} if length is not None else {"Transfer-Encoding": "chunked"})
    return (f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def _read_answer(conn: socket.socket, sent: int) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body, sent)


def post_streamed(url: str, path: str, size: int, *, declare: bool, chunk: int = 256 * KIB,
                  pause: float = 0.0) -> Answer:
    """POST ``size`` bytes of body in ``chunk``-sized pieces (declared by Content-Length, or chunked
    transfer coding), stopping as soon as the server answers; returns that answer."""
    host, port = url.removeprefix("http://").split(":")
    piece = b"x" * chunk
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(_head(path, f"{host}:{port}", length=size if declare else None))
        sent = 0
        try:
            while sent < size:
                readable, _, _ = select.select([conn], [], [], pause)
                if readable:
                    break  # answered while the body was still coming
                part = piece[: size - sent]
                conn.sendall(part if declare else b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
            else:
                if not declare:
                    conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading; its answer is already on the way
        return _read_answer(conn, sent)


def assert_too_large(answer: Answer, path: str, limit: int, slack: int = 256 * KIB) -> None:
    """The route's refusal of a body over ``limit``, answered before the client had sent more than
    ``slack`` past it (what socket buffers take before the client sees the answer)."""
    if path.startswith("/cloudreve/"):  # Cloudreve's own format: HTTP 200, the failure in the body
        assert answer.status == 200 and answer.json()["code"] == 41301, answer
        assert str(limit) in answer.json()["error"]
    else:
        assert answer.status == 413, answer
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["code"] == "body_too_large" and str(limit) in problem["detail"]
        assert problem["traceId"] == answer.headers["trace-id"]
    assert answer.sent <= limit + slack, answer.sent  # answered while streaming, not at the end


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator, PAYRELAY_CLOUDREVE_KEY=CLOUDREVE_KEY)


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "limit"), [("/api/transactions", 64 * KIB),
                                              ("/cloudreve/stripe-connect", 64 * KIB),
                                              ("/webhooks/stripe", 256 * KIB),
                                              ("/webhooks/alipay", 256 * KIB)])
def test_an_oversized_body_is_refused_while_it_streams(relay: Relay, path: str, limit: int, declare: bool) -> None:
    assert_too_large(post_streamed(relay.url, path, 8 * MIB, declare=declare, chunk=16 * KIB, pause=0.01),
                     path, limit)


@pytest.mark.parametrize("path", ROUTES)
def test_a_declared_length_over_the_limit_is_refused_before_any_body_comes(relay: Relay, path: str) -> None:
    host, port = relay.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(_head(path, f"{host}:{port}", length=10**12))  # and not a byte of the body
        assert_too_large(_read_answer(conn, 0), path, 64 * KIB if "webhooks" not in path else 256 * KIB)


@pytest.mark.parametrize(("path", "limit"), [("/api/transactions", 64 * KIB), ("/webhooks/stripe", 256 * KIB)])
def test_a_body_at_the_limit_is_read(relay: Relay, path: str, limit: int) -> None:
    answer = post_streamed(relay.url, path, limit, declare=True)
    assert answer.status == 400, answer  # read and refused for what it says: not JSON / not signed


def test_the_variable_caps_every_route(start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, PAYRELAY_CLOUDREVE_KEY=CLOUDREVE_KEY, PAYRELAY_MAX_BODY_BYTES="4096")
    for path in ROUTES:
        assert_too_large(post_streamed(relay.url, path, 5000, declare=True, chunk=1000), path, 4096)
    assert post_streamed(relay.url, "/webhooks/stripe", 4096, declare=True).status == 400


@pytest.mark.parametrize(("value", "says"), [("abc", "whole number"), ("1000", "at least 1024")])
def test_the_variable_must_be_a_sensible_number(value: str, says: str) -> None:
    env = {"PAYRELAY_API_KEYS": f"shop:{API_KEY}", "PAYRELAY_STRIPE_SECRET_KEY": "sk_test_x",
           "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_x", "PAYRELAY_MAX_BODY_BYTES": value}
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)
    assert Settings.from_env({**env, "PAYRELAY_MAX_BODY_BYTES": ""}).max_body_bytes == 256 * KIB


# ---- memory of a real process under many oversized bodies ----------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def served_process(clean_redis: str, stripe_emulator: Any, tmp_path: Path) -> Iterator[RelayProcess]:
    env = {"PAYRELAY_REDIS_URL": clean_redis, "PAYRELAY_API_KEYS": f"shop:{API_KEY}",
           "PAYRELAY_CLOUDREVE_KEY": CLOUDREVE_KEY, **stripe_emulator.env()}
    process = RelayProcess(env, "serve", log_dir=tmp_path)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_memory_stays_flat_under_many_concurrent_oversized_bodies(served_process: RelayProcess) -> None:
    pid = served_process.process.pid
    for path in ROUTES:  # warm up every route once, so that first-use allocations are not counted
        post_streamed(served_process.url, path, 1 * MIB, declare=True)
    before = _rss_kib(pid)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_kib(pid))
            time.sleep(0.02)

    answers: list[tuple[str, Answer | BaseException]] = []

    def one(index: int) -> None:
        path = ROUTES[index % len(ROUTES)]
        try:
            answers.append((path, post_streamed(served_process.url, path, 64 * MIB, declare=index % 2 == 0,
                                                chunk=256 * KIB)))
        except Exception as exc:  # reported by the assertion below
            answers.append((path, exc))

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(120)
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    after = _rss_kib(pid)
    sent = sum(a.sent for _, a in answers if isinstance(a, Answer))
    print(f"\nVmRSS of payrelay serve: {before / 1024:.1f} MiB before, {peak / 1024:.1f} MiB at the peak, "
          f"{after / 1024:.1f} MiB after 20 concurrent 64 MiB bodies ({elapsed:.1f} s; the clients got to "
          f"send {sent / MIB:.1f} MiB in all before each was answered)")
    assert len(answers) == 20
    for path, answer in answers:
        assert isinstance(answer, Answer), (path, answer)
        assert_too_large(answer, path, 64 * KIB if "webhooks" not in path else 256 * KIB, slack=8 * MIB)
    assert peak - before < 50 * 1024, (before, peak)
