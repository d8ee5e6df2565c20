"""Events: made when a session or a refund changes, signed like Stripe's (``Stripe-Signature: t=…,v1=…``
with the ``whsec_…`` secret) and sent to the bound webhook URL: by the API after its answer, by
the hosted page before its own. ``signed_event`` and ``deliver`` let tests make and send their own."""

from __future__ import annotations

import copy
import json
from typing import Any

import stripe

from sandbox.stripe.api import API_VERSION, _new_id


class Events:
    """Mixed into ``StripeEmulator``: the outbox of events and their delivery."""

    def _event(self, event_type: str, session: dict[str, Any]) -> None:
        event = self._make_event(event_type, session)
        self.events.append(event)
        self._outbox.append(event)

    def _make_event(self, event_type: str, session: dict[str, Any],
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"id": _new_id("evt_", 24), "object": "event"}
        account = self._owner.get(session["id"], "")
        if account:
            event["account"] = account
        event.update({
            "api_version": API_VERSION, "created": self.now(),
            "data": {"object": copy.deepcopy(session) | (overrides or {})}, "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": event_type,
        })
        return event

    def _sign(self, event: dict[str, Any], timestamp: int | None, secret: str | None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event, indent=2, ensure_ascii=False).encode()
        signature = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret or self.webhook_secret, timestamp=timestamp)
        return body, {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
                      "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

    def signed_event(
        self, event_type: str, session_id: str, *, timestamp: int | None = None, secret: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook as Stripe would send it about this session now (``overrides`` replace session
        fields), signed with the emulator's secret (or ``secret``) at ``timestamp`` (default now).
        A ``refund.*`` or ``charge.refund.updated`` event is about a refund: ``session_id`` is then its id
        or refund_no."""
        about_refund = event_type.startswith(("refund.", "charge.refund."))
        found = self.find_refund(session_id) if about_refund else self.sessions.get(session_id)
        if found is None:
            raise KeyError(f"no Checkout Session {session_id!r}")
        return self._sign(self._make_event(event_type, found, overrides), timestamp, secret)

    async def deliver(self, body: bytes, headers: dict[str, str]) -> int:
        """POST a webhook to the bound webhook URL; payrelay's status code (transport errors raise)."""
        answer = await self.post_webhook(self.webhook_url, body, headers, json.loads(body).get("id", ""),
                                         raise_errors=True)
        assert answer is not None
        return answer.status_code

    async def _flush(self) -> None:
        while self._outbox:
            event = self._outbox.pop(0)
            if not self.webhook_url:
                continue
            body, headers = self._sign(event, None, None)
            await self.post_webhook(self.webhook_url, body, headers, event["id"])
