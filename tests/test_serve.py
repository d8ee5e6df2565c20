"""`payrelay serve` keeps idle connections open longer than the proxy in front of it does, so that
the proxy, never payrelay, closes them: a request sent on a connection that the server is closing
at that moment would be lost (the proxy answers 502, an httpx client raises ReadError)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from sandbox.stripe import StripeEmulator
from tests.conftest import API_KEY
from tests.relay_process import RelayProcess

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: payrelay\r\n\r\n"


def _status(conn: socket.socket) -> int | None:
    """Reads one whole response (headers, then Content-Length bytes); None: the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        body += conn.recv(65536)
    return int(lines[0].split()[1])


def _answered_after_idle(relay: RelayProcess, idle: float) -> bool:
    """One request, ``idle`` seconds of silence, then a second request on the same connection."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as conn:
        conn.sendall(REQUEST)
        assert _status(conn) == 200
        time.sleep(idle)
        try:
            conn.sendall(REQUEST)
            return _status(conn) == 200
        except OSError:  # reset by the server
            return False


@pytest.mark.slow  # it waits out keep-alive timeouts: 9 s
@pytest.mark.parametrize(("args", "idle", "kept"), [
    ((), 6.0, True),  # past httpx's 5 s and uvicorn's own default of 5 s
    (("--keep-alive", "1"), 2.5, False),
])
def test_idle_connections_stay_open(clean_redis: str, stripe_emulator: StripeEmulator, tmp_path: Path,
                                    args: tuple[str, ...], idle: float, kept: bool) -> None:
    env = {"PAYRELAY_REDIS_URL": clean_redis, "PAYRELAY_API_KEYS": f"shop:{API_KEY}", **stripe_emulator.env()}
    relay = RelayProcess(env, "serve", *args, log_dir=tmp_path)
    try:
        relay.wait_ready()
        assert _answered_after_idle(relay, idle) is kept
    finally:
        relay.stop()
