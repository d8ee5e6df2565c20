"""Independent vectors: every expected value here was computed outside the code under test.

HMAC vectors come from OpenSSL (the command is next to each); RSA signatures (PKCS#1 v1.5, as
Alipay's RSA2 and WeChat Pay's SHA256-RSA2048 use) and AES-256-GCM are made here with
``cryptography`` over the exact bytes each gateway's documentation defines, written out as
literals, and handed to the adapters' real parse path: code that signs or verifies the wrong
bytes cannot agree with them, even if it agrees with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.alipay import transformers as alipay_tx
from adapters.alipay.adapter import AlipayAdapter
from adapters.base import Money, Status
from adapters.errors import WebhookMismatch, WebhookPayloadError, WebhookSignatureError
from adapters.stripe.adapter import StripeAdapter
from adapters.wechat.adapter import WechatAdapter
from sandbox.alipay import AlipayEmulator
from sandbox.stripe import StripeEmulator
from sandbox.wechat import WechatEmulator
from service import cloudreve_auth, notify_signature

# -- Payrelay-Signature ----------------------------------------------------------------------------

NOTIFY_SECRET = "whsec_vector_secret"
NOTIFY_AT = 1800000000
NOTIFY_BODY = b'{"id":"evt_1","type":"transaction.succeeded","data":{"amount":"25.000","currency":"OMR"}}'
# printf '%s' "1800000000.$BODY" | openssl dgst -sha256 -hmac whsec_vector_secret
NOTIFY_V1 = "34e100cbf60af85a0c33b136909828a7801a16c86add2f6c2d04abc245f0d065"
# printf '%s' "$BODY" | openssl dgst -sha256 -hmac whsec_vector_secret   (the timestamp left out)
NOTIFY_V1_WITHOUT_TIMESTAMP = "ee7de859d790b46275fdee06aba2b58453f28935d57f5c2052a32c54b6cc3506"


def test_payrelay_signature_vector() -> None:
    header = f"t={NOTIFY_AT},v1={NOTIFY_V1}"
    assert notify_signature.sign(NOTIFY_SECRET, NOTIFY_AT, NOTIFY_BODY) == header
    assert notify_signature.verify([NOTIFY_SECRET], header, NOTIFY_BODY, now=NOTIFY_AT) == NOTIFY_AT
    assert notify_signature.verify([NOTIFY_SECRET], header.upper().replace("T=", "t=").replace("V1=", "v1="),
                                   NOTIFY_BODY, now=NOTIFY_AT) == NOTIFY_AT  # hex in any case


@pytest.mark.parametrize(("header", "body", "secret"), [
    (f"t={NOTIFY_AT},v1={NOTIFY_V1_WITHOUT_TIMESTAMP}", NOTIFY_BODY, NOTIFY_SECRET),
    (f"t={NOTIFY_AT + 1},v1={NOTIFY_V1}", NOTIFY_BODY, NOTIFY_SECRET),  # another timestamp
    (f"t={NOTIFY_AT},v1={NOTIFY_V1}", NOTIFY_BODY.replace(b"25.000", b"2.500"), NOTIFY_SECRET),
    (f"t={NOTIFY_AT},v1={NOTIFY_V1}", NOTIFY_BODY, "whsec_vector_secreT"),
    (f"t={NOTIFY_AT},v1={NOTIFY_V1[:-1]}", NOTIFY_BODY, NOTIFY_SECRET),  # a prefix is no match
])
def test_payrelay_signature_vector_refusals(header: str, body: bytes, secret: str) -> None:
    with pytest.raises(notify_signature.SignatureError, match="no signature matches"):
        notify_signature.verify([secret], header, body, now=NOTIFY_AT)


# -- Cloudreve ---------------------------------------------------------------------------------

CLOUDREVE_KEY = "test-communication-key"
CLOUDREVE_EXPIRES = 1900000000
CLOUDREVE_GET_PATH = "/cloudreve/order/20250612141601003370839825"
# printf '%s' "$PATH:1900000000" | openssl dgst -sha256 -hmac test-communication-key -binary | base64 | tr '+/' '-_'
CLOUDREVE_GET_SIGN = "fobPHoUS_eR_xankCAJESfVKEI6u80koYX69CX9AwpM=:1900000000"
# Go's json.Marshal of struct{Path, Header, Body string}: & < > as \u00XX, X-Cr-* headers only
CLOUDREVE_POST_CONTENT = (
    '{"Path":"/cloudreve/order",'
    '"Header":"X-Cr-Site-Id=abc\\u0026x\\u003cy\\u003e\\u0026X-Cr-Version=4.0.0",'
    '"Body":"{\\"amount\\":100}"}'
)
# printf '%s' "$CONTENT:1900000000" | openssl dgst -sha256 -hmac test-communication-key -binary | base64 | tr '+/' '-_'
CLOUDREVE_POST_AUTHORIZATION = "Bearer Cr ND1_SOcykyPMfKVQt8HQz00MYjYHqV7lQbWXc-sdb5U=:1900000000"
CLOUDREVE_HEADERS = {"x-cr-version": "4.0.0", "X-CR-SITE-ID": "abc&x<y>", "User-Agent": "Cloudreve/4.0.0"}


def test_cloudreve_vectors() -> None:
    now = CLOUDREVE_EXPIRES - 10
    assert cloudreve_auth.sign_get(CLOUDREVE_KEY, CLOUDREVE_GET_PATH, CLOUDREVE_EXPIRES) == CLOUDREVE_GET_SIGN
    cloudreve_auth.verify_get(CLOUDREVE_KEY, CLOUDREVE_GET_PATH, CLOUDREVE_GET_SIGN, now=now)
    body = '{"amount":100}'
    assert cloudreve_auth.post_content("/cloudreve/order", CLOUDREVE_HEADERS, body) == CLOUDREVE_POST_CONTENT
    assert cloudreve_auth.sign_post(CLOUDREVE_KEY, "/cloudreve/order", CLOUDREVE_HEADERS, body,
                                    CLOUDREVE_EXPIRES) == CLOUDREVE_POST_AUTHORIZATION
    cloudreve_auth.verify_post(CLOUDREVE_KEY, "/cloudreve/order", CLOUDREVE_HEADERS, body,
                               CLOUDREVE_POST_AUTHORIZATION, now=now)
    for changed in ('{"amount":10}', body + " "):
        with pytest.raises(cloudreve_auth.CloudreveAuthError, match="does not match"):
            cloudreve_auth.verify_post(CLOUDREVE_KEY, "/cloudreve/order", CLOUDREVE_HEADERS, changed,
                                       CLOUDREVE_POST_AUTHORIZATION, now=now)
    with pytest.raises(cloudreve_auth.CloudreveAuthError, match="does not match"):
        cloudreve_auth.verify_get(CLOUDREVE_KEY, CLOUDREVE_GET_PATH + "6", CLOUDREVE_GET_SIGN, now=now)


# -- Alipay: the notification's sign content, RSA2 over exactly those bytes ------------------------

def _rsa_sign(private_pem: str, message: bytes) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _rsa_verifies(public_pem: str, message: bytes, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


def _alipay_form(app_id: str, seller_id: str) -> dict[str, str]:
    return {
        "seller_id": seller_id,
        "trade_status": "TRADE_SUCCESS", "total_amount": "89.00", "out_trade_no": "pr_00vector0000000000000001",
        "app_id": app_id, "notify_id": "2026112100222103456000000001", "subject": "10 GB 容量包 & <plan>=1",
        "passback_params": "", "gmt_payment": "2026-11-21 10:34:56", "sign_type": "RSA2",
        "charset": "utf-8", "trade_no": "2026112122001400000000000001",
    }


def _alipay_content(app_id: str, seller_id: str) -> str:
    """Alipay's rule, written out: every field but sign and sign_type, sorted by name, raw k=v by &."""
    return (f"app_id={app_id}&charset=utf-8&gmt_payment=2026-11-21 10:34:56"
            "&notify_id=2026112100222103456000000001&out_trade_no=pr_00vector0000000000000001"
            f"&passback_params=&seller_id={seller_id}&subject=10 GB 容量包 & <plan>=1&total_amount=89.00"
            "&trade_no=2026112122001400000000000001&trade_status=TRADE_SUCCESS")


async def test_alipay_notification_vector(alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator) -> None:
    app_id = alipay_emulator.app_id
    form = _alipay_form(app_id, alipay_emulator.seller_id)
    content = _alipay_content(app_id, alipay_emulator.seller_id).encode()
    assert alipay_tx.signed_content(form).encode() == content
    sign = _rsa_sign(alipay_emulator.alipay_private_key, content)
    event = await alipay_adapter.parse_webhook({}, urlencode(form | {"sign": sign}).encode())
    assert event is not None and event.state.status is Status.SUCCEEDED
    assert event.state.amount == Money(8900, "CNY") and event.event_id == form["notify_id"]
    # the emulator signs the same bytes (its copy of the rule is independent of the adapter's)
    assert _rsa_verifies(alipay_emulator.alipay_public_key, content, alipay_emulator.sign_fields(form)["sign"])


@pytest.mark.parametrize("signed", [
    "with sign_type",  # sign_type is not signed
    "blank left out",  # blank values are signed (python-alipay-sdk's verify)
    "url-encoded",  # the raw values are signed, not their form encoding
    "sign_type RSA",  # RSA (SHA-1) is refused whatever it signs
])
async def test_alipay_notification_signed_over_other_bytes_is_refused(
        alipay_adapter: AlipayAdapter, alipay_emulator: AlipayEmulator, signed: str) -> None:
    app_id = alipay_emulator.app_id
    seller_id = alipay_emulator.seller_id
    form, content = _alipay_form(app_id, seller_id), _alipay_content(app_id, seller_id)
    if signed == "with sign_type":
        content = content.replace("&subject=", "&sign_type=RSA2&subject=")
    elif signed == "blank left out":
        content = content.replace("&passback_params=", "")
    elif signed == "url-encoded":
        content = content.replace("10 GB 容量包 & <plan>=1", urlencode({"s": form["subject"]})[2:])
    else:
        form["sign_type"] = "RSA"
    sign = _rsa_sign(alipay_emulator.alipay_private_key, content.encode())
    with pytest.raises(WebhookSignatureError):
        await alipay_adapter.parse_webhook({}, urlencode(form | {"sign": sign}).encode())


# -- WeChat Pay: the callback's signature message and its AEAD_AES_256_GCM resource ---------------

def _wechat_callback(emulator: WechatEmulator, adapter: WechatAdapter, associated_data: str | None, *,
                     encrypt_with: str | None = None, message: str = "{ts}\n{nonce}\n{body}\n",
                     total: int = 8900, tx_changes: dict[str, Any] | None = None,
                     notice_changes: dict[str, Any] | None = None, resource_changes: dict[str, Any] | None = None,
                     plaintext: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    """A TRANSACTION.SUCCESS callback built from WeChat's documentation alone: the transaction
    JSON encrypted with AES-256-GCM under the APIv3 key (nonce and associated_data as given in the
    resource), the body signed with SHA256-RSA2048 over "timestamp\\nnonce\\nbody\\n". The
    ``*_changes`` replace (or, with ``...`` as the value, drop) fields before it is signed."""
    keys = emulator.keys
    tx = {"mchid": keys.mchid, "appid": keys.appid, "out_trade_no": "pr_00vector0000000000000002",
          "transaction_id": "4200000000000000000000000001", "trade_type": "NATIVE", "trade_state": "SUCCESS",
          "trade_state_desc": "支付成功", "bank_type": "OTHERS", "success_time": "2026-11-21T10:34:56+08:00",
          "payer": {"openid": "o_vector"}, "amount": {"total": total, "payer_total": total, "currency": "CNY",
                                                     "payer_currency": "CNY"}}
    nonce = "0123456789ab"
    aad = (associated_data if encrypt_with is None else encrypt_with) or ""
    plain = json.dumps(_changed(tx, tx_changes)).encode() if plaintext is None else plaintext
    ciphertext = AESGCM(keys.apiv3_key.encode()).encrypt(nonce.encode(), plain, aad.encode())
    resource: dict[str, Any] = {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                "ciphertext": base64.b64encode(ciphertext).decode(), "nonce": nonce}
    if associated_data is not None:
        resource["associated_data"] = associated_data
    notice = {"id": "EV-vector-1", "create_time": "2026-11-21T10:34:57+08:00",
              "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
              "summary": "支付成功", "resource": _changed(resource, resource_changes)}
    body = json.dumps(_changed(notice, notice_changes), ensure_ascii=False).encode()
    return body, _wechat_signed(emulator, body, message)


def _changed(fields: dict[str, Any], changes: dict[str, Any] | None) -> Any:
    if changes is not None and not isinstance(changes, dict):
        return changes  # the whole thing replaced (not an object)
    out = fields | (changes or {})
    return {k: v for k, v in out.items() if v is not ...}


def _wechat_signed(emulator: WechatEmulator, body: bytes, message: str = "{ts}\n{nonce}\n{body}\n") -> dict[str, str]:
    keys = emulator.keys
    ts, signing_nonce = str(int(time.time())), secrets.token_hex(16)
    signed = message.format(ts=ts, nonce=signing_nonce, body=body.decode()).encode()
    return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": signing_nonce,
            "Wechatpay-Signature": _rsa_sign(keys.platform_private_key, signed),
            "Wechatpay-Serial": keys.public_key_id, "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


@pytest.mark.parametrize("associated_data", ["transaction", "refund", "", None, "payrelay 附加数据 ✓"])
async def test_wechat_callback_vector(wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator,
                                      associated_data: str | None) -> None:
    body, headers = _wechat_callback(wechat_emulator, wechat_adapter, associated_data)
    event = await wechat_adapter.parse_webhook(headers, body)
    assert event is not None and event.event_id == "EV-vector-1"
    assert event.state.status is Status.SUCCEEDED and event.state.amount == Money(8900, "CNY")
    assert event.state.payment_id == "pr_00vector0000000000000002"


@pytest.mark.parametrize(("associated_data", "encrypt_with"), [
    ("transaction", "refund"), ("transaction", ""), ("", "transaction"), (None, "transaction"), ("refund", "Refund"),
])
async def test_wechat_callback_with_other_associated_data_does_not_decrypt(
        wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, associated_data: str | None,
        encrypt_with: str) -> None:
    body, headers = _wechat_callback(wechat_emulator, wechat_adapter, associated_data, encrypt_with=encrypt_with)
    with pytest.raises(WebhookSignatureError, match="does not decrypt"):
        await wechat_adapter.parse_webhook(headers, body)


@pytest.mark.parametrize("message", [
    "{ts}\n{nonce}\n{body}",  # no final newline
    "{nonce}\n{ts}\n{body}\n",
    "{body}\n",
    "POST\n/webhooks/wechat\n{ts}\n{nonce}\n{body}\n",  # a request's message, not a callback's
])
async def test_wechat_callback_signed_over_other_bytes_is_refused(
        wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator, message: str) -> None:
    body, headers = _wechat_callback(wechat_emulator, wechat_adapter, "transaction", message=message)
    with pytest.raises(WebhookSignatureError, match="does not verify"):
        await wechat_adapter.parse_webhook(headers, body)


async def test_wechat_emulator_callbacks_follow_the_same_rules(wechat_adapter: WechatAdapter,
                                                                wechat_emulator: WechatEmulator) -> None:
    """The emulator's callbacks, read back with cryptography alone: signed over the documented
    message, and encrypted with the associated_data their resource names (which varies)."""
    from tests.fixtures_wechat import created

    request, _ = await created(wechat_adapter)
    seen = set()
    for _ in range(3):
        body, headers = wechat_emulator.signed_callback(request.payment_id)
        message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
        assert _rsa_verifies(wechat_emulator.keys.platform_public_key, message, headers["Wechatpay-Signature"])
        resource = json.loads(body)["resource"]
        seen.add(resource["associated_data"])
        plain = AESGCM(wechat_emulator.keys.apiv3_key.encode()).decrypt(
            resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource["associated_data"].encode())
        assert json.loads(plain)["out_trade_no"] == request.payment_id
        event = await wechat_adapter.parse_webhook(headers, body)
        assert event is not None and event.state.payment_id == request.payment_id
    assert len(seen) == 3  # "transaction", "" and another


async def test_wechat_callback_body_changed_after_signing_is_refused(wechat_adapter: WechatAdapter,
                                                                     wechat_emulator: WechatEmulator) -> None:
    body, headers = _wechat_callback(wechat_emulator, wechat_adapter, "transaction")
    with pytest.raises(WebhookSignatureError, match="does not verify"):
        await wechat_adapter.parse_webhook(headers, body.replace(b'"EV-vector-1"', b'"EV-vector-2"'))


_NOT_BASE64 = "not base64!"


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"body": b"not json"}, WebhookPayloadError, "the callback body is not JSON"),
    ({"body": b"[1, 2]"}, WebhookPayloadError, "the callback body is not a JSON object"),
    ({"notice": {"id": ...}}, WebhookPayloadError, "the callback has no id"),
    ({"notice": {"id": ""}}, WebhookPayloadError, "the callback has no id"),
    ({"notice": {"id": 5}}, WebhookPayloadError, "the callback has no id"),
    ({"notice": {"resource_type": "plain-resource"}}, WebhookPayloadError,
     "the callback resource is not AEAD_AES_256_GCM encrypted"),
    ({"resource": {"algorithm": "AEAD_AES_128_GCM"}}, WebhookPayloadError,
     "the callback resource is not AEAD_AES_256_GCM encrypted"),
    ({"resource": {"ciphertext": _NOT_BASE64}}, WebhookSignatureError,
     "the callback resource does not decrypt with our APIv3 key"),
    ({"resource": {"nonce": ...}}, WebhookSignatureError, "the callback resource does not decrypt with our APIv3 key"),
    ({"plaintext": b"not json"}, WebhookPayloadError, "the decrypted transaction is not JSON"),
    ({"plaintext": b"[1]"}, WebhookPayloadError, "the decrypted transaction is not a JSON object"),
    ({"tx": {"mchid": "1900000000"}}, WebhookMismatch,
     "the callback is about another merchant (mchid/appid differ)"),
    ({"tx": {"appid": "wx0000000000000000"}}, WebhookMismatch,
     "the callback is about another merchant (mchid/appid differ)"),
    ({"tx": {"out_trade_no": ...}}, WebhookPayloadError, "the transaction has no out_trade_no"),
    ({"tx": {"out_trade_no": ""}}, WebhookPayloadError, "the transaction has no out_trade_no"),
    ({"tx": {"out_trade_no": 12345678}}, WebhookPayloadError, "the transaction has no out_trade_no"),
    ({"tx": {"amount": {"currency": "CNY"}}}, WebhookPayloadError, "the transaction has no amount.total"),
    ({"tx": {"amount": 8900}}, WebhookPayloadError, "the transaction has no amount.total"),
])
async def test_wechat_callback_refusals_say_exactly_why(wechat_adapter: WechatAdapter, wechat_emulator: WechatEmulator,
                                                        changes: dict[str, Any], error: type[Exception],
                                                        message: str) -> None:
    if "body" in changes:
        body = changes["body"]
        headers = _wechat_signed(wechat_emulator, body)
    else:
        resource = changes.get("resource")
        if resource and resource.get("ciphertext") == _NOT_BASE64:
            good, _ = _wechat_callback(wechat_emulator, wechat_adapter, "transaction")
            # the genuine ciphertext with a line break in it: base64 that only a lenient decoder takes
            ciphertext = json.loads(good)["resource"]["ciphertext"]
            resource = {"ciphertext": ciphertext[:8] + "\n" + ciphertext[8:]}
        body, headers = _wechat_callback(wechat_emulator, wechat_adapter, "transaction",
                                         tx_changes=changes.get("tx"), notice_changes=changes.get("notice"),
                                         resource_changes=resource, plaintext=changes.get("plaintext"))
    with pytest.raises(error) as refused:
        await wechat_adapter.parse_webhook(headers, body)
    assert str(refused.value) == message


@pytest.mark.parametrize(("changes", "taken"), [
    ({"resource": {"original_type": ...}}, True),  # absent: a transaction, as WeChat's own callbacks are
    ({"resource": {"original_type": "refund"}}, False),  # a refund's callback: not about a payment's state
    ({"notice": {"event_type": "REFUND.SUCCESS"}}, False),
    ({"notice": {"event_type": ...}}, False),
    ({"notice": {"resource": "transaction"}}, False),  # no resource object
])
async def test_wechat_callbacks_about_other_things_are_ignored(wechat_adapter: WechatAdapter,
                                                               wechat_emulator: WechatEmulator,
                                                               changes: dict[str, Any], taken: bool) -> None:
    body, headers = _wechat_callback(wechat_emulator, wechat_adapter, "transaction",
                                     notice_changes=changes.get("notice"), resource_changes=changes.get("resource"))
    event = await wechat_adapter.parse_webhook(headers, body)
    assert (event is not None) == taken


# -- Stripe: Stripe-Signature over "<t>.<raw body>", computed here with hmac -------------------------

def _stripe_header(secret: str, body: bytes, timestamp: int) -> str:
    v1 = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={v1}"


_STRIPE_EVENT = {"id": "evt_vector_1", "object": "event", "type": "checkout.session.expired", "account": None,
                 "data": {"object": {"id": "cs_test_vector", "object": "checkout.session", "status": "expired",
                                     "payment_status": "unpaid", "amount_total": 2500, "currency": "usd",
                                     "client_reference_id": "pr_vector", "metadata": {"paymentId": "pr_vector"}}}}


async def test_stripe_signature_computed_by_hand_verifies(stripe_adapter: StripeAdapter,
                                                          stripe_emulator: StripeEmulator) -> None:
    body = json.dumps(_STRIPE_EVENT).encode()
    header = _stripe_header(stripe_emulator.webhook_secret, body, int(time.time()))
    event = await stripe_adapter.parse_webhook({"STRIPE-SIGNATURE": header}, body)  # any case of the name
    assert event is not None and event.state.status is Status.CLOSED


@pytest.mark.parametrize(("case", "error", "message"), [
    ("no header", WebhookSignatureError, "no Stripe-Signature header"),
    ("empty header", WebhookSignatureError, "no Stripe-Signature header"),
    ("other secret", WebhookSignatureError,
     "the Stripe-Signature does not verify with any webhook secret, or its timestamp is too old"),
    ("too old", WebhookSignatureError,
     "the Stripe-Signature does not verify with any webhook secret, or its timestamp is too old"),
    ("future", WebhookSignatureError, "the Stripe-Signature timestamp is in the future"),
    ("not UTF-8", WebhookSignatureError, "the body is not UTF-8, so Stripe did not sign it"),
    ("not JSON", WebhookPayloadError, "the event is not JSON"),
])
async def test_stripe_refusals_say_exactly_why(stripe_adapter: StripeAdapter, stripe_emulator: StripeEmulator,
                                               case: str, error: type[Exception], message: str) -> None:
    body, secret, stamp = json.dumps(_STRIPE_EVENT).encode(), stripe_emulator.webhook_secret, int(time.time())
    headers: dict[str, str] = {}
    if case == "empty header":
        headers = {"Stripe-Signature": ""}
    elif case != "no header":
        if case == "other secret":
            secret = "whsec_other"
        elif case == "too old":
            stamp -= 301
        elif case == "future":
            stamp += 291
        elif case == "not UTF-8":
            body = b'{"id": "evt_\xff"}'
        elif case == "not JSON":
            body = b"not json"
        headers = {"Stripe-Signature": _stripe_header(secret, body, stamp)}
    with pytest.raises(error) as refused:
        await stripe_adapter.parse_webhook(headers, body)
    assert str(refused.value) == message


@pytest.mark.parametrize(("case", "message"), [
    ("missing two", "missing header wechatpay-nonce, wechatpay-signature"),
    ("empty", "missing header wechatpay-serial"),
    ("signature type", "unsupported Wechatpay-Signature-Type"),
    ("serial", "Wechatpay-Serial is not our WeChat Pay public key id"),
    ("timestamp", "Wechatpay-Timestamp is not a number"),
    ("stale", "Wechatpay-Timestamp is more than 5 minutes off"),
    ("future", "Wechatpay-Timestamp is more than 5 minutes off"),
    ("signature with a line break", "Wechatpay-Signature does not verify"),
    ("signature not base64", "Wechatpay-Signature does not verify"),
])
async def test_wechat_signature_refusals_say_exactly_why(wechat_adapter: WechatAdapter,
                                                         wechat_emulator: WechatEmulator, case: str,
                                                         message: str) -> None:
    body, headers = _wechat_callback(wechat_emulator, wechat_adapter, "transaction")
    if case == "missing two":
        del headers["Wechatpay-Nonce"], headers["Wechatpay-Signature"]
    elif case == "empty":
        headers["Wechatpay-Serial"] = ""
    elif case == "signature type":
        headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA4096"
    elif case == "serial":
        headers["Wechatpay-Serial"] = "PUB_KEY_ID_0000"
    elif case == "timestamp":
        headers["Wechatpay-Timestamp"] = "12:00"
    elif case in ("stale", "future"):
        stamp = int(time.time()) + (-310 if case == "stale" else 310)
        message_bytes = f"{stamp}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
        headers |= {"Wechatpay-Timestamp": str(stamp),
                    "Wechatpay-Signature": _rsa_sign(wechat_emulator.keys.platform_private_key, message_bytes)}
    elif case == "signature with a line break":  # the genuine signature, which only a lenient decoder takes
        signature = headers["Wechatpay-Signature"]
        headers["Wechatpay-Signature"] = signature[:10] + "\n" + signature[10:]
    else:
        headers["Wechatpay-Signature"] = "not base64!"
    with pytest.raises(WebhookSignatureError) as refused:
        await wechat_adapter.parse_webhook(headers, body)
    assert str(refused.value) == message


async def test_alipay_notification_without_sign_type_is_rsa2(alipay_adapter: AlipayAdapter,
                                                             alipay_emulator: AlipayEmulator) -> None:
    form = _alipay_form(alipay_emulator.app_id, alipay_emulator.seller_id)
    del form["sign_type"]
    content = _alipay_content(alipay_emulator.app_id, alipay_emulator.seller_id)
    sign = _rsa_sign(alipay_emulator.alipay_private_key, content.encode())
    event = await alipay_adapter.parse_webhook({}, urlencode(form | {"sign": sign}).encode())
    assert event is not None and event.state.status is Status.SUCCEEDED


@pytest.mark.parametrize(("body", "error", "message"), [
    (b"", WebhookSignatureError, "notification is not signed"),
    (b"out_trade_no=pr_1&sign=", WebhookSignatureError, "notification is not signed"),
    (b"out_trade_no=pr_1&sign_type=RSA&sign=abc", WebhookSignatureError, "notification is not signed with RSA2"),
    (b"out_trade_no=pr_1&sign_type=rsa2&sign=abc", WebhookSignatureError, "notification is not signed with RSA2"),
    (b"out_trade_no=pr_1&sign_type=RSA2&sign=abc", WebhookSignatureError,
     "notification signature does not verify with Alipay's public key"),
    (b"out_trade_no=pr_1&sign=abc", WebhookSignatureError,
     "notification signature does not verify with Alipay's public key"),
    (b"subject=%FF&sign=abc", WebhookPayloadError, "notification is not a UTF-8 form"),  # invalid UTF-8, escaped
    (b"subject=\xff&sign=abc", WebhookPayloadError, "notification is not a UTF-8 form"),
    (b"out_trade_no=pr_1&out_trade_no=pr_2&sign=abc", WebhookPayloadError, "notification repeats a field"),
    # more than 200 fields (MAX_NOTIFICATION_FIELDS): refused as a payload (its message is not pinned:
    # it says "not a UTF-8 form", which is not what is wrong)
    (b"&".join(b"f%d=1" % n for n in range(201)) + b"&sign=abc", WebhookPayloadError, None),
])
async def test_alipay_refusals_say_exactly_why(alipay_adapter: AlipayAdapter, body: bytes, error: type[Exception],
                                               message: str | None) -> None:
    with pytest.raises(error) as refused:
        await alipay_adapter.parse_webhook({}, body)
    assert message is None or str(refused.value) == message
