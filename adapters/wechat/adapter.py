"""WeChat Pay v3 Native: the mechanics. The SDK client's lifetime, the boundary where its and
httpx's exceptions become ours, and callback verification (WeChat's scheme, with ``cryptography``).

Request signing and answer verification are the SDK's (``wechatpayv3`` 2.0.4, async client, public
key mode: no certificate download). Its facts, checked in its source:
- it raises a bare ``Exception`` when a 2xx answer fails verification (bad signature, missing or
  unknown ``Wechatpay-Signature-Type``, a ``Wechatpay-Serial`` that is not our public key id:
  after one extra ``GET /v3/certificates``) and lets httpx's exceptions through; non-2xx answers
  come back unverified as ``(status, text)`` (text when JSON, else bytes);
- its base URL is the private ``AsyncCore._gate_way``, read on every request (see ``_sdk_client``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

from adapters import registry, wire
from adapters.base import (
    Adapter,
    Created,
    CreateRequest,
    GatewayState,
    PaymentRef,
    Status,
    WebhookEvent,
    WebhookReply,
)
from adapters.config import GatewayConfigError
from adapters.errors import (
    GatewayProtocolError,
    GatewayUnavailable,
    UnsupportedOperation,
    WebhookMismatch,
    WebhookPayloadError,
    WebhookSignatureError,
)
from adapters.wechat import transformers as wx

if TYPE_CHECKING:
    from adapters.wechat.config import WechatConfig

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
WEBHOOK_TOLERANCE = 300  # seconds a callback's timestamp may be off, either way
TIMEOUT = (5, 10)  # (connect, read) seconds; the SDK's None would wait forever
SDK_DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
_HEADERS = (
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
    "wechatpay-serial",
    "wechatpay-signature-type",
)

Answer = tuple[int, Any]  # the SDK's (status code, text or bytes)


def _sdk_client(config: WechatConfig, notify_url: str, timeout: tuple[float, float]) -> AsyncWeChatPay:
    client = AsyncWeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=config.mchid,
        private_key=config.private_key.reveal(),
        cert_serial_no=config.cert_serial_no,
        appid=config.appid,
        apiv3_key=config.apiv3_key.reveal(),
        notify_url=notify_url,
        public_key=config.public_key,
        public_key_id=config.public_key_id,
        timeout=timeout,
    )
    # The SDK has no parameter for its API host: AsyncCore keeps it in `_gate_way` and prefixes it
    # to every request path; the httpx client itself is only opened by `__aenter__`. This is the
    # one place that points it elsewhere (the sandbox, a proxy). Guarded by
    # tests/test_wechat_adapter.py::test_sdk_keeps_its_base_url_in_core_gate_way.
    core = client._core
    if getattr(core, "_gate_way", None) != SDK_DEFAULT_GATEWAY:
        raise RuntimeError(
            "wechatpayv3 no longer keeps its base URL in AsyncCore._gate_way: "
            "adapters/wechat/adapter.py must learn the new way to set it"
        )
    if config.api_base:
        core._gate_way = config.api_base.rstrip("/")
    return client


def _public_key(text: str) -> rsa.RSAPublicKey:
    """The WeChat Pay public key, as PEM or as the bare base64 the merchant console shows."""
    pem = text.strip()
    if "BEGIN PUBLIC KEY" not in pem:
        pem = f"-----BEGIN PUBLIC KEY-----\n{pem}\n-----END PUBLIC KEY-----"
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise GatewayConfigError("PAYRELAY_WECHAT_PUBLIC_KEY is not an RSA public key",
                                 variable="PAYRELAY_WECHAT_PUBLIC_KEY") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise GatewayConfigError("PAYRELAY_WECHAT_PUBLIC_KEY is not an RSA public key",
                                 variable="PAYRELAY_WECHAT_PUBLIC_KEY")
    return key


class WechatAdapter(Adapter):
    gateway_type = registry.WECHAT.name
    webhook_name = registry.WECHAT.webhook
    currencies = frozenset({"CNY"})
    supports_offline = False

    def __init__(self, config: WechatConfig, public_url: str, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.config = config
        self.notify_url = public_url.rstrip("/") + "/webhooks/" + self.webhook_name
        if config.api_base is None and not self.notify_url.startswith("https://"):
            raise GatewayConfigError(
                f"PAYRELAY_PUBLIC_URL must be https:// with WeChat Pay: it refuses the notify_url {self.notify_url}",
                variable="PAYRELAY_PUBLIC_URL",
            )
        self._platform_key = _public_key(config.public_key)
        self._aead = AESGCM(config.apiv3_key.reveal().encode())
        try:
            self._sdk = _sdk_client(config, self.notify_url, timeout)
        except RuntimeError:
            raise
        except Exception as exc:  # the SDK says only "failed to load private key." and the like
            raise GatewayConfigError(f"WeChat Pay settings rejected by the SDK: {exc}",
                                     variable="PAYRELAY_WECHAT_PRIVATE_KEY") from None
        self._opened = False
        self._open_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WechatAdapter(mchid={self.config.mchid!r}, api_base={self.config.api_base!r})"

    # ---- the SDK client: opened once, on first use, shared; closed by aclose() -------------

    async def _client(self) -> AsyncWeChatPay:
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self._sdk.__aenter__()
                    self._opened = True
        return self._sdk

    async def aclose(self) -> None:
        async with self._open_lock:
            if self._opened:
                self._opened = False
                await self._sdk.__aexit__(None, None, None)

    async def _call(self, operation: str, call: Callable[[AsyncWeChatPay], Awaitable[Answer]]) -> Answer:
        """The one boundary where the SDK's and httpx's exceptions become ours."""
        client = await self._client()
        try:
            return await call(client)
        except httpx.TimeoutException as exc:
            raise GatewayUnavailable(f"{wx.GATEWAY} {operation}: timed out") from exc
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"{wx.GATEWAY} {operation}: {type(exc).__name__}") from exc
        except Exception as exc:  # the SDK's bare Exception: a 2xx answer that failed verification
            raise GatewayProtocolError(
                f"{wx.GATEWAY} {operation}: the answer failed signature verification ({exc})"
            ) from exc

    # ---- operations --------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Created:
        if not request.online:
            raise UnsupportedOperation(
                "WeChat Pay Native has no off-session charge: the customer must scan and pay",
                param="onlineScenario",
            )
        if request.amount.currency not in self.currencies:
            raise UnsupportedOperation(
                f"WeChat Pay Native takes CNY only, not {request.amount.currency}", param="currency"
            )
        order = wx.native_order(request, self.notify_url)
        status, body = await self._call("create", lambda sdk: sdk.pay(**order))
        if status != 200:
            raise wx.failure("create", status, body)
        return Created(payment_url=wx.code_url(body), gateway_reference=None)

    async def recover(self, request: CreateRequest) -> Created | None:
        """Ask by out_trade_no first: an order already paid or closed cannot be placed again.
        One still open is placed again with the identical request, for which WeChat answers the
        same code_url (the query does not carry it)."""
        state = await self.query(PaymentRef(request.payment_id, None, request.amount))
        if state.status is None:
            return None
        if state.status is Status.WAITING:
            return await self.create(request)
        return Created(None, state.gateway_reference, state.status, state.failure_reason, state.gateway_state,
                       state.amount)

    async def query(self, ref: PaymentRef) -> GatewayState:
        status, body = await self._call("query", lambda sdk: sdk.query(out_trade_no=ref.payment_id))
        if status == 200:
            return wx.queried(ref.payment_id, body)
        if status == 404 and wx.error_code(body)[0] == wx.ORDER_NOT_EXIST:
            return wx.not_found(ref.payment_id)
        raise wx.failure("query", status, body)

    async def close(self, ref: PaymentRef) -> GatewayState:
        status, body = await self._call("close", lambda sdk: sdk.close(out_trade_no=ref.payment_id))
        if status in (200, 204):
            return await self.query(ref)
        code = wx.error_code(body)[0]
        if code in (wx.ORDERPAID, wx.ORDER_CLOSED):  # nothing to close: say what it is instead
            return await self.query(ref)
        if status == 404 and code == wx.ORDER_NOT_EXIST:
            return wx.not_found(ref.payment_id)
        raise wx.failure("close", status, body)

    # ---- callbacks ---------------------------------------------------------------------------

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
        self._verify(headers, body)
        try:
            notice = wire.loads(body)
        except ValueError:
            raise WebhookPayloadError("the callback body is not JSON") from None
        if not isinstance(notice, dict):
            raise WebhookPayloadError("the callback body is not a JSON object")
        resource = notice.get("resource")
        if (
            not str(notice.get("event_type", "")).startswith("TRANSACTION.")
            or not isinstance(resource, dict)
            or resource.get("original_type", "transaction") != "transaction"
        ):
            return None  # refunds, complaints…: not about a payment's state
        event_id = notice.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookPayloadError("the callback has no id")
        tx = self._decrypt(notice, resource)
        if tx.get("mchid") != self.config.mchid or tx.get("appid") != self.config.appid:
            raise WebhookMismatch("the callback is about another merchant (mchid/appid differ)")
        payment_id = tx.get("out_trade_no")
        amount = tx.get("amount")
        if not isinstance(payment_id, str) or not payment_id:
            raise WebhookPayloadError("the transaction has no out_trade_no")
        if not isinstance(amount, dict) or not isinstance(amount.get("total"), int):
            raise WebhookPayloadError("the transaction has no amount.total")
        try:
            state = wx.transaction_state(payment_id, tx)
        except GatewayProtocolError as exc:  # an unknown trade_state: never guess a status
            raise WebhookPayloadError(str(exc)) from exc
        return WebhookEvent(event_id=event_id, state=state)

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """WeChat's callback signature: RSA-SHA256 over "ts\\nnonce\\nbody\\n" with the platform key."""
        lowered = {name.lower(): value for name, value in headers.items()}
        missing = [name for name in _HEADERS if not lowered.get(name)]
        if missing:
            raise WebhookSignatureError(f"missing header {', '.join(missing)}")
        if lowered["wechatpay-signature-type"] != SIGNATURE_TYPE:
            raise WebhookSignatureError("unsupported Wechatpay-Signature-Type")
        if lowered["wechatpay-serial"] != self.config.public_key_id:
            raise WebhookSignatureError("Wechatpay-Serial is not our WeChat Pay public key id")
        timestamp = lowered["wechatpay-timestamp"]
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise WebhookSignatureError("Wechatpay-Timestamp is not a number") from None
        if skew > WEBHOOK_TOLERANCE:
            raise WebhookSignatureError("Wechatpay-Timestamp is more than 5 minutes off")
        message = f"{timestamp}\n{lowered['wechatpay-nonce']}\n".encode() + body + b"\n"
        try:
            signature = base64.b64decode(lowered["wechatpay-signature"], validate=True)
            self._platform_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError):
            raise WebhookSignatureError("Wechatpay-Signature does not verify") from None

    def _decrypt(self, notice: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
        if notice.get("resource_type") != "encrypt-resource" or resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise WebhookPayloadError("the callback resource is not AEAD_AES_256_GCM encrypted")
        try:
            plain = self._aead.decrypt(
                str(resource["nonce"]).encode(),
                base64.b64decode(str(resource["ciphertext"]), validate=True),
                str(resource.get("associated_data") or "").encode(),
            )
        except (KeyError, InvalidTag, binascii.Error, ValueError):
            raise WebhookSignatureError("the callback resource does not decrypt with our APIv3 key") from None
        try:
            tx = wire.loads(plain)
        except ValueError:
            raise WebhookPayloadError("the decrypted transaction is not JSON") from None
        if not isinstance(tx, dict):
            raise WebhookPayloadError("the decrypted transaction is not a JSON object")
        return tx

    @classmethod
    def webhook_ok(cls) -> WebhookReply:
        return WebhookReply(204)

    @classmethod
    def webhook_fail(cls, status_code: int, message: str) -> WebhookReply:
        body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False).encode()
        return WebhookReply(status_code, body, "application/json")
