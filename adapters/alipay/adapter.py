"""Alipay page pay (电脑网站支付) through python-alipay-sdk 3.4.0: the mechanics.

Page pay makes no network call: the SDK signs the request into the payment URL, and Alipay
creates the trade only when the customer opens that URL. Query and close are blocking ``urllib``
calls inside the SDK, so they run in worker threads behind a capacity limiter and a deadline.
All RSA work (the SDK's request signing and answer checks, and notifications) is done by
OpenSSL through ``cryptography``: byte-identical signatures, and verification that accepts
exactly what the SDK's pycryptodome accepts (see the tests), at a fraction of the CPU.
Everything shaped like Alipay's API lives in ``adapters.alipay.transformers``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http.client
import textwrap
import time
import urllib.error
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig as SdkConfig
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters import registry
from adapters.alipay import transformers
from adapters.base import Adapter, Created, CreateRequest, GatewayState, PaymentRef, WebhookEvent, WebhookReply
from adapters.config import GatewayConfigError
from adapters.errors import (
    GatewayProtocolError,
    GatewayUnavailable,
    WebhookPayloadError,
    WebhookSignatureError,
)

if TYPE_CHECKING:
    from adapters.alipay.config import AlipayConfig

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
# DER DigestInfo prefix for SHA-256 without the NULL parameter. RFC 8017 lets it be absent;
# OpenSSL insists on it, the SDK's pycryptodome accepts both, and so do we (see verifies()).
_SHA256_INFO_WITHOUT_NULL = bytes.fromhex("302f300b0609608648016503040201") + b"\x04\x20"
SDK_GATEWAY_ATTRIBUTE = "_gateway"
MAX_NOTIFICATION_FIELDS = 200


def rsa2_verifies(key: rsa.RSAPublicKey, content: bytes, sign: str) -> bool:
    """RSA2 (PKCS#1 v1.5, SHA-256), accepting exactly what the SDK's pycryptodome ``_verify``
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


class OpenSslAliPay(AliPay):
    """python-alipay-sdk with its two RSA operations done by OpenSSL (``cryptography``) instead
    of pycryptodome: measured 5.3 ms → 0.6 ms per signature, which every create, query and close
    pays on a GIL-bound thread. PKCS#1 v1.5 signatures are deterministic, so the output is
    byte-identical. ``_sign``/``_verify`` are the SDK's private hooks (``sign_data`` and the answer
    check call them); tests fail if the SDK stops calling them or if results differ from its own."""

    def __init__(self, *, signing_key: rsa.RSAPrivateKey, verifying_key: rsa.RSAPublicKey,
                 **kwargs: Any) -> None:
        self._signing_key = signing_key
        self._verifying_key = verifying_key
        super().__init__(**kwargs)

    def _sign(self, unsigned_string: str) -> str:
        signature = self._signing_key.sign(unsigned_string.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def _verify(self, raw_content: str, signature: str) -> bool:
        return rsa2_verifies(self._verifying_key, raw_content.encode(), signature)


def point_sdk_at(client: Any, gateway_url: str) -> None:
    """Make the SDK call ``gateway_url``.

    python-alipay-sdk 3.4.0 takes no gateway URL: its constructor stores production's (or, with
    ``debug=True``, the sandbox's) in the private attribute ``_gateway``, which every server call
    reads. Setting that attribute is the only way to reach another gateway (the emulator). If an
    SDK upgrade renames it this raises at start-up instead of silently calling production, and
    ``tests/test_alipay_adapter.py::test_sdk_keeps_its_gateway_in_the_private_attribute`` fails.
    """
    if not isinstance(getattr(client, SDK_GATEWAY_ATTRIBUTE, None), str):
        raise RuntimeError(
            f"python-alipay-sdk no longer keeps its gateway URL in AliPay.{SDK_GATEWAY_ATTRIBUTE}; "
            "adapters.alipay.adapter.point_sdk_at must follow the SDK"
        )
    setattr(client, SDK_GATEWAY_ATTRIBUTE, gateway_url)


class AlipayAdapter(Adapter):
    gateway_type = registry.ALIPAY.name
    webhook_name = registry.ALIPAY.webhook
    currencies = frozenset({transformers.CURRENCY})
    supports_offline = False

    def __init__(self, config: AlipayConfig, public_url: str, *, timeout: float = 10.0,
                 max_concurrency: int = 16) -> None:
        self._app_id = config.app_id
        self._seller_id = config.seller_id
        self._notify_url = public_url.rstrip("/") + "/webhooks/" + self.webhook_name
        self._gateway_url = config.gateway_url or PRODUCTION_GATEWAY
        self._timeout = timeout
        self._limiter = anyio.CapacityLimiter(max_concurrency)
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
            self._client = OpenSslAliPay(
                signing_key=_private_key(private_pem),
                verifying_key=public_key,
                appid=config.app_id,
                app_notify_url=None,
                app_private_key_string=private_pem,
                alipay_public_key_string=public_pem,
                sign_type="RSA2",
                debug=False,
                config=SdkConfig(timeout=timeout),
            )
        except (ValueError, IndexError, TypeError, UnsupportedAlgorithm):
            # from None: nothing about the key's content may travel on in a traceback
            raise GatewayConfigError(
                "PAYRELAY_ALIPAY_PRIVATE_KEY is not an RSA private key (PEM or bare base64)",
                variable="PAYRELAY_ALIPAY_PRIVATE_KEY",
            ) from None
        point_sdk_at(self._client, self._gateway_url)

    def __repr__(self) -> str:
        return f"AlipayAdapter(app_id={self._app_id!r}, gateway={self._gateway_url!r})"

    @property
    def gateway_url(self) -> str:
        return self._gateway_url

    # -- API calls ------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Created:
        params = transformers.page_pay_params(request, self._notify_url, request.created_at or time.time())
        query = self._client.api_alipay_trade_page_pay(**params)  # signs; no network call
        return Created(payment_url=f"{self._gateway_url}?{query}", gateway_reference=None)

    async def recover(self, request: CreateRequest) -> Created | None:
        """Page pay makes no gateway call at create: an interrupted create made nothing there,
        and nobody was handed its URL."""
        return None

    async def query(self, ref: PaymentRef) -> GatewayState:
        answer = await self._call("query", self._client.api_alipay_trade_query, out_trade_no=ref.payment_id)
        return transformers.trade_state(ref.payment_id, answer)

    async def close(self, ref: PaymentRef) -> GatewayState:
        answer = await self._call("close", self._client.api_alipay_trade_close, out_trade_no=ref.payment_id)
        state = transformers.close_outcome(ref.payment_id, answer)
        return state if state is not None else await self.query(ref)

    async def _call(self, operation: str, function: Callable[..., Any], **kwargs: str) -> Mapping[str, Any]:
        """One blocking SDK call in a worker thread; every failure mapped to our errors here."""
        try:
            with anyio.fail_after(self._timeout):
                answer = await anyio.to_thread.run_sync(
                    partial(function, **kwargs), abandon_on_cancel=True, limiter=self._limiter
                )
        except TimeoutError as exc:
            raise GatewayUnavailable(
                f"Alipay did not answer the {operation} within {self._timeout:g} s"
            ) from exc
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500:
                raise GatewayUnavailable(f"Alipay answered the {operation} with HTTP {exc.code}") from exc
            raise GatewayProtocolError(f"Alipay answered the {operation} with HTTP {exc.code}") from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise GatewayUnavailable(f"Alipay is unreachable ({type(exc).__name__})") from exc
        except AliPayValidationError as exc:
            raise GatewayProtocolError(
                f"Alipay's answer to the {operation} does not verify with Alipay's public key"
            ) from exc
        except AliPayException as exc:  # the SDK's word for an answer without a signature
            raise transformers.unsigned_error(operation, str(exc)) from exc
        except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:  # JSON, base64, shape
            raise GatewayProtocolError(f"Alipay answered the {operation} with something unreadable") from exc
        if not isinstance(answer, dict):
            raise GatewayProtocolError(f"Alipay answered the {operation} with something unreadable")
        return answer

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
