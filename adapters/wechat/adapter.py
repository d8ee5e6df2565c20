"""WeChat Pay v3 Native: the mechanics. Requests signed and answers checked with wechatpayv3's
public helpers and sent through the adapter's transport (``adapters.transport``), the boundary
where failures become ours, and callback verification (WeChat's scheme, with ``cryptography``).

wechatpayv3 2.0.4's async client cannot send through another HTTP client (it opens its own httpx
client in ``__aenter__``) nor to another host (its base URL is a private attribute), so the
adapter sends the calls itself, as the SDK's ``pay`` / ``query`` / ``close`` / ``refund`` /
``query_refund`` would in public key mode (paths and bodies in ``transformers``). What it relies
on in the SDK, all public (``wechatpayv3.utils``):
- ``load_private_key(pem)``: the merchant key, as the SDK takes it (bare base64 or PEM);
- ``build_authorization(path, method, mchid, serial_no, private_key, data=body)``: the
  ``Authorization`` header (RSA-SHA256 over "METHOD\\npath?query\\ntimestamp\\nnonce\\nbody\\n");
- ``rsa_verify(timestamp, nonce, body, signature, public_key)``: a 2xx answer's signature.
Answers are checked as the SDK checks them: a 2xx must carry ``Wechatpay-Signature-Type``
WECHATPAY2-SHA256-RSA2048, a ``Wechatpay-Serial`` that is our public key id (the SDK would then
download ``/v3/certificates`` to look for a certificate that public key mode never has) and a
signature that verifies; any other status comes back unverified, for ``transformers.failure``.
Refund notifications (``REFUND.SUCCESS`` / ``REFUND.ABNORMAL`` / ``REFUND.CLOSED``, resource
``original_type`` "refund") come to the same webhook as payment callbacks and are verified and
decrypted the same way (the SDK's ``callback`` scheme).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3.utils import build_authorization, load_private_key, rsa_verify

from adapters import registry, wire
from adapters.base import (
    Adapter,
    Created,
    CreateRequest,
    GatewayState,
    PaymentRef,
    RefundLimits,
    RefundRequest,
    RefundState,
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
from adapters.transport import Response, Transport, TransportError, TransportTimeout
from adapters.wechat import transformers as wx

if TYPE_CHECKING:
    from adapters.wechat.config import WechatConfig

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
WEBHOOK_TOLERANCE = 300  # seconds a callback's timestamp may be off, either way
TIMEOUT = 10.0  # seconds per call
PRODUCTION_BASE = "https://api.mch.weixin.qq.com"
USER_AGENT = "payrelay"  # WeChat Pay refuses requests without a User-Agent
_HEADERS = (
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
    "wechatpay-serial",
    "wechatpay-signature-type",
)


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
    payment_url_is_a_code = True
    # 申请退款 (pay.weixin.qq.com/doc/v3/merchant/4012552567, and wechatpay-go's refunddomestic spec)
    refund_limits = RefundLimits(
        window_days=365,  # "交易时间超过一年的订单无法提交退款" (one year: 支付成功时间 + 365 days)
        minimum_minor=1,  # amount.refund: "退款金额，币种的最小单位，只能为整数" — one fen is the least
        partial=True,  # "微信支付退款支持单笔交易分多次退款"
        max_per_payment=50,  # "每个支付订单的部分退款次数不能超过50次"
    )

    def __init__(self, config: WechatConfig, public_url: str, transport: Transport,
                 timeout: float = TIMEOUT) -> None:
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
            self._merchant_key = load_private_key(config.private_key.reveal())
        except Exception as exc:  # the SDK says only "failed to load private key."
            raise GatewayConfigError(f"WeChat Pay settings rejected by the SDK: {exc}",
                                     variable="PAYRELAY_WECHAT_PRIVATE_KEY") from None
        self._base = (config.api_base or PRODUCTION_BASE).rstrip("/")
        self._transport = transport
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"WechatAdapter(mchid={self.config.mchid!r}, api_base={self.config.api_base!r})"

    async def aclose(self) -> None:
        await self._transport.aclose()

    # ---- the boundary ------------------------------------------------------------------------

    async def _call(self, operation: str, method: str, path: str,
                    body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """One signed request; a 2xx answer only once its signature is checked. (status, body)."""
        content = None if body is None else json.dumps(body)  # the SDK's encoding, signed as sent
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Wechatpay-Serial": self.config.public_key_id,
            "Authorization": build_authorization(path, method, self.config.mchid, self.config.cert_serial_no,
                                                 self._merchant_key, data=content),
        }
        try:
            answer = await self._transport.request(method, self._base + path, headers=headers,
                                                   content=None if content is None else content.encode(),
                                                   timeout=self._timeout)
        except TransportTimeout as exc:
            raise GatewayUnavailable(f"{wx.GATEWAY} {operation}: timed out") from exc
        except TransportError as exc:
            raise GatewayUnavailable(f"{wx.GATEWAY} {operation}: {exc}") from exc
        if 200 <= answer.status < 300:
            self._check_answer(operation, answer)
        return answer.status, answer.body

    def _check_answer(self, operation: str, answer: Response) -> None:
        headers = answer.headers
        if headers.get("wechatpay-signature-type") != SIGNATURE_TYPE:
            problem = "no WECHATPAY2-SHA256-RSA2048 signature"
        elif headers.get("wechatpay-serial") != self.config.public_key_id:
            problem = "Wechatpay-Serial is not our WeChat Pay public key id"
        else:
            try:
                text = answer.body.decode()
            except UnicodeDecodeError:
                text = None
            signed = text is not None and rsa_verify(
                headers.get("wechatpay-timestamp", ""), headers.get("wechatpay-nonce", ""), text,
                headers.get("wechatpay-signature", ""), self._platform_key)
            if signed:
                return
            problem = "the signature does not verify"
        raise GatewayProtocolError(f"{wx.GATEWAY} {operation}: the answer failed signature verification ({problem})")

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
        order = wx.native_order(request, self.notify_url) | {"appid": self.config.appid, "mchid": self.config.mchid}
        status, body = await self._call("create", "POST", wx.NATIVE_PATH, order)
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
        status, body = await self._call("query", "GET", wx.query_path(ref.payment_id, self.config.mchid))
        if status == 200:
            return wx.queried(ref.payment_id, body)
        if status == 404 and wx.error_code(body)[0] == wx.ORDER_NOT_EXIST:
            return wx.not_found(ref.payment_id)
        raise wx.failure("query", status, body)

    async def close(self, ref: PaymentRef) -> GatewayState:
        status, body = await self._call("close", "POST", wx.close_path(ref.payment_id), {"mchid": self.config.mchid})
        if status in (200, 204):
            return await self.query(ref)
        code = wx.error_code(body)[0]
        if code in (wx.ORDERPAID, wx.ORDER_CLOSED):  # nothing to close: say what it is instead
            return await self.query(ref)
        if status == 404 and code == wx.ORDER_NOT_EXIST:
            return wx.not_found(ref.payment_id)
        raise wx.failure("close", status, body)

    # ---- refunds -----------------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundState:
        """``POST /v3/refund/domestic/refunds`` under ``out_refund_no`` = ``request.refund_no``:
        WeChat refunds one out_refund_no once ("同一退款单号多次请求只退一笔"), so sending it again
        answers the same refund. The answer is usually PROCESSING; the outcome arrives by
        notification or :meth:`query_refund`."""
        if request.amount.currency not in self.currencies:
            raise UnsupportedOperation(
                f"WeChat Pay Native refunds CNY only, not {request.amount.currency}", param="currency"
            )
        status, body = await self._call("refund", "POST", wx.REFUND_PATH, wx.refund_body(request, self.notify_url))
        if status == 200:
            return wx.refunded(request, body)
        raise wx.failure("refund", status, body, wx.REFUND_ADVICE)

    async def query_refund(self, request: RefundRequest) -> RefundState | None:
        status, body = await self._call("query_refund", "GET", wx.refund_path(request.refund_no))
        if status == 200:
            return wx.refund_queried(request.refund_no, body)
        if status == 404 and wx.error_code(body)[0] == wx.RESOURCE_NOT_EXISTS:
            return None
        raise wx.failure("query_refund", status, body, wx.REFUND_ADVICE)

    # ---- callbacks ---------------------------------------------------------------------------

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
        self._check_signature(headers, body)
        try:
            notice = wire.loads(body)
        except ValueError:
            raise WebhookPayloadError("the callback body is not JSON") from None
        if not isinstance(notice, dict):
            raise WebhookPayloadError("the callback body is not a JSON object")
        resource = notice.get("resource")
        event_type = str(notice.get("event_type", ""))
        if not isinstance(resource, dict):
            return None
        if event_type.startswith("REFUND.") and resource.get("original_type", "refund") == "refund":
            return self._refund_event(self._event_id(notice), self._decrypt(notice, resource))
        if not event_type.startswith("TRANSACTION.") or resource.get("original_type", "transaction") != "transaction":
            return None  # complaints, a refund event about a transaction…: not about our records
        event_id = self._event_id(notice)
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

    @staticmethod
    def _event_id(notice: dict[str, Any]) -> str:
        event_id = notice.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise WebhookPayloadError("the callback has no id")
        return event_id

    def _refund_event(self, event_id: str, refund: dict[str, Any]) -> WebhookEvent:
        """A decrypted refund notification: mchid, out_trade_no, out_refund_no, refund_id,
        refund_status, amount {total, refund, payer_total, payer_refund}, success_time (no appid)."""
        if refund.get("mchid") != self.config.mchid:
            raise WebhookMismatch("the refund notification is about another merchant (mchid differs)")
        refund_no = refund.get("out_refund_no")
        payment_id = refund.get("out_trade_no")
        amount = refund.get("amount")
        if not isinstance(refund_no, str) or not refund_no:
            raise WebhookPayloadError("the refund has no out_refund_no")
        if not isinstance(payment_id, str) or not payment_id:
            raise WebhookPayloadError("the refund has no out_trade_no")
        if not isinstance(amount, dict) or not isinstance(amount.get("refund"), int):
            raise WebhookPayloadError("the refund has no amount.refund")
        try:
            state = wx.refund_state(refund_no, refund, state_field="refund_status")
        except GatewayProtocolError as exc:  # an unknown refund_status: never guess a status
            raise WebhookPayloadError(str(exc)) from exc
        return WebhookEvent(event_id=event_id, refund=state)

    def _check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
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
