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
- ``Idempotency-Key``s are forgotten after 24 h on the emulator's clock, like Stripe's;
- Refunds on a PaymentIntent (``POST /v1/refunds``; ``GET /v1/refunds?payment_intent=``, newest first,
  paged; ``GET /v1/refunds/{id}``): refused like Stripe when the PaymentIntent has no successful
  charge, when it is refunded already (``charge_already_refunded``) or for more than remains
  (``amount_too_large``); pending, failed and canceled refunds as Stripe has them, with
  ``refund.created`` / ``refund.updated`` / ``refund.failed`` and ``charge.refunded`` events;
- events signed like Stripe's (``Stripe-Signature: t=…,v1=…``) with the ``whsec_…`` secret.

The customer's side is the hosted page ``/c/pay/{id}``: Pay (card), Pay with bank transfer (delayed:
complete but unpaid until settled on the same page), Decline (card declined, the session stays
open), Cancel (back to ``cancel_url``); once paid, the page chooses what the next refunds do and
settles or fails each of the payment's refunds. Knobs: ``down`` (503 everywhere),
``off_session_decline`` (off-session charges decline with that code), ``delay`` (seconds each API
call waits before it is handled), ``advance()`` (move the emulator's clock); for refunds
``refund_outcome`` (``REFUND_OUTCOMES``), ``refunds_down``, ``refund_answer_delay`` (the refund is
made, its answer late) and ``await settle_refund(refund_no_or_id, "succeeded" | "failed")``.

Modules, by what they own:
- ``emulator``: ``StripeEmulator``, its state, clock, routes and ``env()``;
- ``api``: the API's common mechanics (auth, ``Stripe-Account``, idempotency, ids, answers);
- ``forms``: Stripe's form-encoded parameters in, and their validation;
- ``currencies``: Stripe's own currency lists, amount steps and how amounts are written (API, page);
- ``errors``: ``ApiError`` (an answer in Stripe's error format) and ``CheckoutError``;
- ``sessions``, ``customers``, ``intents``, ``refunds``: the resources (Checkout Sessions; Customers
  and PaymentMethods; PaymentIntents; Refunds, their outcomes and ``settle_refund``);
- ``checkout``: the hosted page (``sandbox.pages`` lays it out) and what the customer's actions on it do;
- ``events``: events, their signing, sending and ``signed_event``;
- ``payer``: acting as the customer over HTTP (``pay``, ``settle``) by reading the hosted page.
"""

from sandbox.stripe.api import API_VERSION
from sandbox.stripe.api import _Call as _Call  # bench/gateways.py seeds sessions with it
from sandbox.stripe.checkout import PAGE_PREFIX
from sandbox.stripe.currencies import AMOUNT_STEPS, THREE_DECIMAL, ZERO_DECIMAL, checkout_amount, display_amount
from sandbox.stripe.emulator import StripeEmulator
from sandbox.stripe.errors import ApiError, CheckoutError
from sandbox.stripe.forms import parse_params
from sandbox.stripe.intents import DECLINES
from sandbox.stripe.payer import PAGE_ACTIONS
from sandbox.stripe.refunds import REFUND_OUTCOMES, RefundOutcome
from sandbox.stripe.sessions import MAX_EXPIRY, MIN_EXPIRY

__all__ = [
    "AMOUNT_STEPS",
    "API_VERSION",
    "DECLINES",
    "MAX_EXPIRY",
    "MIN_EXPIRY",
    "PAGE_ACTIONS",
    "PAGE_PREFIX",
    "REFUND_OUTCOMES",
    "THREE_DECIMAL",
    "ZERO_DECIMAL",
    "ApiError",
    "CheckoutError",
    "RefundOutcome",
    "StripeEmulator",
    "checkout_amount",
    "display_amount",
    "parse_params",
]
