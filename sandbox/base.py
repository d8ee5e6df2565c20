"""What every gateway emulator offers the tests, the contract suite and `payrelay demo`."""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal, Self

import httpx

Outcome = Literal["paid", "processing", "failed", "cancel"]


class Emulator(abc.ABC):
    """One gateway's emulator: an ASGI ``app`` plus the knobs and counters tests need.

    Lifecycle: build it, serve ``app`` (``sandbox.runner``), then ``bind(base_url, webhook_url)``
    with the URL it is served at and payrelay's webhook URL for it (gateways that take the notify
    URL from each request ignore the second). ``env()`` then gives the PAYRELAY_* variables that
    point payrelay at this emulator, with freshly generated keys (or those it was ``restored`` with).
    """

    gateway_type: str

    def __init__(self) -> None:
        self.base_url = ""
        self.webhook_url = ""
        self.calls: Counter[str] = Counter()  # API calls by operation: create, query, close, …
        self.down = False  # True: every API call answers like an outage (503), nothing changes
        self.webhooks_sent: list[tuple[str, int | None]] = []  # (event id, payrelay's status code)
        self.last_webhook: tuple[str, bytes, dict[str, str], str] | None = None

    def bind(self, base_url: str, webhook_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.webhook_url = webhook_url

    def acknowledged(self, answer: httpx.Response) -> bool:
        """Whether the gateway takes payrelay's answer as "received" (most: any 2xx)."""
        return answer.is_success

    async def post_webhook(self, url: str, body: bytes, headers: Mapping[str, str], event_id: str,
                           *, raise_errors: bool = False) -> httpx.Response | None:
        """POST one webhook the way the gateway does and remember it (``redeliver``). Records
        payrelay's status code in ``webhooks_sent`` — None when nothing answered, or when a 2xx
        answer is not what this gateway counts as received. None: transport error."""
        self.last_webhook = (url, body, dict(headers), event_id)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError:
            self.webhooks_sent.append((event_id, None))
            if raise_errors:
                raise
            return None
        taken = self.acknowledged(answer) or not answer.is_success
        self.webhooks_sent.append((event_id, answer.status_code if taken else None))
        return answer

    async def redeliver(self) -> int | None:
        """Send the last webhook again, byte for byte: gateways deliver at least once."""
        if self.last_webhook is None:
            raise ValueError("no webhook has been sent yet")
        url, body, headers, event_id = self.last_webhook
        answer = await self.post_webhook(url, body, headers, event_id)
        return None if answer is None else answer.status_code

    @property
    @abc.abstractmethod
    def app(self) -> Any: ...

    @abc.abstractmethod
    def env(self) -> dict[str, str]: ...

    @abc.abstractmethod
    def key_material(self) -> dict[str, str]:
        """Every id and key this emulator was made with, its own private keys too: what
        ``restored`` takes to make one that payrelay's configuration from ``env()`` still fits
        (``payrelay sandbox`` keeps it across restarts)."""

    @classmethod
    @abc.abstractmethod
    def restored(cls, material: Mapping[str, str]) -> Self:
        """An emulator with the ids and keys of ``key_material()``; KeyError or ValueError when
        ``material`` is not what ``key_material`` gave."""

    @abc.abstractmethod
    async def pay(self, payment_url: str, outcome: Outcome = "paid") -> str:
        """Act as the customer over HTTP: open ``payment_url`` and pay (or fail, cancel, or start
        a payment that stays in flight). Returns the URL the customer's browser lands on (the
        redirect target) or "" where there is none (WeChat). Webhooks go out before it returns."""

    @abc.abstractmethod
    async def settle(self, payment_id: str, outcome: Literal["paid", "failed"]) -> None:
        """Finish a payment left in flight by ``pay(…, "processing")`` and send its webhook."""
