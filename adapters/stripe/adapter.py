"""Stripe Checkout (and off-session PaymentIntents): the mechanics. The SDK client's lifetime, the
one boundary where its exceptions become ours, and webhook verification.

The SDK (``stripe`` 16.1.0) builds, authenticates and reads every call; it sends them through the
adapter's transport (``adapters.transport``) by its documented extension point for a custom HTTP
client. What it relies on, all public:
- ``stripe.StripeClient(key, stripe_account=…, base_addresses=…, max_network_retries=0,
  http_client=…)`` and its ``v1`` services' ``*_async`` methods: ``checkout.sessions.retrieve /
  expire``, ``customers.list``, ``customers.payment_methods.list``,
  ``payment_intents.create / retrieve / cancel``, ``refunds.create / list``; ``StripeObject.to_dict``;
- ``StripeClient.raw_request_async`` (the SDK's "custom requests") for the Checkout Session's
  create, the one call of every payment: the same request ``checkout.sessions.create_async``
  makes, its answer's JSON (``StripeResponse.data``) read without building a StripeObject;
- ``stripe.HTTPClient``, the base class the SDK names for custom clients: :class:`SdkHttpClient`
  implements its ``request_async``, ``request_stream_async``, ``sleep_async`` and ``close_async``;
- ``stripe.WebhookSignature.verify_header``; the exception classes below.

Checked in the installed SDK:
- ``StripeClient(…, stripe_account=…)`` sends ``Stripe-Account`` on every call (direct charges);
  per-call ``options={"idempotency_key": …}`` sends ``Idempotency-Key`` (else it invents one);
- it hands the client the form body as a ``str`` and expects the answer's headers to be looked up
  without regard to case (``Stripe-Should-Retry``);
- errors: 400/404 ``InvalidRequestError`` (``IdempotencyError`` for a reused key), 401
  ``AuthenticationError``, 402 ``CardError``, 403 ``PermissionError``, 429 ``RateLimitError``,
  anything else (5xx, 409, a body that is not JSON) ``APIError`` with ``http_status``; transport
  failures ``APIConnectionError``;
- ``WebhookSignature.verify_header`` rejects old timestamps only, never future ones;
- ``refunds.create_async`` posts ``/v1/refunds``, ``refunds.list_async`` gets ``/v1/refunds`` with the
  filters as query parameters (``payment_intent``, ``limit`` up to 100, ``starting_after``).

Refunds go on the payment's PaymentIntent (a Checkout Session's ``payment_intent``; an off-session
payment's reference is the PaymentIntent itself) with ``metadata[refund_no]`` and the refund_no as
``Idempotency-Key``. Stripe forgets idempotency keys after 24 h, so ``query_refund`` never relies
on one: it lists the PaymentIntent's refunds and finds ours by that metadata.
TLS is the transport's: the system's trust store (certifi), not the SDK's own CA bundle file.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import stripe
from stripe.params import RefundListParams

from adapters import money, registry, wire
from adapters.base import (
    Adapter,
    Created,
    CreateRequest,
    GatewayState,
    PaymentRef,
    RefundRequest,
    RefundState,
    Status,
    WebhookEvent,
    WebhookReply,
)
from adapters.errors import (
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnavailable,
    WebhookPayloadError,
    WebhookSignatureError,
)
from adapters.stripe import transformers as tx
from adapters.transport import Transport, TransportError

if TYPE_CHECKING:
    from adapters.stripe.config import StripeConfig

TIMEOUT = 10.0  # seconds per API call
WEBHOOK_TOLERANCE = 300  # seconds a webhook's timestamp may be old (the SDK's check)
# … or ahead of our clock. Judged at arrival, later than signing by the time in flight and with
# the timestamp in whole seconds, so a margin keeps "more than 300 s ahead" reliably refused.
FUTURE_TOLERANCE = WEBHOOK_TOLERANCE - 10
T = TypeVar("T")


class SdkHttpClient(stripe.HTTPClient):
    """The SDK's HTTP client on our transport: ``stripe.HTTPClient`` is the SDK's documented base
    for custom clients (``StripeClient(http_client=…)``). The SDK builds and authenticates the
    requests and reads the answers; this only carries them. Async only. (Its own attributes are
    named so as not to meet the base class's private ones.)"""

    name = "payrelay"

    def __init__(self, transport: Transport, timeout: float = TIMEOUT) -> None:
        super().__init__()
        self.transport = transport
        self.timeout = timeout

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        content = post_data.encode() if isinstance(post_data, str) else post_data
        try:
            answer = await self.transport.request(method.upper(), url, headers=headers, content=content,
                                                  timeout=self.timeout)
        except TransportError as exc:
            raise stripe.APIConnectionError(f"could not reach Stripe ({exc})", should_retry=True) from exc
        return answer.body, answer.status, answer.headers

    async def request_stream_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[AsyncIterator[bytes], int, Mapping[str, str]]:
        body, status, answer_headers = await self.request_async(method, url, headers, post_data)
        return _chunks(body), status, answer_headers

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return anyio.sleep(secs)

    async def close_async(self) -> None:
        """The transport is the adapter's: ``StripeAdapter.aclose`` closes it."""


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _code(exc: stripe.StripeError) -> str | None:
    """Stripe's error code: the SDK copies it to ``code`` for some error classes only."""
    code = exc.code or (exc.error.code if exc.error is not None else None)
    return code if isinstance(code, str) else None


class _Declined(GatewayRefused):
    """A card error (402): for an off-session charge a result, elsewhere a refusal."""

    def __init__(self, message: str, body: Any, code: str | None, param: str | None) -> None:
        super().__init__(message, code=code, param=param)
        self.body = body


class StripeAdapter(Adapter):
    gateway_type = registry.STRIPE.name
    webhook_name = registry.STRIPE.webhook
    currencies = tx.CURRENCIES
    amount_steps = tx.AMOUNT_STEPS
    supports_offline = True
    requires_https_redirects = True
    customer_must_be_email = True
    refund_limits = tx.REFUND_LIMITS

    def __init__(self, config: StripeConfig, public_url: str, transport: Transport) -> None:
        self._config = config
        self._key = config.secret_key.reveal()
        self._transport = transport
        self._client = stripe.StripeClient(
            self._key,
            stripe_account=config.connect_account,
            base_addresses={"api": config.api_base} if config.api_base else None,
            max_network_retries=0,  # payrelay retries, with the same idempotency key
            http_client=SdkHttpClient(transport),
        )
        # the endpoint to register at Stripe (Stripe takes it from the dashboard, not per request)
        self.webhook_url = f"{public_url.rstrip('/')}/webhooks/{self.webhook_name}"

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- the boundary -----------------------------------------------------------------------------

    async def _sdk(self, call: Awaitable[T]) -> T:
        """Await one SDK call; its exceptions become ours here and only here."""
        try:
            return await call
        except stripe.CardError as exc:
            raise _Declined(self._message(exc), exc.json_body, exc.code, exc.param) from exc
        except stripe.IdempotencyError as exc:
            raise GatewayRefused(self._message(exc), code="idempotency_error") from exc
        except stripe.InvalidRequestError as exc:
            raise GatewayRefused(self._message(exc), code=exc.code, param=exc.param) from exc
        except stripe.AuthenticationError as exc:
            raise GatewayRefused("Stripe refused the API key (PAYRELAY_STRIPE_SECRET_KEY)",
                                 code="authentication_error") from exc
        except stripe.PermissionError as exc:
            raise GatewayRefused("Stripe refused access with this key (PAYRELAY_STRIPE_SECRET_KEY, "
                                 "PAYRELAY_STRIPE_CONNECT_ACCOUNT)", code=_code(exc) or "permission_error") from exc
        except (stripe.RateLimitError, stripe.APIConnectionError) as exc:
            raise GatewayUnavailable(self._message(exc), code=_code(exc)) from exc
        except stripe.APIError as exc:
            status = exc.http_status or 0
            if status >= 500 or status == 409:  # Stripe's "retry later" answers
                raise GatewayUnavailable(f"Stripe answered {status}: {self._message(exc)}", code=_code(exc)) from exc
            raise GatewayProtocolError(f"Stripe answered something unusable (HTTP {status})") from exc
        except stripe.StripeError as exc:
            raise GatewayProtocolError(f"Stripe failed: {self._message(exc)}") from exc
        except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:  # the SDK choked
            raise GatewayProtocolError(f"Stripe answered something the SDK cannot read ({type(exc).__name__})") from exc

    def _message(self, exc: stripe.StripeError) -> str:
        message = exc.user_message or type(exc).__name__
        return str(message).replace(self._key, "sk_***")  # never echo the key, whatever Stripe says

    @staticmethod
    def _plain(obj: object) -> dict[str, Any]:
        """An answer as plain JSON: a StripeObject's, or the JSON object a raw request answered."""
        if isinstance(obj, stripe.StripeObject):
            return obj.to_dict()
        if not isinstance(obj, dict):  # JSON, but not an object: [], "x", null
            raise GatewayProtocolError("Stripe answered JSON that is not an object")
        return obj

    # -- payments -------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Created:
        if not request.online:
            return await self._charge_off_session(request)
        params = tx.session_params(request, request.created_at or int(time.time()))
        # the same call as checkout.sessions.create_async (path, form body, headers, errors), its
        # answer taken as the JSON it is: building its StripeObject costs ~150 µs of CPU, a sixth
        # of a whole create (bench/README.md)
        answer = await self._sdk(self._client.raw_request_async(
            "post", "/v1/checkout/sessions", **params, idempotency_key=request.payment_id))
        return tx.created_session(self._plain(answer.data))

    async def _charge_off_session(self, request: CreateRequest) -> Created:
        if not request.customer:
            raise GatewayRefused("an off-session charge needs customerIdentifier: the email of an earlier "
                                 "payment made with supportOfflineScenario", param="customerIdentifier")
        customers = await self._sdk(self._client.v1.customers.list_async({"email": request.customer, "limit": 10}))
        for customer in tx.ids(self._plain(customers), "Customer"):
            methods = await self._sdk(self._client.v1.customers.payment_methods.list_async(customer, {"limit": 1}))
            saved = tx.ids(self._plain(methods), "PaymentMethod")
            if saved:
                break
        else:
            raise GatewayRefused("Stripe holds no saved payment method for this customerIdentifier: an earlier "
                                 "payment with supportOfflineScenario=true must save one first",
                                 code="no_saved_payment_method", param="customerIdentifier")
        params = tx.off_session_params(request, customer, saved[0])
        try:
            intent = await self._sdk(self._client.v1.payment_intents.create_async(
                params, {"idempotency_key": request.payment_id}))
        except _Declined as declined:
            return tx.declined(declined.body)
        return tx.charged(self._plain(intent))

    async def query(self, ref: PaymentRef) -> GatewayState:
        reference = self._reference(ref)
        if reference.startswith("pi_"):
            intent = await self._sdk(self._client.v1.payment_intents.retrieve_async(reference))
            return tx.intent_state(ref.payment_id, self._plain(intent))
        session = await self._sdk(self._client.v1.checkout.sessions.retrieve_async(
            reference, {"expand": ["payment_intent"]}))
        return tx.session_state(ref.payment_id, self._plain(session))

    async def close(self, ref: PaymentRef) -> GatewayState:
        reference = self._reference(ref)
        if reference.startswith("pi_"):
            state = await self.query(ref)
            if state.status is not Status.WAITING:
                return state
            intent = await self._sdk(self._client.v1.payment_intents.cancel_async(reference))
            return tx.intent_state(ref.payment_id, self._plain(intent))
        try:
            session = await self._sdk(self._client.v1.checkout.sessions.expire_async(reference))
        except GatewayRefused as refused:
            # Stripe expires open sessions only: paid (or expired) meanwhile → say what it is now
            state = await self.query(ref)
            if state.status is Status.WAITING:
                raise refused
            return state
        return tx.session_state(ref.payment_id, self._plain(session))

    # -- refunds --------------------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundState:
        intent = await self._payment_intent(request.payment)
        if intent is None:
            raise GatewayRefused(f"payment {request.payment.payment_id} has no PaymentIntent at Stripe: it was "
                                 "never paid, so there is nothing to refund", code="no_payment_intent")
        # made already? Stripe's idempotency key covers 24 h only; metadata[refund_no] covers always
        found = await self._find_refund(intent, request.refund_no)
        if found is not None:
            state = tx.refund_state(found)
            made = state.amount
            if made != request.amount:
                shown = f"{money.to_major(made.minor, made.currency)} {made.currency}" if made else "?"
                raise GatewayRefused(f"refund {request.refund_no} was already made at Stripe for another amount "
                                     f"({shown}); a refund_no names one refund", code="idempotency_error")
            return state
        try:
            refund = await self._sdk(self._client.v1.refunds.create_async(
                tx.refund_params(request, intent), {"idempotency_key": request.refund_no}))
        except GatewayRefused as refused:
            if refused.code == "idempotency_error":  # the same refund_no in flight with another amount/reason
                raise GatewayRefused(f"refund {request.refund_no} was already sent to Stripe with another amount "
                                     f"or reason; Stripe keeps the first ({refused.message})",
                                     code="idempotency_error") from refused
            raise
        state = tx.refund_state(self._plain(refund))
        if state.refund_no != request.refund_no:
            raise GatewayProtocolError(f"Stripe answered the refund of another refund_no ({state.refund_no!r})")
        return state

    async def query_refund(self, request: RefundRequest) -> RefundState | None:
        intent = await self._payment_intent(request.payment)
        found = None if intent is None else await self._find_refund(intent, request.refund_no)
        return None if found is None else tx.refund_state(found)

    async def _find_refund(self, intent: str, refund_no: str) -> Mapping[str, Any] | None:
        """The PaymentIntent's refund made under ``refund_no``, page by page (newest first: a refund
        just made is on the first page)."""
        params: RefundListParams = {"payment_intent": intent, "limit": tx.LIST_LIMIT}
        while True:
            listing = self._plain(await self._sdk(self._client.v1.refunds.list_async(params)))
            found = tx.refund_in(listing, refund_no)
            ids = tx.ids(listing, "Refund")
            if found is not None or not listing.get("has_more") or not ids:
                return found
            params = {**params, "starting_after": ids[-1]}

    async def _payment_intent(self, ref: PaymentRef) -> str | None:
        """The PaymentIntent that took the payment: the reference itself for an off-session
        charge, else the Checkout Session's (None until the customer paid)."""
        reference = self._reference(ref)
        if reference.startswith("pi_"):
            return reference
        session = self._plain(await self._sdk(self._client.v1.checkout.sessions.retrieve_async(reference)))
        intent = session.get("payment_intent")
        if isinstance(intent, Mapping):  # expanded
            intent = intent.get("id")
        if intent is not None and not (isinstance(intent, str) and intent.startswith("pi_")):
            raise GatewayProtocolError(f"Stripe answered a Checkout Session with a payment_intent {intent!r}")
        return intent

    @staticmethod
    def _reference(ref: PaymentRef) -> str:
        if not ref.gateway_reference:
            raise GatewayProtocolError(f"payment {ref.payment_id} has no Stripe Checkout Session id")
        return ref.gateway_reference

    # -- webhooks -------------------------------------------------------------------------------

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
        header = next((value for name, value in headers.items() if name.lower() == "stripe-signature"), "")
        if not header:
            raise WebhookSignatureError("no Stripe-Signature header")
        self._check_signature(body, header)
        try:
            event = wire.loads(body)
        except ValueError:
            raise WebhookPayloadError("the event is not JSON") from None
        return tx.event_state(event, self._config.connect_account)

    def _check_signature(self, body: bytes, header: str) -> None:
        """Signed by one of the configured secrets (rotation), within the tolerance either way."""
        for secret in self._config.webhook_secrets:
            try:
                stripe.WebhookSignature.verify_header(body, header, secret.reveal(), WEBHOOK_TOLERANCE)
            except stripe.SignatureVerificationError:
                continue
            except UnicodeDecodeError:
                raise WebhookSignatureError("the body is not UTF-8, so Stripe did not sign it") from None
            break
        else:
            raise WebhookSignatureError("the Stripe-Signature does not verify with any webhook secret, "
                                        "or its timestamp is too old")
        # the SDK checks only that the timestamp is not too old; refuse far-future ones too
        stamps = [item[2:] for item in header.split(",") if item.startswith("t=")]
        if int(stamps[0]) > time.time() + FUTURE_TOLERANCE:
            raise WebhookSignatureError("the Stripe-Signature timestamp is in the future")

    @classmethod
    def webhook_ok(cls) -> WebhookReply:
        return WebhookReply(200, b'{"received": true}', "application/json")

    @classmethod
    def webhook_fail(cls, status_code: int, message: str) -> WebhookReply:
        return WebhookReply(status_code, json.dumps({"error": message}).encode(), "application/json")

