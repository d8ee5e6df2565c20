"""Stripe emulator: the slice of Stripe's API payrelay uses, a hosted checkout page, signed events.

Faithful where payrelay and the official ``stripe`` SDK (``base_addresses={"api": base_url}``) can
tell the difference:
- Stripe's wire format: form-encoded nested keys in (``line_items[0][price_data][unit_amount]``),
  JSON out, errors as ``{"error": {"type", "message", "param", "code"}}`` with Stripe's statuses
  (400 invalid request, 401 bad key, 402 card error, 403 no access to the account, 404 missing);
  unknown parameters are refused, like Stripe does;
- ``Authorization: Bearer sk_…`` against the emulator's key; ``Stripe-Account`` keeps connected
  accounts apart (an object made under one account is ``resource_missing`` under another);
- ``Idempotency-Key``: the same key and parameters replay the first answer (header
  ``Idempotent-Replayed: true``); different parameters under the key are an ``idempotency_error``;
  like Stripe, answers that failed validation are not saved, declines (402) are; a request while
  another with the same key is still being handled is a 409 ``idempotency_key_in_use``;
- Checkout Sessions: ``expires_at`` 30 min to 24 h ahead; expire works on open sessions only;
  sessions past ``expires_at`` expire when next touched (and send ``checkout.session.expired``);
  the PaymentIntent is made when the customer pays (``payment_intent`` is null before);
- ``payment_intent_data[setup_future_usage]`` (or ``customer_creation=always``) makes a Customer at
  completion; a card payment with setup_future_usage saves its PaymentMethod on it, which a later
  off-session PaymentIntent (``off_session=true&confirm=true``) can charge;
- events signed like Stripe's (``Stripe-Signature: t=…,v1=…``) with the ``whsec_…`` secret.

The customer's side is the hosted page ``/c/pay/{id}``: Pay (card), Pay with bank transfer (delayed:
complete but unpaid until settled on the same page), Decline (card declined, the session stays
open), Cancel (back to ``cancel_url``). Knobs: ``down`` (503 everywhere), ``off_session_decline``
(off-session charges decline with that code), ``delay`` (seconds each API call waits before it is
handled), ``advance()`` (move the emulator's clock).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from string import Template
from typing import Any, Literal
from urllib.parse import parse_qsl, urljoin

import httpx
import stripe
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.base import Emulator, Outcome
from sandbox.keys import token

API_VERSION = stripe.api_version
MIN_EXPIRY = 30 * 60  # expires_at must be at least this far ahead of creation …
MAX_EXPIRY = 24 * 3600  # … and at most this far
PAGE_PREFIX = "/c/pay/"
# Stripe's own lists (they differ slightly from ISO 4217's exponents)
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                          "vuv", "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Whole minor units Stripe still refuses: three-decimal currencies are charged in whole hundredths
# only, and ISK, a two-decimal currency at Stripe (not in ISO 4217), in whole krónur only.
AMOUNT_STEPS = {**{currency: 10 for currency in THREE_DECIMAL}, "isk": 100}
# off_session_decline → (code, decline_code, message) as Stripe answers them
DECLINES = {
    "authentication_required": ("authentication_required", "authentication_required",
                                "Your card was declined. This transaction requires authentication."),
    "card_declined": ("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
}
# customer actions on the hosted page, by the form's action field
PAGE_ACTIONS = {"paid": "pay", "processing": "delayed", "failed": "decline", "cancel": "cancel"}

_SESSION_PARAMS = frozenset({
    "mode", "line_items", "success_url", "cancel_url", "client_reference_id", "customer",
    "customer_email", "customer_creation", "metadata", "expires_at", "payment_intent_data",
    "payment_method_types", "locale", "ui_mode", "submit_type", "expand", "currency",
    "allow_promotion_codes", "billing_address_collection",
})
_PAYMENT_INTENT_DATA = frozenset({
    "setup_future_usage", "metadata", "description", "capture_method", "statement_descriptor",
    "statement_descriptor_suffix", "receipt_email", "transfer_data", "application_fee_amount", "on_behalf_of",
})
_INTENT_PARAMS = frozenset({
    "amount", "currency", "customer", "payment_method", "off_session", "confirm", "metadata",
    "description", "payment_method_types", "statement_descriptor", "capture_method", "receipt_email",
    "error_on_requires_action", "return_url", "expand", "transfer_data", "application_fee_amount",
})
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action",
               "processing")
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_INTEGER = re.compile(r"-?[0-9]+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_ID_CHARS = string.ascii_letters + string.digits
_TEMPLATE = Path(__file__).parent / "templates" / "stripe_checkout.html"


class CheckoutError(Exception):
    """The hosted page would not do what the customer asked (session expired, complete, unknown)."""


class ApiError(Exception):
    """An answer in Stripe's error format."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, extra: dict[str, Any] | None = None,
                 saved: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param
        self.error.update(extra or {})
        self.saved = saved  # the endpoint ran: Stripe keeps this answer for the idempotency key


def missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required param: {param}.", param=param, code="parameter_missing")


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def parse_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's nested form keys → dicts and lists: ``a[b][0][c]=1`` → {"a": {"b": [{"c": "1"}]}}."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise ApiError(400, f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ApiError(400, f"Invalid hash or array: {key}", param=key)
            node = child
        last = parts[-1] or str(len(node))  # "expand[]=x" appends
        if isinstance(node.get(last), dict):
            raise ApiError(400, f"Invalid parameter: {key} is a hash", param=key)
        node[last] = value
    result = _arrays(root)
    assert isinstance(result, dict)
    return result


def _arrays(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _arrays(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _known(params: dict[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            name = f"{prefix}[{key}]" if prefix else key
            raise ApiError(400, f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def _integer(value: Any, param: str, minimum: int | None = None) -> int:
    if not isinstance(value, str) or _INTEGER.fullmatch(value) is None:
        raise ApiError(400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ApiError(400, f"This value must be greater than or equal to {minimum}.", param=param,
                       code="parameter_invalid_integer")
    return number


def _boolean(value: Any, param: str) -> bool:
    if value not in ("true", "false"):
        raise ApiError(400, f"Invalid boolean: {value}", param=param)
    return value == "true"


def _string(params: dict[str, Any], key: str, prefix: str = "", *, limit: int = 5000) -> str | None:
    value = params.get(key)
    name = f"{prefix}[{key}]" if prefix else key
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid string: {name} must be a string", param=name)
    if len(value) > limit:
        raise ApiError(400, f"Invalid string: {value[:20]}...; must be at most {limit} characters",
                       param=name)
    return value


def _url(params: dict[str, Any], key: str) -> str | None:
    value = _string(params, key, limit=5000)
    if value is not None and re.match(r"https?://[^/\s]+", value) is None:
        raise ApiError(400, "Not a valid URL", param=key, code="url_invalid")
    return value


def _currency(value: Any, param: str) -> str:
    if not isinstance(value, str) or _CURRENCY.fullmatch(value) is None:
        raise ApiError(400, f"Invalid currency: {value}. Stripe currently supports three-letter ISO "
                            "currency codes in lowercase.", param=param)
    return value.lower()


def _amount(value: Any, currency: str, param: str) -> int:
    amount = _integer(value, param, minimum=1)
    step = AMOUNT_STEPS.get(currency, 1)
    if amount % step:
        raise ApiError(400, f"Invalid amount: {currency.upper()} amounts must be a multiple of {step}.",
                       param=param, code="amount_invalid")
    return amount


def _metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid object", param=param)
    if len(value) > 50:
        raise ApiError(400, "Metadata can have at most 50 keys.", param=param)
    for key, item in value.items():
        if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
            raise ApiError(400, "Metadata keys must be at most 40 characters and values strings of at "
                                "most 500 characters.", param=f"{param}[{key}]")
    return dict(value)


def display_amount(minor: int, currency: str) -> str:
    digits = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    if digits == 0:
        return f"{minor:,} {currency.upper()}"
    whole, fraction = divmod(minor, 10**digits)
    return f"{whole:,}.{fraction:0{digits}d} {currency.upper()}"


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


@dataclass
class _Call:
    account: str  # "" = the platform account; else the Stripe-Account
    params: dict[str, Any]
    path: dict[str, str] = field(default_factory=dict)


Handler = Callable[[_Call], Awaitable[dict[str, Any]]]


class StripeEmulator(Emulator):
    gateway_type = "stripe-connect"

    def __init__(self, connect_account: str | None = None) -> None:
        super().__init__()
        self.secret_key = token("sk_test_")
        self.webhook_secret = token("whsec_")
        self.connect_account = connect_account
        self.accounts: set[str] = {connect_account} if connect_account else set()  # connected accounts
        self.off_session_decline: str | None = None  # a DECLINES key: off-session charges decline so
        self.clock_offset = 0.0
        self.sessions: dict[str, dict[str, Any]] = {}  # Stripe objects as Stripe answers them, by id
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # every event made, in order (sent or not)
        self._owner: dict[str, str] = {}  # object id → account ("" = platform)
        self._descriptions: dict[str, str] = {}  # session id → its line item's name, for the page
        self._setup_usage: dict[str, str | None] = {}  # session id → payment_intent_data.setup_future_usage
        self._intent_data: dict[str, dict[str, Any]] = {}  # session id → payment_intent_data metadata etc.
        self._idempotency: dict[tuple[str, str], _Saved] = {}
        self._in_flight: set[tuple[str, str]] = set()  # idempotency keys of requests being handled
        self.delay = 0.0  # seconds every API call waits before it is handled (a slow Stripe)
        self._outbox: list[dict[str, Any]] = []  # events not yet sent
        self._app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return self._app

    def env(self) -> dict[str, str]:
        env = {
            "PAYRELAY_STRIPE_SECRET_KEY": self.secret_key,
            "PAYRELAY_STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "PAYRELAY_STRIPE_API_BASE": self.base_url,
        }
        if self.connect_account:
            env["PAYRELAY_STRIPE_CONNECT_ACCOUNT"] = self.connect_account
        return env

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (not the signatures' timestamps, which payrelay checks)."""
        self.clock_offset += seconds

    def _build_app(self) -> Starlette:
        api = self._api
        return Starlette(routes=[
            Route("/v1/checkout/sessions", api("create", self._create_session), methods=["POST"]),
            Route("/v1/checkout/sessions/{id}", api("query", self._retrieve_session), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}/expire", api("close", self._expire_session), methods=["POST"]),
            Route("/v1/customers", api("customer", self._create_customer), methods=["POST"]),
            Route("/v1/customers", api("customers", self._list_customers), methods=["GET"]),
            Route("/v1/customers/{id}", api("customer", self._retrieve_customer), methods=["GET"]),
            Route("/v1/customers/{id}/payment_methods", api("payment_methods", self._list_methods),
                  methods=["GET"]),
            Route("/v1/payment_intents", api("charge", self._create_intent), methods=["POST"]),
            Route("/v1/payment_intents/{id}", api("query", self._retrieve_intent), methods=["GET"]),
            Route("/v1/payment_intents/{id}/cancel", api("close", self._cancel_intent), methods=["POST"]),
            Route("/v1/{rest:path}", api("unknown", self._unknown), methods=["GET", "POST", "DELETE"]),
            Route(PAGE_PREFIX + "{id}", self._page, methods=["GET"]),
            Route(PAGE_PREFIX + "{id}", self._page_action, methods=["POST"]),
        ])

    # -- the API's common mechanics -------------------------------------------------------------

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
                self._idempotency[(account, key)] = _Saved(request.method, request.url.path, pairs, status, content)
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

    # -- Checkout Sessions ----------------------------------------------------------------------

    async def _create_session(self, call: _Call) -> dict[str, Any]:
        params = call.params
        _known(params, _SESSION_PARAMS)
        mode = _string(params, "mode")
        if mode is None:
            raise missing("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise ApiError(400, "Invalid mode: must be one of payment, setup, or subscription", param="mode")
        if mode != "payment":
            raise ApiError(400, f"mode={mode} is not emulated by the payrelay sandbox", param="mode")
        if params.get("ui_mode") not in (None, "hosted"):
            raise ApiError(400, "The payrelay sandbox emulates only ui_mode=hosted", param="ui_mode")
        success_url = _url(params, "success_url")
        if success_url is None:
            raise missing("success_url")
        cancel_url = _url(params, "cancel_url")
        currency, amount, name = self._line_items(params.get("line_items"))
        now = self.now()
        expires_at = now + MAX_EXPIRY
        if params.get("expires_at") not in (None, ""):
            expires_at = _integer(params["expires_at"], "expires_at")
            if not now + MIN_EXPIRY <= expires_at <= now + MAX_EXPIRY:
                raise ApiError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                                    "Checkout Session creation.", param="expires_at")
        customer = _string(params, "customer")
        email = _string(params, "customer_email", limit=800)
        if customer and email:
            raise ApiError(400, "You may only specify one of these parameters: customer, customer_email.",
                           param="customer_email")
        if customer:
            self._find(self.customers, customer, call.account, "customer", "customer")
        if email is not None and "@" not in email:
            raise ApiError(400, "Invalid email address: " + email, param="customer_email", code="email_invalid")
        creation = _string(params, "customer_creation")
        if creation not in (None, "always", "if_required"):
            raise ApiError(400, "Invalid customer_creation: must be one of always or if_required",
                           param="customer_creation")
        if creation and customer:
            raise ApiError(400, "You may only specify one of these parameters: customer, customer_creation.",
                           param="customer_creation")
        intent_data = params.get("payment_intent_data") or {}
        if not isinstance(intent_data, dict):
            raise ApiError(400, "Invalid object", param="payment_intent_data")
        _known(intent_data, _PAYMENT_INTENT_DATA, "payment_intent_data")
        usage = _string(intent_data, "setup_future_usage", "payment_intent_data")
        if usage not in (None, "on_session", "off_session"):
            raise ApiError(400, "Invalid setup_future_usage: must be one of on_session or off_session",
                           param="payment_intent_data[setup_future_usage]")
        session = {
            "id": _new_id("cs_test_a1", 56),
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": cancel_url,
            "client_reference_id": _string(params, "client_reference_id", limit=200),
            "created": now,
            "currency": currency,
            "customer": customer,
            "customer_creation": creation or ("if_required" if not customer else None),
            "customer_details": None,
            "customer_email": email,
            "expires_at": expires_at,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": _metadata(params.get("metadata")),
            "mode": mode,
            "payment_intent": None,
            "payment_method_types": ["card", "us_bank_account"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": success_url,
            "ui_mode": "hosted",
            "url": None,
        }
        session_id = str(session["id"])
        session["url"] = f"{self.base_url}{PAGE_PREFIX}{session_id}"
        self._store(self.sessions, session, call.account)
        self._descriptions[session_id] = name
        self._setup_usage[session_id] = usage
        self._intent_data[session_id] = {
            "metadata": _metadata(intent_data.get("metadata"), "payment_intent_data[metadata]"),
            "description": _string(intent_data, "description", "payment_intent_data", limit=1000),
        }
        return session

    @staticmethod
    def _line_items(items: Any) -> tuple[str, int, str]:
        """(currency, amount_total, first item's name) of ad-hoc price_data line items."""
        if not items:
            raise missing("line_items")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ApiError(400, "Invalid array", param="line_items")
        currencies, total, names = set(), 0, []
        for index, item in enumerate(items):
            where = f"line_items[{index}]"
            _known(item, frozenset({"price_data", "quantity", "price", "adjustable_quantity"}), where)
            if "price" in item:
                raise ApiError(400, "The payrelay sandbox has no Prices: use price_data", param=f"{where}[price]")
            data = item.get("price_data")
            if not isinstance(data, dict):
                raise missing(f"{where}[price_data]")
            _known(data, frozenset({"currency", "unit_amount", "product_data", "product", "tax_behavior"}),
                   f"{where}[price_data]")
            if "currency" not in data:
                raise missing(f"{where}[price_data][currency]")
            currency = _currency(data["currency"], f"{where}[price_data][currency]")
            currencies.add(currency)
            if "unit_amount" not in data:
                raise missing(f"{where}[price_data][unit_amount]")
            unit = _amount(data["unit_amount"], currency, f"{where}[price_data][unit_amount]")
            if "quantity" not in item:
                raise missing(f"{where}[quantity]")
            quantity = _integer(item["quantity"], f"{where}[quantity]", minimum=1)
            product = data.get("product_data")
            if not isinstance(product, dict):
                raise missing(f"{where}[price_data][product_data]")
            _known(product, frozenset({"name", "description", "images", "metadata", "tax_code", "unit_label"}),
                   f"{where}[price_data][product_data]")
            name = _string(product, "name", f"{where}[price_data][product_data]")
            if name is None:
                raise missing(f"{where}[price_data][product_data][name]")
            names.append(name)
            total += unit * quantity
        if len(currencies) != 1:
            raise ApiError(400, "All line items must use the same currency.", param="line_items")
        return currencies.pop(), total, names[0]

    async def _retrieve_session(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"expand"}))
        session = self._find(self.sessions, call.path["id"], call.account, "checkout.session")
        self._expire_if_due(session)
        answer = copy.deepcopy(session)
        for path in call.params.get("expand") or []:
            if path != "payment_intent":
                raise ApiError(400, f"This property cannot be expanded ({path}).", param="expand")
            if answer["payment_intent"]:
                answer["payment_intent"] = copy.deepcopy(self.payment_intents[answer["payment_intent"]])
        return answer

    async def _expire_session(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"expand"}))
        session = self._find(self.sessions, call.path["id"], call.account, "checkout.session")
        self._expire_if_due(session)
        if session["status"] != "open":
            raise ApiError(400, 'Only Checkout Sessions with a status in ["open"] can be expired. This '
                                f'Checkout Session has a status of "{session["status"]}".')
        self._expire(session)
        return copy.deepcopy(session)

    def _expire_if_due(self, session: dict[str, Any]) -> None:
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self._expire(session)

    def _expire(self, session: dict[str, Any]) -> None:
        session["status"] = "expired"
        session["url"] = None
        self._event("checkout.session.expired", session)

    # -- Customers, PaymentMethods, PaymentIntents ----------------------------------------------

    async def _create_customer(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"email", "name", "description", "metadata", "payment_method"}))
        return self._new_customer(call.account, _string(call.params, "email", limit=512),
                                  _string(call.params, "name", limit=256), _metadata(call.params.get("metadata")))

    def _new_customer(self, account: str, email: str | None, name: str | None = None,
                      metadata: dict[str, str] | None = None) -> dict[str, Any]:
        return self._store(self.customers, {
            "id": _new_id("cus_", 14), "object": "customer", "created": self.now(), "email": email,
            "name": name, "livemode": False, "metadata": metadata or {},
            "invoice_settings": {"default_payment_method": None},
        }, account)

    async def _list_customers(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"email", "limit", "starting_after", "ending_before", "created"}))
        email = _string(call.params, "email", limit=512)
        found = [c for c in self.customers.values()
                 if self._owner[c["id"]] == call.account and (email is None or c["email"] == email)]
        return self._list(found, call.params, "/v1/customers")

    async def _retrieve_customer(self, call: _Call) -> dict[str, Any]:
        return self._find(self.customers, call.path["id"], call.account, "customer")

    async def _list_methods(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"type", "limit", "starting_after", "ending_before", "allow_redisplay"}))
        customer = self._find(self.customers, call.path["id"], call.account, "customer", "customer")
        kind = _string(call.params, "type")
        found = [m for m in self.payment_methods.values()
                 if m["customer"] == customer["id"] and (kind is None or m["type"] == kind)]
        return self._list(found, call.params, f"/v1/customers/{customer['id']}/payment_methods")

    @staticmethod
    def _list(objects: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
        limit = _integer(params.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise ApiError(400, "This value must be less than or equal to 100.", param="limit")
        newest_first = list(reversed(objects))  # insertion order is creation order
        return {"object": "list", "data": newest_first[:limit], "has_more": len(newest_first) > limit, "url": url}

    def _new_method(self, account: str, kind: str, customer: str | None, email: str | None) -> dict[str, Any]:
        details: dict[str, Any] = (
            {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034, "country": "US"}
            if kind == "card" else {"bank_name": "STRIPE TEST BANK", "last4": "6789", "account_type": "checking"}
        )
        return self._store(self.payment_methods, {
            "id": _new_id("pm_", 24), "object": "payment_method", "type": kind, kind: details,
            "billing_details": {"email": email}, "customer": customer, "created": self.now(), "livemode": False,
        }, account)

    def _new_intent(self, account: str, **fields: Any) -> dict[str, Any]:
        intent = {
            "id": _new_id("pi_", 24), "object": "payment_intent", "amount": 0, "amount_received": 0,
            "canceled_at": None, "cancellation_reason": None, "created": self.now(), "currency": "usd",
            "customer": None, "description": None, "last_payment_error": None, "latest_charge": None,
            "livemode": False, "metadata": {}, "payment_method": None, "setup_future_usage": None,
            "status": "requires_payment_method",
        }
        intent.update(fields)
        return self._store(self.payment_intents, intent, account)

    async def _create_intent(self, call: _Call) -> dict[str, Any]:
        params = call.params
        _known(params, _INTENT_PARAMS)
        if "amount" not in params:
            raise missing("amount")
        if "currency" not in params:
            raise missing("currency")
        currency = _currency(params["currency"], "currency")
        amount = _amount(params["amount"], currency, "amount")
        customer = _string(params, "customer")
        if customer:
            self._find(self.customers, customer, call.account, "customer", "customer")
        method_id = _string(params, "payment_method")
        method = self._find(self.payment_methods, method_id, call.account, "PaymentMethod",
                            "payment_method") if method_id else None
        if method is not None and method["customer"] != customer:
            raise ApiError(400, f"The provided PaymentMethod {method_id} does not belong to the Customer "
                                f"{customer}. Attach it to that Customer first.", param="payment_method")
        confirm = _boolean(params.get("confirm", "false"), "confirm")
        off_session = _boolean(params.get("off_session", "false"), "off_session")
        if off_session and not confirm:
            raise ApiError(400, "You can only pass in `off_session` when `confirm` is true.", param="off_session")
        if confirm and method is None:
            raise ApiError(400, "You cannot confirm this PaymentIntent because it's missing a payment method.",
                           code="payment_intent_unexpected_state")
        intent = self._new_intent(
            call.account, amount=amount, currency=currency, customer=customer, payment_method=method_id,
            description=_string(params, "description", limit=1000), metadata=_metadata(params.get("metadata")),
            status="requires_confirmation" if method else "requires_payment_method",
        )
        if not confirm:
            return copy.deepcopy(intent)
        if off_session and self.off_session_decline:
            code, decline_code, message = DECLINES.get(self.off_session_decline, DECLINES["card_declined"])
            intent["last_payment_error"] = {"type": "card_error", "code": code, "decline_code": decline_code,
                                            "message": message, "payment_method": copy.deepcopy(method)}
            intent["status"] = "requires_payment_method"
            raise ApiError(402, message, type_="card_error", code=code, saved=True, extra={
                "decline_code": decline_code, "payment_intent": copy.deepcopy(intent),
                "payment_method": copy.deepcopy(method)})
        intent.update(status="succeeded", amount_received=amount, latest_charge=_new_id("ch_", 24))
        return copy.deepcopy(intent)

    async def _retrieve_intent(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"expand", "client_secret"}))
        return self._find(self.payment_intents, call.path["id"], call.account, "payment_intent")

    async def _cancel_intent(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"cancellation_reason", "expand"}))
        intent = self._find(self.payment_intents, call.path["id"], call.account, "payment_intent")
        if intent["status"] not in _CANCELABLE:
            raise ApiError(400, "You cannot cancel this PaymentIntent because it has a status of "
                                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                                f"may be canceled: {', '.join(_CANCELABLE)}.",
                           code="payment_intent_unexpected_state")
        intent.update(status="canceled", canceled_at=self.now(),
                      cancellation_reason=_string(call.params, "cancellation_reason"))
        return intent

    # -- the customer's side: paying a session --------------------------------------------------

    def _complete(self, session: dict[str, Any], *, paid: bool) -> None:
        """The customer paid by card (paid) or started a bank transfer (complete but unpaid)."""
        account = self._owner[session["id"]]
        usage = self._setup_usage[session["id"]]
        email = session["customer_email"] or "customer@example.com"
        if session["customer"] is None and (usage or session["customer_creation"] == "always"):
            session["customer"] = self._new_customer(account, email)["id"]
        method = self._new_method(account, "card" if paid else "us_bank_account", None, email)
        if usage and paid:
            method["customer"] = session["customer"]
        data = self._intent_data[session["id"]]
        intent = self._new_intent(
            account, amount=session["amount_total"], currency=session["currency"], customer=session["customer"],
            payment_method=method["id"], setup_future_usage=usage, metadata=dict(data["metadata"]),
            description=data["description"], status="succeeded" if paid else "processing",
            amount_received=session["amount_total"] if paid else 0,
            latest_charge=_new_id("ch_", 24),
        )
        session.update(status="complete", payment_status="paid" if paid else "unpaid", url=None,
                       payment_intent=intent["id"], customer_details={"email": email, "name": None})
        self._event("checkout.session.completed", session)

    def _settle(self, session: dict[str, Any], paid: bool) -> None:
        intent = self.payment_intents[session["payment_intent"]]
        if paid:
            intent.update(status="succeeded", amount_received=intent["amount"])
            session["payment_status"] = "paid"
            if intent["setup_future_usage"]:
                self.payment_methods[intent["payment_method"]]["customer"] = session["customer"]
            self._event("checkout.session.async_payment_succeeded", session)
        else:
            intent.update(status="requires_payment_method", last_payment_error={
                "type": "invalid_request_error", "code": "bank_account_unusable",
                "message": "The bank transfer failed."})
            self._event("checkout.session.async_payment_failed", session)

    def _pending(self, session: dict[str, Any]) -> bool:
        """Complete, unpaid and its bank transfer still in flight."""
        intent = self.payment_intents.get(session["payment_intent"] or "")
        return session["status"] == "complete" and intent is not None and intent["status"] == "processing"

    async def _page(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(self._render_missing(), 404)
        self._expire_if_due(session)
        await self._flush()
        return HTMLResponse(self._render(session))

    async def _page_action(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(self._render_missing(), 404)
        self._expire_if_due(session)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        action = form.get("action", "")
        if action in ("pay", "delayed", "decline", "cancel") and session["status"] != "open":
            await self._flush()
            return HTMLResponse(self._render(session, "This Checkout Session can no longer be paid.", True), 400)
        if action in ("settle_paid", "settle_failed") and not self._pending(session):
            return HTMLResponse(self._render(session, "There is no bank transfer in flight to settle.", True), 400)
        if action in ("pay", "delayed"):
            self._complete(session, paid=action == "pay")
            await self._flush()
            target = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
            return RedirectResponse(target, 303)
        if action == "decline":
            return HTMLResponse(self._render(session, "Your card was declined. Try another card.", True))
        if action == "cancel":
            return RedirectResponse(session["cancel_url"] or request.url.path, 303)
        if action in ("settle_paid", "settle_failed"):
            self._settle(session, paid=action == "settle_paid")
            await self._flush()
            return HTMLResponse(self._render(session))
        return HTMLResponse(self._render(session, f"Unknown action {action!r}.", True), 400)

    def _render(self, session: dict[str, Any], notice: str = "", error: bool = False) -> str:
        action = f"{PAGE_PREFIX}{session['id']}"
        amount = display_amount(session["amount_total"], session["currency"])
        buttons: list[tuple[str, str, bool]] = []
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if session["status"] == "open":
            buttons = [("pay", f"Pay {amount}", False), ("delayed", "Pay with bank transfer (delayed)", False),
                       ("decline", "Decline (card 4000 0000 0000 0002)", True), ("cancel", "Cancel", True)]
        elif self._pending(session):
            notice = notice or "Bank transfer initiated: the payment completes when the funds arrive."
            buttons = [("settle_paid", "Funds arrive (settle as paid)", False),
                       ("settle_failed", "Transfer fails (settle as failed)", True)]
        elif session["status"] == "expired":
            notice, error = notice or "This Checkout Session has expired and can no longer be paid.", True
        elif session["payment_status"] == "paid":
            notice = notice or "Payment complete. Thank you!"
        elif intent is not None and intent["status"] == "requires_payment_method":
            notice, error = notice or "The bank transfer failed.", True
        forms = "\n  ".join(
            f'<form method="post" action="{escape(action)}"><input type="hidden" name="action" value="{name}">'
            f'<button type="submit"{" class=secondary" if secondary else ""}>{escape(label)}</button></form>'
            for name, label, secondary in buttons
        )
        notice_html = (f'<p class="notice{" error" if error else ""}" role="status">{escape(notice)}</p>'
                       if notice else "")
        return Template(_TEMPLATE.read_text(encoding="utf-8")).substitute(
            title=escape("Pay " + (session["client_reference_id"] or "")).strip(),
            amount=escape(amount), description=escape(self._descriptions.get(session["id"], "")),
            email=escape(session["customer_email"] or "—"), session_id=escape(session["id"]),
            notice=notice_html, actions=forms,
        )

    @staticmethod
    def _render_missing() -> str:
        return "<!doctype html><title>Not found</title><p>This Checkout Session does not exist.</p>"

    # -- events and webhooks --------------------------------------------------------------------

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
        fields), signed with the emulator's secret (or ``secret``) at ``timestamp`` (default now)."""
        session = self.sessions.get(session_id)
        if session is None:
            raise KeyError(f"no Checkout Session {session_id!r}")
        return self._sign(self._make_event(event_type, session, overrides), timestamp, secret)

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

    # -- acting as the customer (tests, contract suite) -----------------------------------------

    async def pay(self, payment_url: str, outcome: Outcome = "paid") -> str:
        action = PAGE_ACTIONS[outcome]
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
            page = await http.get(payment_url)
            if page.status_code != 200:
                raise CheckoutError(f"checkout page answered {page.status_code}")
            form = _form(page.text, action)
            if form is None:
                raise CheckoutError(f"the checkout page offers no {action!r}: {_notice(page.text)}")
            answer = await http.post(urljoin(payment_url, form[0]), data=form[1])
        if answer.status_code == 303:
            return answer.headers["location"]
        if answer.status_code == 200:  # declined: the customer is still on the page
            return payment_url
        raise CheckoutError(f"checkout page refused {action!r} ({answer.status_code}): {_notice(answer.text)}")

    async def settle(self, payment_id: str, outcome: Literal["paid", "failed"]) -> None:
        pending = [s for s in self.sessions.values() if s["client_reference_id"] == payment_id and self._pending(s)]
        if not pending:
            raise CheckoutError(f"no bank transfer in flight for {payment_id!r}")
        url = f"{self.base_url}{PAGE_PREFIX}{pending[-1]['id']}"
        async with httpx.AsyncClient(timeout=10) as http:
            form = _form((await http.get(url)).text, f"settle_{outcome}")
            if form is None:
                raise CheckoutError(f"the checkout page offers no way to settle {payment_id!r}")
            answer = await http.post(urljoin(url, form[0]), data=form[1])
        if answer.status_code != 200:
            raise CheckoutError(f"settling {payment_id!r} answered {answer.status_code}: {_notice(answer.text)}")


class _Forms(HTMLParser):
    """The page's forms: (action, fields) with their hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.notice = ""
        self._in_notice = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")
        elif tag == "p" and "notice" in attributes.get("class", ""):
            self._in_notice = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_notice = False

    def handle_data(self, data: str) -> None:
        if self._in_notice:
            self.notice += data


def _form(page: str, action: str) -> tuple[str, dict[str, str]] | None:
    parser = _Forms()
    parser.feed(page)
    return next((form for form in parser.forms if form[1].get("action") == action), None)


def _notice(page: str) -> str:
    parser = _Forms()
    parser.feed(page)
    return parser.notice.strip() or page[:200]
