"""The sandbox gateways as `payrelay sandbox` and `payrelay demo` run them: one emulator of each
gateway on fixed ports (in the registry's order from the first port: Stripe P, Alipay P+1, WeChat
P+2), sending their webhooks to the relay's URL, with keys kept in the state directory, and the
configuration that points payrelay at them written there as ``payrelay.env``.

The keys are made on the first start and kept (``sandbox-keys.json``, 0600, beside the env file):
a restarted sandbox answers with the same keys, so a ``payrelay serve --env-file`` started
against it earlier still fits. Deleting the state directory starts over with fresh ones.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from adapters import registry
from sandbox.base import Emulator
from sandbox.keys import token
from sandbox.runner import ServerThread
from service.settings import Settings

ENV_FILE = "payrelay.env"
KEYS_FILE = "sandbox-keys.json"
API_CLIENT = "demo"
LABEL_WIDTH = 22  # of what runs where, in what the commands print


class SandboxError(Exception):
    """The sandboxes cannot start as asked (a port taken, a keys file that is not ours, a state
    directory that cannot be written); nothing is left running."""


class Sandboxes:
    """The emulators, bound to their fixed URLs (not yet serving), with the API key and notify
    secret of the configuration they go with."""

    def __init__(self, state_dir: str | Path, host: str, first_port: int, relay_url: str) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        relay_url = relay_url.rstrip("/")  # as payrelay reads its PAYRELAY_PUBLIC_URL
        self.api_key, self.notify_secret, self.emulators = _kept_or_fresh(self.state_dir / KEYS_FILE)
        self.ports = {gateway.name: first_port + index for index, gateway in enumerate(registry.GATEWAYS)}
        for emulator in self.emulators:
            webhook = registry.BY_TYPE[emulator.gateway_type].webhook
            emulator.bind(f"http://{host}:{self.ports[emulator.gateway_type]}", f"{relay_url}/webhooks/{webhook}")
        self.relay_url = relay_url
        self._servers: list[ServerThread] = []

    @property
    def listeners(self) -> dict[str, int]:
        """What listens where, for people: "the Stripe sandbox" → its port (``check_free``)."""
        return {f"the {registry.BY_TYPE[kind].label} sandbox": port for kind, port in self.ports.items()}

    @property
    def env_path(self) -> Path:
        return self.state_dir / ENV_FILE

    def env(self, **more: str) -> dict[str, str]:
        """The PAYRELAY_* configuration for a payrelay that uses these sandboxes, plus ``more``."""
        env = {
            "PAYRELAY_PUBLIC_URL": self.relay_url,
            "PAYRELAY_API_KEYS": f"{API_CLIENT}:{self.api_key}",
            "PAYRELAY_NOTIFY_SECRET": self.notify_secret,
            "PAYRELAY_LOG_FORMAT": "text",
        }
        for emulator in self.emulators:
            env.update(emulator.env())
        return env | more

    def start(self) -> None:
        """Serve each emulator on its port; SandboxError (and nothing left running) if one cannot."""
        try:
            for emulator in self.emulators:
                self._servers.append(ServerThread(emulator.app, self.host, self.ports[emulator.gateway_type]).start())
        except RuntimeError as exc:
            self.stop()
            raise SandboxError(str(exc)) from None

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self._servers.clear()

    def write(self, env: Mapping[str, str]) -> None:
        """Keep the keys and write ``env`` as the env file, both readable by their owner only."""
        kept = {
            "apiKey": self.api_key,
            "notifySecret": self.notify_secret,
            "gateways": {emulator.gateway_type: emulator.key_material() for emulator in self.emulators},
        }
        lines = ["# payrelay sandbox configuration: keys of the local sandbox gateways only."]
        lines += [_env_line(name, value) for name, value in sorted(env.items())]
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_private(self.state_dir / KEYS_FILE, json.dumps(kept, indent=2) + "\n")
            _write_private(self.env_path, "\n".join(lines) + "\n")
        except OSError as exc:
            raise SandboxError(f"cannot write to {self.state_dir}: {exc.strerror}") from None

    def describe(self) -> str:
        """One line per sandbox: its gateway and URL."""
        return "\n".join(f"  {registry.BY_TYPE[e.gateway_type].label + ' sandbox':<{LABEL_WIDTH}} {e.base_url}"
                         for e in self.emulators)


def run_sandbox(host: str, port: int, state_dir: str, relay_url: str) -> int:
    """`payrelay sandbox`: the emulators alone, until SIGINT or SIGTERM."""
    sandboxes = Sandboxes(state_dir, host, port, relay_url)
    env = sandboxes.env()
    Settings.from_env(env)  # a relay URL payrelay would refuse: SettingsError, before anything starts
    check_free(host, sandboxes.listeners)
    stop = _stop_on_signals()
    sandboxes.start()
    try:
        sandboxes.write(env)
        print(f"""payrelay sandbox: the gateway emulators, sending their webhooks to {relay_url}
{sandboxes.describe()}
configuration written to {sandboxes.env_path}; run payrelay against them with
  PAYRELAY_REDIS_URL=redis://127.0.0.1:6379/0 payrelay serve --env-file {sandboxes.env_path}
(the keys are kept in {sandboxes.state_dir}: a restart keeps them; delete it for fresh ones)
Stop with Ctrl-C.""", flush=True)
        stop.wait()
    finally:
        sandboxes.stop()
    return 0


def _stop_on_signals() -> threading.Event:
    """An event that SIGINT (Ctrl-C) or SIGTERM sets, from now on."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def check_free(host: str, ports: Mapping[str, int]) -> None:
    """SandboxError naming each port (``what: port``) that cannot be listened on at ``host``."""
    taken = []
    for what, port in ports.items():
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
                sock.bind(address)
        except OSError as exc:
            taken.append(f"{what} on {host}:{port} ({exc.strerror or exc})")
    if taken:
        raise SandboxError("cannot listen for " + "; ".join(taken))


def emulators() -> tuple[Emulator, ...]:
    """One emulator of each gateway payrelay speaks, with fresh keys."""
    return tuple(gateway.emulator()() for gateway in registry.GATEWAYS)


def _kept_or_fresh(path: Path) -> tuple[str, str, tuple[Emulator, ...]]:
    if not path.exists():
        return token("demo_"), token(), emulators()
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        restored = tuple(gateway.emulator().restored(kept["gateways"][gateway.name])
                         for gateway in registry.GATEWAYS)
        return str(kept["apiKey"]), str(kept["notifySecret"]), restored
    except (OSError, ValueError, KeyError, TypeError) as exc:  # the type only: a message may quote a key
        raise SandboxError(f"{path} is not a keys file payrelay wrote ({type(exc).__name__}): "
                           f"delete it for fresh keys") from None


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file was there with a wider mode
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _env_line(name: str, value: str) -> str:
    if "\n" in value or " " in value or "#" in value:
        return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return f"{name}={value}"
