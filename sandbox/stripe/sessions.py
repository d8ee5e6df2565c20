"""Checkout Sessions: create (with its line items and ``payment_intent_data``), retrieve (with
``expand[]=payment_intent``), expire, and expiry when a session past ``expires_at`` is touched."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.stripe.api import _Call, _new_id
from sandbox.stripe.checkout import PAGE_PREFIX
from sandbox.stripe.errors import ApiError, missing
from sandbox.stripe.forms import _amount, _currency, _integer, _known, _metadata, _string, _url

MIN_EXPIRY = 30 * 60  # expires_at must be at least this far ahead of creation …
MAX_EXPIRY = 24 * 3600  # … and at most this far

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


class Sessions:
    """Mixed into ``StripeEmulator``: the ``/v1/checkout/sessions`` endpoints."""

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
