"""Alipay page pay (电脑网站支付) through python-alipay-sdk 3.4.0: the mechanics.

Page pay makes no network call: the signed request is the payment URL, and Alipay creates the
trade only when the customer opens it. Query, close, refund and refund query are GETs of
``gateway?<signed request>`` sent through the adapter's transport (``adapters.transport``), as the
SDK's ``api_alipay_trade_*`` would send them: the SDK's own sending is a blocking ``urllib`` call
to a URL kept in a private attribute, so the adapter sends them itself.

Refunds: ``alipay.trade.refund`` under ``out_request_no`` = the refund's ``refund_no`` (the same
one again refunds nothing more); Alipay answers synchronously, and an answer whose fund_change
is N (this call moved no money) is followed by ``alipay.trade.fastpay.refund.query`` to tell a
refund made earlier from one still in progress. A timeout is GatewayUnavailable: the caller asks
``query_refund``, and where that finds nothing, Alipay's documented recovery is the same refund
again under the same refund_no.

What it relies on in the SDK, all public:
- ``AliPay(appid, app_notify_url, app_private_key_string, alipay_public_key_string,
  sign_type="RSA2")``, which also checks that the SDK takes both keys;
- ``AliPay.build_body(method, biz_content, **params)``: every request's common parameters
  (app_id, method, charset, sign_type, timestamp, version) around its biz_content — for refunds
  the biz_content ``api_alipay_trade_refund`` and ``api_alipay_trade_fastpay_refund_query`` build.
The signature is not the SDK's: its ``sign_data`` signs with pycryptodome, about four times the
CPU of OpenSSL for a 2048-bit signature (1.4 vs 0.34 ms measured; twenty times for a check), now
spent on the event loop since no thread makes the calls. :func:`signed_query` answers the same
string byte for byte — PKCS#1 v1.5 is deterministic — signed by OpenSSL through ``cryptography``.
Answers and notifications are checked by :func:`rsa2_verifies`, also on OpenSSL, accepting exactly
what the SDK's own check accepts. The SDK has no public check of a synchronous answer (its
``verify`` takes form fields), so finding the signed text of an answer is
``transformers.signed_answer``'s. The tests compare both with the SDK's ``sign_data`` and
``verify`` on generated inputs.
Everything shaped like Alipay's API lives in ``adapters.alipay.transformers``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import textwrap
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote_plus

from alipay import AliPay
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters import registry
from adapters.alipay import transformers
from adapters.base import (
    Adapter,
    Created,
    CreateRequest,
    GatewayState,
    PaymentRef,
    RefundLimits,
    RefundRequest,
    RefundState,
    RefundStatus,
    WebhookEvent,
    WebhookReply,
)
from adapters.config import GatewayConfigError
from adapters.errors import (
    GatewayProtocolError,
    GatewayUnavailable,
    WebhookPayloadError,
    WebhookSignatureError,
)
from adapters.transport import Transport, TransportError, TransportTimeout

if TYPE_CHECKING:
    from adapters.alipay.config import AlipayConfig

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
TIMEOUT = 10.0  # seconds per call
# DER DigestInfo prefix for SHA-256 without the NULL parameter. RFC 8017 lets it be absent;
# OpenSSL insists on it, the SDK's pycryptodome accepts both, and so do we (see verifies()).
_SHA256_INFO_WITHOUT_NULL = bytes.fromhex("302f300b0609608648016503040201") + b"\x04\x20"
MAX_NOTIFICATION_FIELDS = 200


def rsa2_verifies(key: rsa.RSAPublicKey, content: bytes, sign: str) -> bool:
    """RSA2 (PKCS#1 v1.5, SHA-256), accepting exactly what the SDK's own (pycryptodome) check
    accepts: ``sign`` decoded like ``base64.decodebytes`` (characters outside the alphabet
    skipped), and both DER encodings of the digest (with and without the NULL parameter)."""
    try:
        signature = binascii.a2b_base64(sign.encode())
    except binascii.Error:
        return False
    try:
        key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        pass
    else:
        return True
    try:  # rejected ones only: the encoding pycryptodome accepts and OpenSSL does not
        info = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return False
    digest = hashes.Hash(hashes.SHA256())
    digest.update(content)
    return hmac.compare_digest(info, _SHA256_INFO_WITHOUT_NULL + digest.finalize())


def signed_query(key: rsa.RSAPrivateKey, data: Mapping[str, Any]) -> str:
    """The signed request as the SDK's ``sign_data(data)`` writes it: the parameters sorted by
    name, object values as compact JSON, ``k=v`` joined by ``&`` and signed RSA2; then every value
    ``quote_plus``-ed and ``sign`` appended. Signed by OpenSSL (the module docstring says why)."""
    items = sorted((name, json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else value)
                   for name, value in data.items())
    unsigned = "&".join(f"{name}={value}" for name, value in items)
    sign = base64.b64encode(key.sign(unsigned.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return "&".join(f"{name}={quote_plus(value)}" for name, value in [*items, ("sign", sign)])


class AlipayAdapter(Adapter):
    gateway_type = registry.ALIPAY.name
    webhook_name = registry.ALIPAY.webhook
    currencies = frozenset({transformers.CURRENCY})
    supports_offline = False
    creates_offline = True  # page pay: the SDK signs the cashier URL; Alipay sees nothing until it opens
    refund_limits = RefundLimits(
        # "交易超过约定时间（签约时设置的可退款时间）的订单无法进行退款" (alipay.trade.refund): the
        # window is the merchant's contract (typically 3 to 12 months), not a documented constant;
        # past it Alipay refuses (ACQ.TRADE_HAS_FINISHED / ACQ.TRADE_NOT_ALLOW_REFUND)
        window_days=None,
        # refund_amount: Price, yuan "支持两位小数": 0.01 CNY
        minimum_minor=transformers.MIN_FEN,
        # "支付宝退款支持单笔交易分多次退款…总退款金额不能超过用户实际支付金额" (alipay.trade.refund)
        partial=True,
        # alipay.trade.refund documents no limit on the number of refunds of one trade
        max_per_payment=None,
    )

    def __init__(self, config: AlipayConfig, public_url: str, transport: Transport, *,
                 timeout: float = TIMEOUT) -> None:
        self._app_id = config.app_id
        self._seller_id = config.seller_id
        self._notify_url = public_url.rstrip("/") + "/webhooks/" + self.webhook_name
        self._gateway_url = config.gateway_url or PRODUCTION_GATEWAY
        self._transport = transport
        self._timeout = timeout
        public_pem = _pem(config.alipay_public_key, "PUBLIC KEY")
        try:
            public_key = serialization.load_pem_public_key(public_pem.encode())
        except ValueError:
            public_key = None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise GatewayConfigError("PAYRELAY_ALIPAY_PUBLIC_KEY is not an RSA public key (PEM or bare base64)",
                                     variable="PAYRELAY_ALIPAY_PUBLIC_KEY")
        self._alipay_key = public_key
        private_pem = _pem(config.private_key.reveal(), "PRIVATE KEY")
        try:
            self._signing_key = _private_key(private_pem)
            self._sdk = AliPay(appid=config.app_id, app_notify_url=None, app_private_key_string=private_pem,
                               alipay_public_key_string=public_pem, sign_type="RSA2")
        except (ValueError, IndexError, TypeError, UnsupportedAlgorithm):
            # from None: nothing about the key's content may travel on in a traceback
            raise GatewayConfigError(
                "PAYRELAY_ALIPAY_PRIVATE_KEY is not an RSA private key (PEM or bare base64)",
                variable="PAYRELAY_ALIPAY_PRIVATE_KEY",
            ) from None

    def __repr__(self) -> str:
        return f"AlipayAdapter(app_id={self._app_id!r}, gateway={self._gateway_url!r})"

    @property
    def gateway_url(self) -> str:
        return self._gateway_url

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- API calls ------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Created:
        return Created(payment_url=self.payment_url(request), gateway_reference=None)

    def payment_url(self, request: CreateRequest) -> str:
        """The cashier URL: everything in it, the request's timestamp too, comes from ``request``
        (``build_body`` would stamp the time of the call), and an RSA2 signature is the same for
        the same text, so the same request always makes the same URL."""
        now = request.created_at or time.time()
        biz, others = transformers.page_pay_body(transformers.page_pay_params(request, self._notify_url, now))
        body = self._sdk.build_body(transformers.PAGE_PAY, biz, **others, timestamp=transformers.china_time(now))
        return f"{self._gateway_url}?{signed_query(self._signing_key, body)}"

    async def recover(self, request: CreateRequest) -> Created | None:
        """Page pay makes no gateway call at create: an interrupted create made nothing there,
        and nobody was handed its URL."""
        return None

    async def query(self, ref: PaymentRef) -> GatewayState:
        answer = await self._call("query", transformers.QUERY, out_trade_no=ref.payment_id)
        return transformers.trade_state(ref.payment_id, answer)

    async def close(self, ref: PaymentRef) -> GatewayState:
        answer = await self._call("close", transformers.CLOSE, out_trade_no=ref.payment_id)
        state = transformers.close_outcome(ref.payment_id, answer)
        return state if state is not None else await self.query(ref)

    async def refund(self, request: RefundRequest) -> RefundState:
        biz = transformers.refund_biz(request)
        answer = await self._call("refund", transformers.REFUND, **biz)
        state = transformers.refund_answer(request, answer)
        if state.status is not RefundStatus.PROCESSING:
            return state
        # fund_change N: made by an earlier call under this out_request_no, or not done yet
        try:
            found = await self.query_refund(request)
        except GatewayUnavailable:
            return state  # accepted; the caller's query learns the rest
        return found if found is not None and found.status is RefundStatus.SUCCEEDED else state

    async def query_refund(self, request: RefundRequest) -> RefundState | None:
        answer = await self._call("refund query", transformers.REFUND_QUERY,
                                  out_trade_no=request.payment.payment_id, out_request_no=request.refund_no)
        return transformers.refund_query_state(request, answer)

    async def _call(self, operation: str, method: str, **biz: str) -> Mapping[str, Any]:
        """One signed GET of the gateway; the answer once its signature is checked. Every failure
        is mapped to our errors here."""
        url = f"{self._gateway_url}?{signed_query(self._signing_key, self._sdk.build_body(method, biz))}"
        try:
            answer = await self._transport.request("GET", url, timeout=self._timeout)
        except TransportTimeout as exc:
            raise GatewayUnavailable(
                f"Alipay did not answer the {operation} within {self._timeout:g} s"
            ) from exc
        except TransportError as exc:
            raise GatewayUnavailable(f"Alipay is unreachable ({exc})") from exc
        if not 200 <= answer.status < 300:
            error = GatewayUnavailable if answer.status >= 500 else GatewayProtocolError
            raise error(f"Alipay answered the {operation} with HTTP {answer.status}")
        try:
            raw = answer.body.decode()
        except UnicodeDecodeError:
            raise GatewayProtocolError(f"Alipay answered the {operation} with something unreadable") from None
        content, sign, verified = transformers.signed_answer(operation, method, raw)
        if not rsa2_verifies(self._alipay_key, content.encode(), sign):
            raise GatewayProtocolError(
                f"Alipay's answer to the {operation} does not verify with Alipay's public key"
            )
        return verified

    # -- notifications --------------------------------------------------------------------------

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
        fields = _form(body)
        sign = fields.get("sign")
        if not sign:
            raise WebhookSignatureError("notification is not signed")
        if fields.get("sign_type", "RSA2") != "RSA2":
            raise WebhookSignatureError("notification is not signed with RSA2")
        if not self.verifies(fields, sign):
            raise WebhookSignatureError("notification signature does not verify with Alipay's public key")
        return transformers.notification_event(fields, self._app_id, self._seller_id)

    def verifies(self, fields: Mapping[str, str], sign: str) -> bool:
        """Alipay's RSA2 signature over the notification's signed content."""
        return rsa2_verifies(self._alipay_key, transformers.signed_content(fields).encode(), sign)

    @classmethod
    def webhook_ok(cls) -> WebhookReply:
        return WebhookReply(200, b"success", "text/plain")  # Alipay retries unless it reads exactly this

    @classmethod
    def webhook_fail(cls, status_code: int, message: str) -> WebhookReply:
        return WebhookReply(status_code, f"fail: {message}".encode(), "text/plain")


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=MAX_NOTIFICATION_FIELDS)
    except ValueError as exc:  # UnicodeDecodeError included
        raise WebhookPayloadError("notification is not a UTF-8 form") from exc
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise WebhookPayloadError("notification repeats a field")
    return fields


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    """PKCS#8 or PKCS#1, whatever the PEM label says (bare base64 from Alipay's tool is either)."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    key = serialization.load_der_private_key(base64.b64decode(body), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


def _pem(key: str, label: str) -> str:
    """Alipay's console shows keys as bare base64; accept those as well as PEM."""
    key = key.strip()
    if key.startswith("-----BEGIN"):
        return key
    body = "\n".join(textwrap.wrap("".join(key.split()), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
