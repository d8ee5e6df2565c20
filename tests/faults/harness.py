"""The fault suite's machinery: real `payrelay serve` / `worker` processes on a Redis with AOF, the
three sandbox gateways, bounded load, and the audit that counts what must be 0.

Everything runs on loopback and stops by itself: loops are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from sandbox.base import Emulator
from sandbox.runner import ServerThread, free_port
from service import keys
from service.sandboxes import emulators
from tests.conftest import API_KEY, _answers
from tests.receiver import Receiver
from tests.relay_process import RelayProcess

RESOLVE_TIMEOUT = keys.CREATING_LEASE_MS / 1000 + 30  # a cut-off create's lease, then the sweep


class AofRedis:
    """A redis-server of the suite's own with AOF (every write fsynced before it is answered, as a
    deploy that cannot lose an acknowledged payment runs it), which a scenario may kill -9 and start
    again on the same port and data."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="payrelay-faults-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", self.dir], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@dataclass
class Report:
    """One scenario's figures. Everything but ``acknowledged`` and ``unavailable`` must be 0."""

    scenario: str
    acknowledged: int = 0  # creates answered 200 (and, where it applies, notifications due)
    lost: int = 0  # acknowledged, then not found (or not as acknowledged) after recovery
    unresolved: int = 0  # still creating, or open past its expiry, after recovery
    errors_5xx: int = 0  # 5xx answers other than the documented 503 (gateway or Redis unavailable)
    unavailable: int = 0  # 503 answers: what payrelay says while a gateway or Redis is down
    gateway_duplicates: int = 0  # a transaction with more than one live gateway order
    undelivered: int = 0  # a notification due that the receiver never got
    seconds: float = 0.0

    FIGURES = ("acknowledged", "lost", "unresolved", "errors_5xx", "unavailable", "gateway_duplicates",
               "undelivered")

    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIGURES[1:] if name != "unavailable"
                and getattr(self, name)}


def table(reports: list[Report]) -> str:
    head = "| scenario | " + " | ".join(Report.FIGURES) + " | seconds |"
    rule = "|---" * (len(Report.FIGURES) + 2) + "|"
    rows = [f"| {r.scenario} | " + " | ".join(str(getattr(r, f)) for f in Report.FIGURES) + f" | {r.seconds:.0f} |"
            for r in reports]
    return "\n".join([head, rule, *rows])


@dataclass
class Stack:
    """The gateways, a notification receiver and a Redis with AOF; payrelay processes come and go."""

    redis: AofRedis
    gateways: dict[str, Emulator]
    receiver: Receiver
    survivor_port: int  # the port of the process that survives every scenario …
    stack: ExitStack
    processes: list[RelayProcess] = field(default_factory=list)

    @property
    def public_url(self) -> str:  # … where the gateways send their webhooks
        return f"http://127.0.0.1:{self.survivor_port}"

    def env(self, **changes: str) -> dict[str, str]:
        values = {
            "PAYRELAY_REDIS_URL": self.redis.url,
            "PAYRELAY_PUBLIC_URL": self.public_url,
            "PAYRELAY_API_KEYS": f"shop:{API_KEY}",
            "PAYRELAY_NOTIFY_URL": self.receiver.url + "/hook",
            "PAYRELAY_NOTIFY_SECRET": "n" * 32,
            "PAYRELAY_LOG_LEVEL": "WARNING",
        }
        for emulator in self.gateways.values():
            values.update(emulator.env())
        return values | changes

    def start(self, command: str = "serve", port: int | None = None, **env: str) -> RelayProcess:
        process = RelayProcess(self.env(**env), command, port=port)
        self.processes.append(process)
        self.stack.callback(_stop, process)
        return process.wait_ready()


def _stop(process: RelayProcess) -> None:
    process.stop(timeout=15)  # also the killed ones: their log files are closed


@contextmanager
def stack() -> Iterator[Stack]:
    with ExitStack() as exits:
        aof = AofRedis()
        exits.callback(aof.stop)
        receiver = Receiver()
        receiver.url = _serve(exits, receiver.app).url
        survivor_port = free_port()
        public_url = f"http://127.0.0.1:{survivor_port}"
        gateways = {}
        for emulator in emulators():
            emulator.bind(_serve(exits, emulator.app).url,
                          f"{public_url}/webhooks/{emulator.gateway_type.split('-')[0]}")
            gateways[emulator.gateway_type] = emulator
        yield Stack(aof, gateways, receiver, survivor_port, exits)


def _serve(exits: ExitStack, app: Any) -> ServerThread:
    server = ServerThread(app).start()
    exits.callback(server.stop)
    return server


# -- load ---------------------------------------------------------------------------------------

@dataclass
class Answer:
    body: dict[str, Any]  # the request
    status: int | None  # None: no answer (connection refused or cut)
    payment_id: str | None = None


async def post_creates(url: str, bodies: list[dict[str, Any]], concurrency: int = 16) -> list[Answer]:
    """Send each create once, ``concurrency`` at a time."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
                                 limits=limits) as client:

        async def one(body: dict[str, Any]) -> Answer:
            async with gate:
                try:
                    answer = await client.post("/api/transactions", json=body)
                except httpx.TransportError:
                    return Answer(body, None)
                payment_id = answer.json().get("paymentId") if answer.status_code == 200 else None
                return Answer(body, answer.status_code, payment_id)

        return list(await asyncio.gather(*(one(body) for body in bodies)))


def count_answers(report: Report, answers: list[Answer]) -> None:
    for answer in answers:
        if answer.status == 200:
            report.acknowledged += 1
        elif answer.status == 503:
            report.unavailable += 1
        elif answer.status is not None and answer.status >= 500:
            report.errors_5xx += 1


async def get_payment(url: str, payment_id: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        answer = await client.get(f"/api/transactions/{payment_id}")
    return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]


# -- audit --------------------------------------------------------------------------------------

def payment_records(client: redis.Redis) -> list[dict[str, str]]:
    """Every payment record in Redis, bucket by bucket (names from service.keys)."""
    records = []
    for bucket in range(keys.BUCKETS):
        for key in client.scan_iter(match=keys.payment(bucket, "*"), count=500):
            records.append(client.hgetall(key))
    return records


async def claims_held(stack: Stack, of: str, timeout: float = 30) -> int:
    """Wait until some payments (``of="payment"``) or deliveries (``"delivery"``) are claimed by
    a worker, that is being worked on; answer how many (0: none within the time)."""
    prefix = keys.payment if of == "payment" else keys.delivery
    deadline = time.monotonic() + timeout
    with stack.redis.client() as client:
        while True:
            held = sum(1 for bucket in range(keys.BUCKETS)
                       for key in client.scan_iter(match=prefix(bucket, "*"), count=500)
                       if client.hexists(key, "claim"))
            if held or time.monotonic() > deadline:
                return held
            await asyncio.sleep(0.1)


async def wait_resolved(stack: Stack, timeout: float = RESOLVE_TIMEOUT,
                        past_expiry_is_unresolved: bool = False) -> int:
    """Wait until no payment is left creating (nor, when asked, open past its expiry); answer
    how many still are when the time is up. When open payments past their expiry count, an open
    one whose expiry is not yet a second past is waited for too: it cannot be judged yet."""
    deadline = time.monotonic() + timeout
    with stack.redis.client() as client:
        while True:
            now = time.time() * 1000
            records = payment_records(client)
            open_ = [r for r in records if r.get("status") in ("waiting", "processing")]
            left = [r for r in records if r.get("status") == "creating"]
            if past_expiry_is_unresolved:
                left += [r for r in open_ if int(r["expiresAt"]) < now - 1000]
            not_yet = past_expiry_is_unresolved and any(int(r["expiresAt"]) >= now - 1000 for r in open_)
            if (not left and not not_yet) or time.monotonic() > deadline:
                return len(left)
            await asyncio.sleep(0.5)


async def audit(stack: Stack, report: Report, answers: list[Answer], url: str) -> None:
    """Every acknowledged payment is there as answered; no transaction has two live gateway
    orders."""
    for answer in answers:
        if answer.status == 200 and answer.payment_id:
            found = await get_payment(url, answer.payment_id)
            if found is None or found["transactionId"] != answer.body["transactionId"]:
                report.lost += 1
    report.gateway_duplicates = live_orders_beyond_one(stack)


def live_orders_beyond_one(stack: Stack) -> int:
    """Transactions with gateway orders a customer could pay (open or paid) under more than one
    paymentId: a second order for the same purchase."""
    with stack.redis.client() as client:
        transaction_of = {r["paymentId"]: r["transactionId"] for r in payment_records(client)}
    live: dict[str, set[str]] = {}

    def seen(payment_id: str | None) -> None:
        if payment_id:
            live.setdefault(transaction_of.get(payment_id, payment_id), set()).add(payment_id)

    stripe: Any = stack.gateways["stripe-connect"]
    for session in stripe.sessions.values():
        if session["status"] != "expired":
            seen(session["client_reference_id"])
    for intent in stripe.payment_intents.values():
        if intent["status"] not in ("canceled", "requires_payment_method"):
            seen((intent.get("metadata") or {}).get("paymentId"))
    wechat: Any = stack.gateways["wechat-pay-native"]
    for no, placed in wechat.orders.items():
        if placed.trade_state not in ("CLOSED", "REVOKED"):
            seen(no)
    return sum(len(ids) - 1 for ids in live.values())


def notifications_missing(stack: Stack) -> int:
    """Notifications due by the stored payments that the receiver never took (answered 2xx), by
    payment and type: receivers dedupe on the event id, retries may repeat one."""
    with stack.redis.client() as client:
        due = {(r["paymentId"], "transaction." + r["status"]) for r in payment_records(client)
               if r.get("status") in ("processing", "succeeded", "failed", "closed") and r.get("notifyUrl")}
    got = set()
    for received in stack.receiver.received:
        if not 200 <= received.status < 300:
            continue
        body = received.body.decode("utf-8", "replace")
        for payment_id, kind in due:
            if payment_id in body and f'"{kind}"' in body:
                got.add((payment_id, kind))
    return len(due - got)
