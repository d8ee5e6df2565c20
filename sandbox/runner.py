"""Serve an ASGI app with uvicorn on a loopback port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

KEEP_ALIVE_SECONDS = 30


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A uvicorn server running ``app`` in a daemon thread; ``url`` is its base URL."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        # idle connections stay open longer than any client keeps one (httpx: 5 s), so that a client
        # never sends a request on a connection the server is closing at that moment
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="auto",
                                timeout_keep_alive=KEEP_ALIVE_SECONDS)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"serve:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(app: Any, host: str = "127.0.0.1", port: int | None = None) -> Iterator[ServerThread]:
    server = ServerThread(app, host, port).start()
    try:
        yield server
    finally:
        server.stop()
