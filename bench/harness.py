"""The moving parts every scenario shares: Redis, the emulators, payrelay / floor / worker processes,
templates (one real create per gateway), wrk runs with warm-up and CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import load, procs
from bench.procs import PYTHON, Proc, Redis, free_port, wait_http

API_KEY = "bench-key-" + "0" * 22
CLIENT = "bench"
# the create body bench/lua/create.lua sends, per gateway: (amount, currency)
AMOUNTS = {"alipay-page": ("25.00", "CNY"), "stripe-connect": ("25.00", "USD"),
           "wechat-pay-native": ("25.00", "CNY")}
NOTIFY_SECRET = "bench-notify-secret"
BACKGROUND = ("ZCOUNT", "ZRANGE", "PING", "INFO", "ECHO", "CLIENT", "MONITOR", "HELLO", "SELECT")


def payrelay_command() -> list[str]:
    """The `payrelay` console script, or the same entry point (service.cli:main) when the project
    is not installed into the venv."""
    script = Path(PYTHON).parent / "payrelay"
    return [str(script)] if script.exists() else [PYTHON, "-m", "service.cli"]


def payrelay_shown() -> str:
    return "payrelay" if len(payrelay_command()) == 1 else "python -m service.cli (= payrelay)"


@dataclass
class Timing:
    warmup_s: int  # whole seconds, as wrk's -d takes them
    run_s: int
    runs: int


PORT_NAMES = ("redis", "stripe-connect", "alipay-page", "wechat-pay-native", "control", "payrelay", "floor")


def ports(base: int | None = None, fixed: dict[str, int] | None = None) -> dict[str, int]:
    """The port of every server the bench starts: ``fixed`` ones, else ``base`` + their place in
    PORT_NAMES, else free ones."""
    return {name: (fixed or {}).get(name) or (base + i if base else free_port()) for i, name in enumerate(PORT_NAMES)}


class Harness:
    def __init__(self, work: Path, timing: Timing, port_of: dict[str, int]) -> None:
        self.work = work
        self.timing = timing
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._starts = 0
        self.ports = port_of
        self.redis = Redis(self.logs, port_of["redis"])
        gateway_ports = {name: port_of[name] for name in ("stripe-connect", "alipay-page", "wechat-pay-native",
                                                          "control")}
        self.gateways = Proc("gateways", [PYTHON, "-m", "bench.gateways", json.dumps(gateway_ports)], self.logs)
        self.control = f"http://127.0.0.1:{port_of['control']}"
        wait_http(self.control + "/stats", proc=self.gateways.proc)
        self.gateway_env = httpx.get(self.control + "/env").json()
        self.commands: dict[str, str] = {}

    # -- processes ------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.gateway_env,
            "PAYRELAY_REDIS_URL": self.redis.url,
            "PAYRELAY_API_KEYS": f"{CLIENT}:{API_KEY}",
            "PAYRELAY_NOTIFY_URL": self.control + "/notify",
            "PAYRELAY_NOTIFY_SECRET": NOTIFY_SECRET,
            "PAYRELAY_LOG_LEVEL": "INFO",
            **extra,
        }

    def _name(self, base: str) -> str:
        self._starts += 1
        return f"{self._starts:02d}-{base}"

    @contextlib.contextmanager
    def payrelay(self, workers: int, **extra: str) -> Iterator[App]:
        port = self.ports["payrelay"]
        env = self.env(PAYRELAY_PUBLIC_URL=f"http://127.0.0.1:{port}", **extra)
        argv = [*payrelay_command(), "serve", "--port", str(port), "--workers", str(workers)]
        self.commands["payrelay"] = payrelay_shown() + " serve --port PORT --workers N"
        proc = Proc(self._name(f"payrelay-w{workers}"), argv, self.logs, env)
        app = App("payrelay", workers, port, proc)
        try:
            app.wait_ready()
            yield app
        finally:
            proc.stop()

    def floor_env(self) -> dict[str, str]:
        return {**self.gateway_env, "FLOOR_REDIS_URL": self.redis.url, "FLOOR_NOTIFY_URL": self.control + "/notify",
                "FLOOR_NOTIFY_SECRET": NOTIFY_SECRET, "FLOOR_PUBLIC_URL": f"http://127.0.0.1:{self.ports['floor']}"}

    @contextlib.contextmanager
    def floor(self, workers: int, stripe_capture: dict[str, Any] | None = None) -> Iterator[App]:
        """bench/floor.py; ``stripe_capture``: the create call payrelay's SDK made (its body is replayed)."""
        port = self.ports["floor"]
        env = self.floor_env()
        if stripe_capture:
            env |= {"FLOOR_STRIPE_BODY": stripe_capture["body"], "FLOOR_STRIPE_TEMPLATE_ID": stripe_capture["pid"],
                    "FLOOR_STRIPE_ACCOUNT": stripe_capture["headers"].get("stripe-account", "")}
        argv = [PYTHON, "-m", "bench.floor", "--port", str(port), "--workers", str(workers)]
        self.commands["floor"] = "python -m bench.floor --port PORT --workers N"
        proc = Proc(self._name(f"floor-w{workers}"), argv, self.logs, env)
        app = App("floor", workers, port, proc)
        try:
            app.wait_ready(path="/api/transactions/pr_00none")
            yield app
        finally:
            proc.stop()

    def worker_procs(self, count: int, **extra: str) -> list[Proc]:
        argv = [*payrelay_command(), "worker"]
        self.commands["worker"] = payrelay_shown() + " worker"
        return [Proc(self._name(f"worker-{i}"), argv, self.logs, self.env(**extra)) for i in range(count)]

    def floor_sweepers(self, count: int) -> list[Proc]:
        argv = [PYTHON, "-m", "bench.floor_sweep"]
        self.commands["floor sweep"] = "python -m bench.floor_sweep"
        return [Proc(self._name(f"floor-sweep-{i}"), argv, self.logs, self.floor_env()) for i in range(count)]

    # -- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Flush Redis and forget every gateway-side object (between scenarios and configurations)."""
        self.redis.flush()
        httpx.post(self.control + "/reset", timeout=60).raise_for_status()

    def notified(self) -> dict[str, Any]:
        """The notify receiver's count and the wall-clock time of its last notification."""
        return dict(httpx.get(self.control + "/notified", timeout=30).json())

    def gateway_stats(self) -> dict[str, Any]:
        return httpx.get(self.control + "/stats", timeout=120).json()

    def create_one(self, app: App, gateway: str, txid: str) -> dict[str, str]:
        amount, currency = AMOUNTS[gateway]
        body = {"transactionId": txid, "amount": amount, "currency": currency, "date": "2026-11-21",
                "paymentGatewayType": gateway, "completePayRedirectUrl": "https://shop.example/done",
                "cancelPayRedirectUrl": "https://shop.example/cancel", "onlineScenario": True,
                "customerIdentifier": "buyer@example.com", "description": "10 GB storage pack"}
        answer = httpx.post(app.url + "/api/transactions", json=body,
                            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"create {gateway} answered {answer.status_code}: {answer.text[:500]}")
        return dict(answer.json())

    def template(self, app: App, gateway: str) -> dict[str, str]:
        """One real payment's record, made by payrelay's own create (seeding clones it)."""
        created = self.create_one(app, gateway, f"template-{gateway}-{time.time_ns()}")
        pid = created["paymentId"]
        from service import keys

        record = self.redis.client.hgetall(keys.payment(keys.bucket_of(pid) or 0, pid))
        assert record, "the template payment is not in Redis"
        return record

    def stripe_capture(self) -> dict[str, Any]:
        return dict(httpx.get(self.control + "/last/stripe-connect").json())

    def round_trips(self, app: App, gateway: str, count: int = 20, get: bool = False) -> dict[str, Any]:
        """Redis commands one request makes (MONITOR; script-internal and background commands left out)."""
        for i in range(3):
            self.create_one(app, gateway, f"rt-warm-{gateway}-{time.time_ns()}-{i}")
        created = [self.create_one(app, gateway, f"rt-seed-{gateway}-{time.time_ns()}")] if get else []
        seen: list[str] = []
        ready = threading.Event()
        marker = f"bench-monitor-end-{time.time_ns()}"

        def watch() -> None:
            client = redis.Redis(port=self.redis.port, decode_responses=True)
            with client.monitor() as monitor:
                ready.set()
                for item in monitor.listen():
                    command = item["command"]
                    if marker in command:
                        return
                    if item.get("client_type") == "lua":
                        continue
                    seen.append(command)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        ready.wait(5)
        time.sleep(0.2)
        for i in range(count):
            if get:
                httpx.get(f"{app.url}/api/transactions/{created[0]['paymentId']}",
                          headers={"Authorization": f"Bearer {API_KEY}"}).raise_for_status()
            else:
                self.create_one(app, gateway, f"rt-{gateway}-{time.time_ns()}-{i}")
        self.redis.client.echo(marker)
        thread.join(10)
        names = [c.split(" ", 1)[0].upper() for c in seen]
        mine = [(n, c) for n, c in zip(names, seen, strict=True)
                if n not in BACKGROUND and "payrelay:worker:" not in c]
        per: dict[str, float] = {}
        for name, _ in mine:
            per[name] = per.get(name, 0) + 1 / count
        sequence = [n for n, _ in mine[: round(len(mine) / count)]]
        return {"per_request": {k: round(v, 2) for k, v in per.items()}, "total": round(len(mine) / count, 2),
                "sequence": sequence}

    # -- load -----------------------------------------------------------------------------------

    def alternate(self, apps: list[App], make: Callable[[App, int], load.Load], *,
                  after_run: Callable[[App, dict[str, Any]], dict[str, Any]] | None = None,
                  figures: tuple[str, ...] = load.FIGURES) -> dict[str, dict[str, Any]]:
        """Each app's warm-up, then their measured runs taking turns (payrelay, floor, payrelay,
        floor, …) in one session, so that both see the same machine. ``make(app, i)`` gives run i's
        wrk Load (i = 0: the warm-up); ``after_run(app, result)`` adds figures to a run (and waits
        for what it needs, inside the run's CPU accounting). Per app: the median and spread of
        ``figures`` over its runs, its runs, and the CPU cores each process group used meanwhile."""
        for app in apps:
            if self.timing.warmup_s > 0:
                warm = load.run(make(app, 0), self.timing.warmup_s)
                if after_run is not None:
                    after_run(app, warm)
        runs: dict[str, list[dict[str, Any]]] = {app.kind: [] for app in apps}
        cpu: dict[str, dict[str, float]] = {app.kind: {} for app in apps}
        elapsed = dict.fromkeys(runs, 0.0)
        for i in range(1, self.timing.runs + 1):
            for app in apps:
                spec = make(app, i)
                groups = {app.kind: app.proc, "gateways": self.gateways, "redis": self.redis.proc}
                before = {name: p.cpu() for name, p in groups.items()}
                started = time.monotonic()
                result = load.run(spec, self.timing.run_s)
                if after_run is not None:
                    result |= after_run(app, result)
                elapsed[app.kind] += time.monotonic() - started
                for name, p in groups.items():
                    cpu[app.kind][name] = cpu[app.kind].get(name, 0.0) + p.cpu() - before[name]
                runs[app.kind].append(result)
        out = {}
        for kind, done in runs.items():
            summary = load.summarize(done, figures)
            summary["cpu_cores"] = {name: round(v / elapsed[kind], 2) for name, v in cpu[kind].items()}
            summary["per_run"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                                  for r in done]
            out[kind] = summary
        return out

    def close(self) -> None:
        self.gateways.stop()
        self.redis.stop()


@dataclass
class App:
    kind: str
    workers: int
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/readyz") -> None:
        wait_http(self.url + path, timeout=60, proc=self.proc.proc)
        if self.workers > 1:  # every worker process up (each answers once it has started)
            deadline = time.monotonic() + 30
            while len(self.proc.pids()) < self.workers + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)

    def worker_pid(self) -> int:
        """The process serving requests (with one worker, uvicorn serves in the main process)."""
        pids = self.proc.pids()
        return pids[-1] if self.workers > 1 else pids[0]


def machine() -> dict[str, Any]:
    import importlib.metadata as md
    import platform
    import subprocess

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    versions = {}
    for dist in ("starlette", "uvicorn", "uvloop", "httptools", "redis", "hiredis", "httpx", "stripe",
                 "python-alipay-sdk", "pycryptodomex", "pycryptodome", "wechatpayv3", "cryptography",
                 "prometheus-client", "python-multipart"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)

    def out(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    import importlib.util

    return {
        # what uvicorn and httpcore pick up in this venv (uvicorn[standard] brings uvloop and httptools;
        # without sniffio httpcore retries a failing import on every outbound request)
        "installed": {name: importlib.util.find_spec(name) is not None
                      for name in ("uvloop", "httptools", "sniffio", "orjson")},
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "redis": out(["redis-server", "--version"]),
        "wrk": out([load.wrk_binary(), "-v"]),
        "py-spy": out([str(Path(PYTHON).parent / "py-spy"), "--version"]),
        "git_commit": out(["git", "-C", str(procs.ROOT), "rev-parse", "--short", "HEAD"]),
    }
