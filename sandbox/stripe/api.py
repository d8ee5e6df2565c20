"""The API's common mechanics, around every endpoint: the outage knob and the delay, ``Bearer`` (or
Basic) auth against the emulator's key, ``Stripe-Account`` and the objects each account owns,
``Idempotency-Key`` (replay, mismatch, in flight), the answer or its error as JSON, and events
flushed after the answer. Also the ids Stripe's objects and requests carry."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.stripe.errors import ApiError
from sandbox.stripe.forms import parse_params

API_VERSION = stripe.api_version
# Stripe removes idempotency keys once they are at least 24 hours old (docs.stripe.com/api/idempotent_requests):
# the same key later is a new request
IDEMPOTENCY_TTL = 24 * 3600
_ID_CHARS = string.ascii_letters + string.digits


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def _masked(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 4) + key[-4:] if len(key) > 12 else "****"


@dataclass
class _Saved:
    """The first answer under an idempotency key, with what it was an answer to."""

    method: str
    path: str
    params: list[tuple[str, str]]
    status: int
    body: bytes
    at: int = 0  # the emulator's clock when it was saved


@dataclass
class _Call:
    account: str  # "" = the platform account; else the Stripe-Account
    params: dict[str, Any]
    path: dict[str, str] = field(default_factory=dict)


Handler = Callable[[_Call], Awaitable[dict[str, Any]]]


class Api:
    """Mixed into ``StripeEmulator``: wraps each resource handler into a Starlette endpoint."""

    def _api(self, operation: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            headers = {"Request-Id": _new_id("req_", 14), "Stripe-Version": API_VERSION}
            if self.down:
                error = ApiError(503, "Stripe is temporarily unavailable (sandbox outage).", type_="api_error")
                return JSONResponse({"error": error.error}, 503, headers=headers)
            raw = (await request.body()).decode("utf-8", "replace") if request.method == "POST" else request.url.query
            pairs = sorted(parse_qsl(raw, keep_blank_values=True))
            key = request.headers.get("idempotency-key") if request.method == "POST" else None
            held = None
            try:
                account = self._authorize(request)
                if key:
                    headers["Idempotency-Key"] = key
                    saved = self._idempotency.get((account, key))
                    if saved is not None and self.now() - saved.at >= IDEMPOTENCY_TTL:
                        del self._idempotency[(account, key)]
                        saved = None
                    if saved is not None:
                        return self._replay(saved, request, pairs, key, headers)
                    if (account, key) in self._in_flight:
                        raise ApiError(
                            409, "There is currently another in-progress request using this Idempotent Key "
                                 "(that probably means you submitted twice, and the other request is still "
                                 f"going through): {key}. Please try again later.",
                            code="idempotency_key_in_use")
                    held = (account, key)
                    self._in_flight.add(held)
                if self.delay:
                    await asyncio.sleep(self.delay)
                body = await handler(_Call(account, parse_params(pairs), dict(request.path_params)))
                status = 200
                self.calls[operation] += 1
            except ApiError as exc:
                status, body = exc.status, {"error": exc.error}
                if exc.saved:  # the endpoint ran (a decline): counted, and kept for the key
                    self.calls[operation] += 1
                else:
                    key = None
            finally:
                if held is not None:
                    self._in_flight.discard(held)
            content = json.dumps(body, indent=2).encode()
            if key:
                self._idempotency[(account, key)] = _Saved(request.method, request.url.path, pairs, status, content,
                                                              self.now())
            # events go out after the answer, as Stripe's do
            background = BackgroundTask(self._flush) if self._outbox else None
            return Response(content, status, headers=headers, media_type="application/json", background=background)

        return endpoint

    def _replay(self, saved: _Saved, request: Request, pairs: list[tuple[str, str]], key: str,
                headers: dict[str, str]) -> Response:
        if (saved.method, saved.path, saved.params) != (request.method, request.url.path, pairs):
            error = ApiError(
                400, "Keys for idempotent requests can only be used with the same parameters they were "
                     f"first used with. Try using a key other than '{key}' if you meant to execute a "
                     "different request.", type_="idempotency_error")
            return JSONResponse({"error": error.error}, 400, headers=headers)
        headers["Idempotent-Replayed"] = "true"
        return Response(saved.body, saved.status, headers=headers, media_type="application/json")

    def _authorize(self, request: Request) -> str:
        """The account the call acts on ("" = the platform); raises 401/403 like Stripe."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                credential = ""
        elif scheme.lower() != "bearer":
            credential = ""
        if not credential:
            raise ApiError(401, "You did not provide an API key. You need to provide your API key in the "
                                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                                "YOUR_SECRET_KEY').")
        if not hmac.compare_digest(credential.encode(), self.secret_key.encode()):
            raise ApiError(401, f"Invalid API Key provided: {_masked(credential)}")
        account = request.headers.get("stripe-account", "")
        if account and account not in self.accounts:
            raise ApiError(403, f"The provided key '{_masked(credential)}' does not have access to account "
                                f"'{account}' (or that account does not exist). Application access may have "
                                "been revoked.", code="account_invalid")
        return account

    def _find(self, store: dict[str, dict[str, Any]], object_id: str, account: str, noun: str,
              param: str = "id") -> dict[str, Any]:
        found = store.get(object_id)
        if found is None or self._owner.get(object_id) != account:
            raise ApiError(404, f"No such {noun}: '{object_id}'", param=param, code="resource_missing")
        return found

    def _store(self, store: dict[str, dict[str, Any]], obj: dict[str, Any], account: str) -> dict[str, Any]:
        store[obj["id"]] = obj
        self._owner[obj["id"]] = account
        return obj

    async def _unknown(self, call: _Call) -> dict[str, Any]:
        raise ApiError(404, f"Unrecognized request URL (/v1/{call.path.get('rest', '')}). Please see "
                            "https://stripe.com/docs or we can help at https://support.stripe.com/.")
