"""PaymentIntents: create (and confirm, off-session on a saved card, declined with ``DECLINES``
when the ``off_session_decline`` knob says so), retrieve and cancel."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.stripe.api import _Call, _new_id
from sandbox.stripe.errors import ApiError, missing
from sandbox.stripe.forms import _amount, _boolean, _currency, _known, _metadata, _string

# off_session_decline → (code, decline_code, message) as Stripe answers them
DECLINES = {
    "authentication_required": ("authentication_required", "authentication_required",
                                "Your card was declined. This transaction requires authentication."),
    "card_declined": ("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
}

_INTENT_PARAMS = frozenset({
    "amount", "currency", "customer", "payment_method", "off_session", "confirm", "metadata",
    "description", "payment_method_types", "statement_descriptor", "capture_method", "receipt_email",
    "error_on_requires_action", "return_url", "expand", "transfer_data", "application_fee_amount",
})
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action",
               "processing")


class Intents:
    """Mixed into ``StripeEmulator``: the ``/v1/payment_intents`` endpoints."""

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
