"""``StripeEmulator``: the state (Stripe's objects as Stripe answers them, by id), the knobs, the
clock, ``env()`` and the routes; the behaviour comes from the mixins, one module each."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from sandbox.base import Emulator
from sandbox.keys import token
from sandbox.stripe.api import Api, _Saved
from sandbox.stripe.checkout import PAGE_PREFIX, Checkout
from sandbox.stripe.customers import Customers
from sandbox.stripe.events import Events
from sandbox.stripe.intents import Intents
from sandbox.stripe.payer import Payer
from sandbox.stripe.refunds import RefundOutcome, Refunds
from sandbox.stripe.sessions import Sessions


class StripeEmulator(Api, Sessions, Customers, Intents, Refunds, Checkout, Events, Payer, Emulator):
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
        self.refunds: dict[str, dict[str, Any]] = {}  # in the order they were made
        self.events: list[dict[str, Any]] = []  # every event made, in order (sent or not)
        self._owner: dict[str, str] = {}  # object id → account ("" = platform)
        self._descriptions: dict[str, str] = {}  # session id → its line item's name, for the page
        self._setup_usage: dict[str, str | None] = {}  # session id → payment_intent_data.setup_future_usage
        self._intent_data: dict[str, dict[str, Any]] = {}  # session id → payment_intent_data metadata etc.
        self._idempotency: dict[tuple[str, str], _Saved] = {}
        self._in_flight: set[tuple[str, str]] = set()  # idempotency keys of requests being handled
        self.delay = 0.0  # seconds every API call waits before it is handled (a slow Stripe)
        self.refund_outcome: RefundOutcome = "succeed"  # what refunds made from now on do (sandbox.stripe.refunds)
        self.refunds_down = False  # refund calls answer 503 and refund nothing
        self.refund_answer_delay = 0.0  # seconds a refund call waits after refunding, before its answer
        self._outbox: list[dict[str, Any]] = []  # events not yet sent
        self._app = self._build_app()

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

    def key_material(self) -> dict[str, str]:
        return {"secret_key": self.secret_key, "webhook_secret": self.webhook_secret}

    @classmethod
    def restored(cls, material: Mapping[str, str]) -> StripeEmulator:
        emulator = cls()
        emulator.secret_key, emulator.webhook_secret = material["secret_key"], material["webhook_secret"]
        return emulator

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
            Route("/v1/refunds", api("refund", self._create_refund), methods=["POST"]),
            Route("/v1/refunds", api("refunds", self._list_refunds), methods=["GET"]),
            Route("/v1/refunds/{id}", api("refund_query", self._retrieve_refund), methods=["GET"]),
            Route("/v1/{rest:path}", api("unknown", self._unknown), methods=["GET", "POST", "DELETE"]),
            Route(PAGE_PREFIX + "{id}", self._page, methods=["GET"]),
            Route(PAGE_PREFIX + "{id}", self._page_action, methods=["POST"]),
        ])
