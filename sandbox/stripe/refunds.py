"""Refunds: create on a PaymentIntent (``POST /v1/refunds``), list (``GET /v1/refunds``, newest first,
by ``payment_intent``), retrieve, and what happens to a refund later (``settle_refund``), with the
``refund.*`` events Stripe sends (and ``charge.refunded`` for the charge).

What the refund does is the ``refund_outcome`` knob's choice at the time it is made:
- ``"succeed"``: succeeded at once (a card refund usually is);
- ``"succeed_later"`` / ``"fail_later"``: ``pending`` until ``settle_refund`` (or the hosted page)
  settles it; the knob only names what the page suggests, the settle call decides;
- ``"fail_after_success"``: succeeded at once, and ``settle_refund(…, "failed")`` fails it later,
  as when the customer's bank returns the money (docs.stripe.com/refunds#failed-refunds).
``refunds_down`` answers refund calls with a 503 and changes nothing; ``refund_answer_delay``
makes the refund, sends its events, and only then waits that many seconds before answering: a
client with a shorter timeout never learns that the refund was made.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, Literal

from sandbox.stripe.api import _Call, _new_id
from sandbox.stripe.currencies import display_amount
from sandbox.stripe.errors import ApiError
from sandbox.stripe.forms import _amount, _integer, _known, _metadata, _string

RefundOutcome = Literal["succeed", "succeed_later", "fail_later", "fail_after_success"]
REFUND_OUTCOMES: tuple[RefundOutcome, ...] = ("succeed", "succeed_later", "fail_later", "fail_after_success")
# the reasons a caller may give (docs.stripe.com/api/refunds/create#create_refund-reason);
# Stripe sets a fourth, expired_uncaptured_charge, itself
REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Refund.failure_reason's documented values (docs.stripe.com/api/refunds/object#refund_object-failure_reason)
FAILURE_REASONS = frozenset({"lost_or_stolen_card", "expired_or_canceled_card", "charge_for_pending_refund_disputed",
                             "insufficient_funds", "declined", "merchant_request", "unknown"})
# a refund in these states holds its amount: what remains to refund does not count it again
_HOLDING = ("pending", "requires_action", "succeeded")

_REFUND_PARAMS = frozenset({
    "amount", "charge", "payment_intent", "metadata", "reason", "expand", "instructions_email",
    "refund_application_fee", "reverse_transfer", "currency", "customer", "origin",
})


class Refunds:
    """Mixed into ``StripeEmulator``: the ``/v1/refunds`` endpoints and ``settle_refund``."""

    async def _create_refund(self, call: _Call) -> dict[str, Any]:
        params = call.params
        _known(params, _REFUND_PARAMS)
        if self.refunds_down:
            raise ApiError(503, "Stripe is temporarily unavailable (sandbox refund outage).", type_="api_error")
        if "charge" in params:
            raise ApiError(400, "The payrelay sandbox refunds by payment_intent only", param="charge")
        intent_id = _string(params, "payment_intent")
        if intent_id is None:
            raise ApiError(400, "One of the following params should be provided for this request: "
                                "payment_intent or charge.", code="parameter_missing")
        intent = self._find(self.payment_intents, intent_id, call.account, "payment_intent", "payment_intent")
        if intent["status"] != "succeeded":
            # Stripe's answer, reported verbatim by its users; it carries no code
            raise ApiError(400, f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                           param="payment_intent")
        remaining = intent["amount_received"] - self.refunded(intent_id)
        if remaining <= 0:
            # docs.stripe.com/error-codes#charge-already-refunded
            raise ApiError(400, f"Charge {intent['latest_charge']} has already been refunded.",
                           code="charge_already_refunded")
        amount = remaining
        if params.get("amount") not in (None, ""):
            amount = _amount(params["amount"], intent["currency"], "amount")
        if amount > remaining:
            # the message is Stripe's as its users report it; the code is Stripe's "greater than the
            # maximum amount allowed" (docs.stripe.com/error-codes#amount-too-large), which reports
            # of this answer name but no capture of it here confirms
            raise ApiError(400, f"Refund amount ({display_amount(amount, intent['currency'])}) is greater than "
                                f"unrefunded amount on charge ({display_amount(remaining, intent['currency'])})",
                           param="amount", code="amount_too_large")
        reason = _string(params, "reason")
        if reason is not None and reason not in REASONS:
            raise ApiError(400, "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                           param="reason")
        later = self.refund_outcome in ("succeed_later", "fail_later")
        refund = self._store(self.refunds, {
            "id": _new_id("re_", 24), "object": "refund", "amount": amount, "balance_transaction": _new_id("txn_"),
            "charge": intent["latest_charge"], "created": self.now(), "currency": intent["currency"],
            "destination_details": None, "failure_balance_transaction": None, "failure_reason": None,
            "metadata": _metadata(params.get("metadata")), "payment_intent": intent_id,
            "pending_reason": "processing" if later else None, "reason": reason, "receipt_number": None,
            "source_transfer_reversal": None, "status": "pending" if later else "succeeded",
            "transfer_reversal": None,
        }, call.account)
        self._event("refund.created", refund)
        self._event("charge.refunded", self._charge(intent))
        if self.refund_answer_delay:
            await self._flush()  # the refund is made and told; only its answer is late
            await asyncio.sleep(self.refund_answer_delay)
        return copy.deepcopy(refund)

    async def _list_refunds(self, call: _Call) -> dict[str, Any]:
        params = call.params
        _known(params, frozenset({"payment_intent", "charge", "limit", "starting_after", "ending_before",
                                  "created", "expand"}))
        limit = _integer(params.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise ApiError(400, "This value must be less than or equal to 100.", param="limit")
        intent_id = _string(params, "payment_intent")
        if intent_id is not None:
            self._find(self.payment_intents, intent_id, call.account, "payment_intent", "payment_intent")
        found = [refund for refund in reversed(self.refunds.values())  # newest first, like Stripe's lists
                 if self._owner[refund["id"]] == call.account
                 and intent_id in (None, refund["payment_intent"])
                 and _string(params, "charge") in (None, refund["charge"])]
        after = _string(params, "starting_after")
        if after is not None:
            ids = [refund["id"] for refund in found]
            if after not in ids:
                raise ApiError(404, f"No such refund: '{after}'", param="starting_after", code="resource_missing")
            found = found[ids.index(after) + 1:]
        return {"object": "list", "data": copy.deepcopy(found[:limit]), "has_more": len(found) > limit,
                "url": "/v1/refunds"}

    async def _retrieve_refund(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"expand"}))
        return copy.deepcopy(self._find(self.refunds, call.path["id"], call.account, "refund"))

    def refunded(self, intent_id: str) -> int:
        """What the PaymentIntent's refunds hold, in Stripe's units (failed and canceled ones: nothing)."""
        return sum(refund["amount"] for refund in self.refunds.values()
                   if refund["payment_intent"] == intent_id and refund["status"] in _HOLDING)

    def find_refund(self, refund: str) -> dict[str, Any]:
        """A refund by its id (re_…) or by the ``refund_no`` payrelay put in its metadata."""
        found = self.refunds.get(refund) or next(
            (item for item in self.refunds.values() if item["metadata"].get("refund_no") == refund), None)
        if found is None:
            raise KeyError(f"no refund {refund!r}")
        return found

    async def settle_refund(self, refund: str, outcome: Literal["succeeded", "failed"],
                            failure_reason: str = "expired_or_canceled_card") -> dict[str, Any]:
        """Finish a pending refund (``succeeded`` or ``failed``), or fail a succeeded one later (the
        bank returned it), and send its events, signed, before returning. ``refund``: its id or
        payrelay's refund_no. Returns the refund as Stripe now answers it."""
        found = self.find_refund(refund)
        self._settle_refund(found, outcome, failure_reason)
        await self._flush()
        return copy.deepcopy(found)

    def _settle_refund(self, refund: dict[str, Any], outcome: str, failure_reason: str) -> None:
        allowed = {"pending": ("succeeded", "failed"), "requires_action": ("succeeded", "failed"),
                   "succeeded": ("failed",)}.get(refund["status"], ())
        if outcome not in allowed:
            raise ValueError(f"refund {refund['id']} is {refund['status']}: it cannot become {outcome!r}")
        if outcome == "failed" and failure_reason not in FAILURE_REASONS:
            raise ValueError(f"{failure_reason!r} is not one of Stripe's refund failure reasons")
        refund["pending_reason"] = None
        if outcome == "succeeded":
            refund["status"] = "succeeded"
            self._event("refund.updated", refund)
            return
        refund.update(status="failed", failure_reason=failure_reason, failure_balance_transaction=_new_id("txn_"))
        # docs.stripe.com/api/events/types: refund.updated for any change, refund.failed for a failure
        self._event("refund.updated", refund)
        self._event("refund.failed", refund)

    def _charge(self, intent: dict[str, Any]) -> dict[str, Any]:
        """The PaymentIntent's charge as ``charge.refunded`` carries it (without its refunds list,
        which Stripe includes only when expanded)."""
        refunded = self.refunded(intent["id"])
        self._owner[intent["latest_charge"]] = self._owner[intent["id"]]  # its events name the account
        return {"id": intent["latest_charge"], "object": "charge", "amount": intent["amount"],
                "amount_captured": intent["amount_received"], "amount_refunded": refunded,
                "currency": intent["currency"], "metadata": dict(intent["metadata"]), "paid": True,
                "payment_intent": intent["id"], "refunded": refunded >= intent["amount_received"],
                "status": "succeeded"}
