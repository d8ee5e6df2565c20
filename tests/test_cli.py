"""The `payrelay` command line as people meet it: --version, help that reads as help, and what
`payrelay worker` says it started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import API_KEY
from tests.relay_process import ROOT, RelayProcess

COMMANDS = ("serve", "worker", "check", "demo", "sandbox")


def payrelay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False, env=os.environ | {"COLUMNS": "200"})


def test_version_is_the_package_version() -> None:
    answer = payrelay("--version")
    assert answer.returncode == 0 and answer.stdout == f"payrelay {version('payrelay')}\n"


def test_help_lists_every_command_with_one_line() -> None:
    answer = payrelay("--help")
    assert answer.returncode == 0
    listed = dict(re.findall(r"^    (\w+) +(.+)$", answer.stdout, re.M))
    assert tuple(listed) == COMMANDS, answer.stdout
    assert all(line.endswith(".") for line in listed.values()), listed  # one sentence each
    assert "--version" in answer.stdout and '"""' not in answer.stdout


@pytest.mark.parametrize(("command", "defaults"), [
    ("serve", {"--host": "127.0.0.1", "--port": "8000", "--workers": "1", "--graceful-timeout": "20",
               "--keep-alive": "75"}),
    ("demo", {"--host": "127.0.0.1", "--port": "8000", "--sandbox-port": "8500", "--notify-port": "8600",
              "--ttl": "1800", "--state-dir": ".payrelay-demo"}),
    ("sandbox", {"--host": "127.0.0.1", "--port": "8500", "--state-dir": ".payrelay-demo",
                 "--relay-url": "http://127.0.0.1:8000"}),
    ("worker", {"--lease-seconds": "0"}),
])
def test_each_command_help_shows_its_defaults(command: str, defaults: dict[str, str]) -> None:
    answer = payrelay(command, "--help")
    assert answer.returncode == 0
    options = re.sub(r"\s+", " ", answer.stdout.partition("options:")[2])
    for option, default in defaults.items():  # the option's own help (no other option in between) ends so
        assert re.search(rf"{option} [A-Z]+ (?:(?! --[a-z]).)*\(default: {re.escape(default)}\)", options), options
    assert "(default: None)" not in options  # --env-file has no default to show


@pytest.mark.slow
def test_worker_says_what_it_started_without_the_redis_password(clean_redis: str, stripe_emulator: Any,
                                                               tmp_path: Path) -> None:
    parts = urlsplit(clean_redis)
    password = "pw-" + "x" * 16
    with_password = f"redis://:{password}@{parts.hostname}:{parts.port}{parts.path}"
    env = {"PAYRELAY_REDIS_URL": with_password, "PAYRELAY_API_KEYS": f"shop:{API_KEY}", **stripe_emulator.env()}
    worker = RelayProcess(env, "worker", "--lease-seconds", "30", log_dir=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while "workers started" not in worker.log():
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.log()
            time.sleep(0.05)
    finally:
        worker.stop()
    said = f"workers started: expiry (lease 30 s), refunds (lease 30 s), outbox (lease 30 s); " \
           f"store: Redis at redis://:***@{parts.hostname}:{parts.port}{parts.path}"
    assert said in worker.log() and password not in worker.log()
