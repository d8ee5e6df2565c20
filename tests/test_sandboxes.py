"""`payrelay sandbox` as a user runs it: real processes, real HTTP, the test's Redis. The sandbox
alone, then `payrelay serve --env-file` with the file it wrote: payments on every gateway, paid on
the sandbox's page, moved to succeeded by the sandbox's webhook."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters import registry
from sandbox.runner import free_port
from service.sandboxes import emulators
from service.settings import Settings, read_env_file
from tests.helpers import free_ports, order, pay_on_page
from tests.relay_process import ROOT, RelayProcess

pytestmark = pytest.mark.slow  # drives processes


@dataclass
class Sandbox:
    first_port: int
    state_dir: Path
    process: subprocess.Popen[bytes]
    out: Path

    @property
    def env_path(self) -> Path:
        return self.state_dir / "payrelay.env"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "sandbox", *args]


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Callable[[int, str], Sandbox]]:
    started: list[Sandbox] = []

    def start(first_port: int, relay_url: str) -> Sandbox:
        out = tmp_path / f"sandbox-{len(started)}.out"
        with out.open("wb") as stdout:
            process = subprocess.Popen(
                sandbox_command("--port", str(first_port), "--state-dir", str(tmp_path / "state"),
                                "--relay-url", relay_url),
                stdout=stdout, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        sandbox = Sandbox(first_port, tmp_path / "state", process, out)
        started.append(sandbox)
        deadline = time.monotonic() + 30
        while "Stop with Ctrl-C." not in out.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline and process.poll() is None, out.read_text(encoding="utf-8")
            time.sleep(0.05)
        Settings.from_env(read_env_file(sandbox.env_path))  # its secrets: searched for in the run's logs
        return sandbox

    yield start
    for sandbox in started:
        if sandbox.process.poll() is None:
            sandbox.stop()


def headers(env_path: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {read_env_file(env_path)['PAYRELAY_API_KEYS'].partition(':')[2]}"}


def pay_and_see_it_succeed(relay: RelayProcess, sandbox: Sandbox, gateway: str) -> str:
    auth = headers(sandbox.env_path)
    created = httpx.post(f"{relay.url}/api/transactions", headers=auth, json=order(gateway))
    assert created.status_code == 200, created.text
    payment_url, payment_id = created.json()["paymentUrl"], created.json()["paymentId"]
    if payment_url.startswith("weixin://"):  # the WeChat sandbox's page for the code, as the demo prints it
        payment_url = f"http://127.0.0.1:{sandbox.first_port + 2}/pay?code_url={payment_url}"
    assert pay_on_page(payment_url).status_code in (200, 303)
    deadline = time.monotonic() + 10
    while (status := httpx.get(f"{relay.url}/api/transactions/{payment_id}", headers=auth).json()["status"]) \
            != "succeeded":  # no ?sync: only the sandbox's webhook can have moved it
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return payment_id


def test_serve_with_the_sandbox_env_file_takes_payments_on_every_gateway(
        start_sandbox: Callable[[int, str], Sandbox], clean_redis: str) -> None:
    relay_port, first = free_port(), free_ports(len(registry.GATEWAYS))
    sandbox = start_sandbox(first, f"http://127.0.0.1:{relay_port}")
    printed = sandbox.out.read_text(encoding="utf-8")
    for offset, label in enumerate(("Stripe", "Alipay", "WeChat Pay")):
        assert re.search(rf"{label} sandbox +http://127\.0\.0\.1:{first + offset}\n", printed), printed
    env = read_env_file(sandbox.env_path)
    assert env["PAYRELAY_PUBLIC_URL"] == f"http://127.0.0.1:{relay_port}"
    assert oct(sandbox.env_path.stat().st_mode & 0o777) == "0o600"
    relay = RelayProcess({"PAYRELAY_REDIS_URL": clean_redis}, "serve", "--env-file", str(sandbox.env_path),
                         port=relay_port).wait_ready()
    try:
        for gateway in registry.GATEWAY_TYPES:
            payment_id = pay_and_see_it_succeed(relay, sandbox, gateway)
            assert re.search(rf"{payment_id} waiting → succeeded \(webhook, {gateway}\)", relay.log()), relay.log()
    finally:
        relay.stop()


def test_a_restarted_sandbox_keeps_its_keys_so_a_running_serve_still_fits(
        start_sandbox: Callable[[int, str], Sandbox], clean_redis: str) -> None:
    relay_port, first = free_port(), free_ports(len(registry.GATEWAYS))
    sandbox = start_sandbox(first, f"http://127.0.0.1:{relay_port}")
    written = sandbox.env_path.read_text(encoding="utf-8")
    relay = RelayProcess({"PAYRELAY_REDIS_URL": clean_redis}, "serve", "--env-file", str(sandbox.env_path),
                         port=relay_port).wait_ready()
    try:
        sandbox.stop()
        again = start_sandbox(first, f"http://127.0.0.1:{relay_port}")
        assert again.env_path.read_text(encoding="utf-8") == written
        assert "a restart keeps them" in again.out.read_text(encoding="utf-8")
        for gateway in registry.GATEWAY_TYPES:  # signed with the kept keys, both ways
            pay_and_see_it_succeed(relay, again, gateway)
    finally:
        relay.stop()


def test_the_kept_keys_make_the_same_emulators() -> None:
    for emulator in emulators():
        restored = type(emulator).restored(emulator.key_material())
        assert restored.key_material() == emulator.key_material() and restored.env() == emulator.env()
        assert restored.env() != type(emulator)().env()  # fresh ones differ


def run_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sandbox_command(*args), capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_a_port_in_use_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    first = free_ports(len(registry.GATEWAYS))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first + 1))
        taken.listen()
        refused = run_sandbox("--port", str(first), "--state-dir", str(tmp_path / "state"))
    assert refused.returncode == 2, refused.stderr
    said = f"payrelay sandbox: cannot listen for the Alipay sandbox on 127.0.0.1:{first + 1} ("
    assert refused.stderr.startswith(said), refused.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(("args", "said"), [
    (["--relay-url", "ftp://relay.example"], "PAYRELAY_PUBLIC_URL must be an http(s) URL"),
    (["--port", "0"], "argument --port: 0 is not between 1 and 65533"),
    (["--port", "65534"], "argument --port: 65534 is not between 1 and 65533"),
])
def test_bad_arguments_are_refused_and_change_nothing(tmp_path: Path, args: list[str], said: str) -> None:
    refused = run_sandbox("--port", str(free_ports(len(registry.GATEWAYS))), "--state-dir", str(tmp_path / "state"),
                          *args)
    assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    assert not (tmp_path / "state").exists()


def test_a_keys_file_that_is_not_ours_is_refused_and_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "sandbox-keys.json").write_text(json.dumps({"apiKey": "k"}), encoding="utf-8")
    refused = run_sandbox("--port", str(free_ports(len(registry.GATEWAYS))), "--state-dir", str(state))
    assert refused.returncode == 2, refused.stderr
    assert f"{state / 'sandbox-keys.json'} is not a keys file payrelay wrote (KeyError): delete it" in refused.stderr
    assert sorted(p.name for p in state.iterdir()) == ["sandbox-keys.json"]


def test_a_state_dir_that_cannot_be_written_is_said_plainly(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    refused = run_sandbox("--port", str(free_ports(len(registry.GATEWAYS))), "--state-dir",
                          str(tmp_path / "a-file" / "state"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"payrelay sandbox: cannot write to {tmp_path / 'a-file' / 'state'}: Not a directory" in refused.stderr
