"""The outbox sender: delivers the notifications the transition script enqueues, at least once.

Each notifiable transition writes a delivery hash and an outbox entry in the payment's bucket in
the same Lua script (``service/lua/transition.lua``). This worker claims due entries with a lease
(``service.schedule``), sends them, and records every attempt on the delivery hash:

* ``generic``: ``POST`` the JSON event to the client's notify URL, signed with the client's first
  notify secret (``Payrelay-Signature``, ``service.notify_signature``). Any 2xx is delivered.
* ``cloudreve``: ``GET`` the notify URL Cloudreve gave at create; delivered only when Cloudreve
  answers a JSON object with ``"code": 0`` (anything else, a 2xx included, is a failure).

Redirects are never followed (a 3xx is a failure: a notify URL must be the receiver's own). A
failure is retried with exponential backoff and jitter (10 s doubling up to 1 h); a delivery whose
next attempt would fall more than 24 h after its window opened (its creation, or a manual re-send
through the deliveries API) is marked ``dead``, counted in ``payrelay_dead_deliveries`` and kept,
visible at ``GET /api/transactions/{paymentId}/deliveries`` and re-sendable.

A generic delivery of a client with no notify secret is not sent unsigned: the attempt fails with
``lastError`` saying so and is retried like any other failure, so configuring a secret (and, past
the window, a re-send) delivers it; nothing is lost and nothing unsigned goes out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from adapters.transport import (
    AiohttpTransport,
    Response,
    Transport,
    TransportError,
    TransportTimeout,
    Unreachable,
    UnusableUrl,
)
from service import keys, notify_signature
from service.clock import now_ms
from service.delivery_store import DeliveryStore
from service.metrics import Metrics
from service.model import Delivery, DeliveryState, Payment, Refund
from service.schedule import Claim, Schedule, backoff_ms
from service.settings import Client, Settings
from service.views import iso, payment_view, refund_view
from service.workers import FINISHED, Finished, Worker

DONE = (DeliveryState.DELIVERED.value, DeliveryState.DEAD.value)
LEASE_MS = 15_000  # one send (≤ TIMEOUT_S) plus its Redis writes; claims never wait for a slot
RETRY_BASE_MS = 10_000
RETRY_CAP_MS = 60 * 60_000
GIVE_UP_MS = 24 * 60 * 60_000
TIMEOUT_S = 5.0  # the whole attempt: connect, send, answer
MAX_ANSWER = 16 * 1024  # of a Cloudreve answer we read; more is not a {"code":0}
MAX_ERROR = 200
DEAD_REFRESH_S = 300.0  # the gauge also counts other instances' dead deliveries: a few minutes late is fine
USER_AGENT = "payrelay"

log = logging.getLogger("payrelay.outbox")



REFUND_EVENT = "refund."  # the type of a refund's notifications: refund.succeeded, refund.failed


def event_id(delivery_id: str) -> str:
    """The event id receivers dedupe on: the same on every attempt of one delivery."""
    return "evt_" + delivery_id.removeprefix("dlv_")


def snapshot_of(delivery: Delivery) -> Payment | Refund:
    """The payment (or, for refund.<status>, the refund) as of the change the delivery tells of
    (``snapshot``: its hash as JSON)."""
    kind = Refund if delivery.type.startswith(REFUND_EVENT) else Payment
    return kind.from_hash(json.loads(delivery.snapshot))


def data_of(delivery: Delivery, amount_unit: str) -> dict[str, Any]:
    """The notification's ``data``: the GET object of what changed, as of the change."""
    snapshot = snapshot_of(delivery)
    if isinstance(snapshot, Refund):
        return refund_view(snapshot, amount_unit)
    return payment_view(snapshot, delivery.created_at, amount_unit)


def notification_body(delivery: Delivery, amount_unit: str) -> bytes:
    """The generic event, byte for byte the same on every attempt (only the signature's t moves).
    ``data`` is the GET object as of the transition (``expireTime`` counted from then)."""
    event = {
        "id": event_id(delivery.delivery_id),
        "type": delivery.type,
        "createdAt": iso(delivery.created_at),
        "version": delivery.version,
        "data": data_of(delivery, amount_unit),
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def _describe(exc: TransportError) -> str:
    """A short, secret-free account of a transport failure (no URLs, no bodies)."""
    if isinstance(exc, TransportTimeout):
        return "timed out"
    if isinstance(exc, Unreachable):
        return "could not connect"
    if isinstance(exc, UnusableUrl):
        return "the notify URL is not usable"
    return f"request failed ({type(exc.__cause__ or exc).__name__})"


def _shown(url: str) -> str:
    """The notify URL as logs show it: no user, password or query (which may carry tokens)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number
        return "(an unusable URL)"
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}" if parts.hostname else "(an unusable URL)"


class OutboxSender(Worker):
    name = "outbox"
    concurrency = 32  # sends in flight per process; also the most claims held at once

    def __init__(self, redis: Any, settings: Settings, metrics: Metrics, *, lease_ms: int = LEASE_MS,
                 retry_base_ms: int = RETRY_BASE_MS, retry_cap_ms: int = RETRY_CAP_MS,
                 give_up_ms: int = GIVE_UP_MS, timeout: float = TIMEOUT_S,
                 dead_refresh_s: float = DEAD_REFRESH_S, transport: Transport | None = None) -> None:
        self.deliveries = DeliveryStore(redis)
        self.settings = settings
        self.metrics = metrics
        self.schedule = Schedule(redis, keys.outbox, keys.delivery_prefix, "state", DONE,
                                 lease_ms)
        self.retry_base_ms = retry_base_ms
        self.retry_cap_ms = retry_cap_ms
        self.give_up_ms = give_up_ms
        self.timeout = timeout
        self.dead_refresh_s = dead_refresh_s
        # its own connections, one per send in flight, all kept alive
        self._transport = transport or AiohttpTransport(max_connections=self.concurrency)
        self._clients = {client.name: client for client in settings.clients}
        self._dead_refreshed = 0.0
        self._dead_changed = True

    # -- the loop -------------------------------------------------------------------------------

    async def report(self, backlog: int, oldest_due_ms: int | None, now: int) -> None:
        await self._refresh_dead_gauge(now)
        self.metrics.outbox_backlog.set(backlog)
        self.metrics.outbox_oldest_age.set(0 if oldest_due_ms is None else max(0, now - oldest_due_ms) / 1000)

    async def retry_at(self, claim: Claim, now: int, exc: Exception) -> int:
        # handle() failed before recording an attempt (Redis trouble): look again soon
        return now + backoff_ms(0, self.retry_base_ms, self.retry_cap_ms)

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- one delivery ---------------------------------------------------------------------------

    async def handle(self, claim: Claim, now: int) -> int | Finished | None:
        delivery = Delivery.from_hash(claim.record)
        if delivery.state is not DeliveryState.PENDING:
            return None
        attempt = await self.send(delivery)
        return await self._record(claim, delivery, attempt)

    async def send(self, delivery: Delivery) -> Attempt:
        kind = delivery.kind
        body: bytes | None = None
        headers = {"User-Agent": USER_AGENT}
        if kind == "cloudreve":
            method = "GET"
            headers["Accept"] = "application/json"
        elif kind == "generic":
            secret = self._secret_for(delivery)
            if secret is None:
                return Attempt(False, error="no notify secret configured")
            method = "POST"
            body = notification_body(delivery, self.settings.amount_unit)
            headers["Content-Type"] = "application/json"
            headers[notify_signature.HEADER] = notify_signature.sign(secret, int(time.time()), body)
        else:
            return Attempt(False, error=f"unknown delivery kind {kind[:20]!r}")
        try:
            # the (bounded) answer is read in every case: a response read to its end frees its
            # connection for the next delivery instead of closing it
            response = await self._transport.request(method, delivery.url, headers=headers, content=body,
                                                     timeout=self.timeout, limit=MAX_ANSWER)
        except TransportError as exc:
            return Attempt(False, error=_describe(exc))
        return self._judge(kind, response)

    def _judge(self, kind: str, response: Response) -> Attempt:
        status = response.status
        if 300 <= status < 400:
            return Attempt(False, status, "redirect not followed")
        if not 200 <= status < 300:
            return Attempt(False, status)
        if kind != "cloudreve":
            return Attempt(True, status)
        if response.cut:
            return Attempt(False, status, "Cloudreve's answer is too long")
        try:
            answer = json.loads(response.body)
        except ValueError:
            return Attempt(False, status, "Cloudreve's answer is not JSON")
        code = answer.get("code") if isinstance(answer, dict) else None
        if type(code) is int and code == 0:
            return Attempt(True, status)
        said = (answer.get("error") or answer.get("msg")) if isinstance(answer, dict) else None
        detail = f": {said}" if isinstance(said, str) and said else ""
        return Attempt(False, status, f"Cloudreve answered code {code!r}{detail}"[:MAX_ERROR])

    def _secret_for(self, delivery: Delivery) -> str | None:
        try:
            client_name = snapshot_of(delivery).client
        except ValueError:  # not JSON, or not a payment
            return None
        client: Client | None = self._clients.get(client_name)
        if client is None or not client.notify_secrets:
            return None
        return client.notify_secrets[0].reveal()

    async def _record(self, claim: Claim, delivery: Delivery, attempt: Attempt) -> Finished:
        """Write the attempt on the delivery hash and schedule its next one (if any), in one write."""
        now = now_ms()
        attempts = delivery.attempts
        window_start = delivery.window_start if delivery.window_start is not None else delivery.created_at
        window_attempts = (delivery.window_attempts if delivery.window_attempts is not None else attempts) + 1
        next_ms: int | None = None
        if attempt.delivered:
            state = DeliveryState.DELIVERED
        else:
            next_ms = now + backoff_ms(window_attempts - 1, self.retry_base_ms, self.retry_cap_ms)
            state = DeliveryState.PENDING if next_ms <= window_start + self.give_up_ms else DeliveryState.DEAD
            if state is DeliveryState.DEAD:
                next_ms = None
        attempted = dataclasses.replace(
            delivery, attempts=attempts + 1, window_attempts=window_attempts, last_attempt_at=now, state=state,
            next_at=next_ms, last_status_code=attempt.status_code, last_error=attempt.error)
        outcome = state.value if state is not DeliveryState.PENDING else "failed"
        answer = attempt.error or f"HTTP {attempt.status_code}"
        await self.deliveries.record_attempt(claim.bucket, attempted, outcome, answer, now,
                                             claim=self.schedule.token)
        kind = delivery.kind
        self.metrics.deliveries.labels(kind, outcome).inc()
        extra = {"worker": self.name, "deliveryId": claim.id, "paymentId": delivery.payment_id,
                 "outcome": outcome, "attempt": attempts + 1}
        code = f"{attempt.status_code} " if attempt.status_code is not None else ""
        why = f": {attempt.error}" if attempt.error else ""
        target = _shown(delivery.url)
        if state is DeliveryState.DEAD:
            self._dead_changed = True
            log.error("delivery %s → %s %sdead after %d attempts%s", claim.id, target, code, attempts + 1, why,
                      extra=extra)
        elif state is DeliveryState.PENDING:
            log.info("delivery %s → %s %sfailed%s (attempt %d, tried again later)", claim.id, target, code, why,
                     attempts + 1, extra=extra)
        else:
            log.info("delivery %s → %s %sdelivered", claim.id, target, code, extra=extra)
        return FINISHED

    async def _refresh_dead_gauge(self, now: int) -> None:
        """``payrelay_dead_deliveries``: every dead delivery still kept, across all instances."""
        if not self._dead_changed and time.monotonic() - self._dead_refreshed < self.dead_refresh_s:
            return
        oldest_kept = now - self.settings.retention_seconds * 1000
        self.metrics.dead_deliveries.set(await self.deliveries.count_dead(oldest_kept))
        self._dead_refreshed = time.monotonic()
        self._dead_changed = False
