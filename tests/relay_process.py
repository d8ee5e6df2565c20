"""`payrelay serve` / `payrelay worker` as real subprocesses, for the tests that need real
processes (signals, several replicas): started with a PAYRELAY_* environment, their JSON logs
kept in a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from sandbox.runner import free_port
from service.settings import Settings, SettingsError
from tests import log_capture

ROOT = Path(__file__).resolve().parent.parent


class RelayProcess:
    """``payrelay serve`` (``command="serve"``) or ``payrelay worker`` in a subprocess.

    By default this Python runs ``-m service.cli command *args`` (serve: on a free port) with this
    process's environment. ``argv`` runs another command line instead (the container image's own
    entrypoint, tests/image/), listening on ``port``, from the environment ``environ``.
    """

    def __init__(self, env: dict[str, str], command: str = "serve", *args: str,
                 log_dir: Path | None = None, argv: Sequence[str] | None = None, port: int | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.port = port or (free_port() if command == "serve" else 0)
        self.url = f"http://127.0.0.1:{self.port}"
        values = {**env}
        if command == "serve":
            values.setdefault("PAYRELAY_PUBLIC_URL", self.url)
        base = os.environ if environ is None else environ
        process_env = {name: value for name, value in base.items() if not name.startswith("PAYRELAY_")}
        process_env.update(values)
        process_env["PYTHONUNBUFFERED"] = "1"
        directory = log_dir or Path(tempfile.mkdtemp(prefix="payrelay-proc-"))
        self.log_path = directory / f"{command}-{self.port or os.getpid()}-{time.monotonic_ns()}.log"
        log_capture.extra_logs.append(self.log_path)  # searched for secrets at the end of the run
        with contextlib.suppress(SettingsError):
            Settings.from_env(values)  # its secrets join those the run's logs must not contain
        self._log = self.log_path.open("wb")
        if argv is None:
            argv = [sys.executable, "-m", "service.cli", command, *args]
            if command == "serve":
                argv += ["--port", str(self.port)]
        self.process = subprocess.Popen(argv, cwd=ROOT, env=process_env, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 20) -> RelayProcess:
        """Serve: /healthz answers. Worker: its log says nothing failed and it stays up a moment."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"payrelay {self.process.args} exited: {self.log()[-2000:]}")
            if not self.port:
                time.sleep(0.5)
                return self
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"payrelay did not become ready: {self.log()[-2000:]}")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30) -> None:
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")
