"""The floor: the least each job payrelay does can cost, with the fastest components at hand.

Served by the same ``uvicorn.run(...)`` call as ``payrelay serve`` (service/cli.py), on the same
Redis, in payrelay's key layout (``service.keys``), so that it reads what the harness seeded (but
for its outbox, which payrelay's workers must not see):

* ``POST /api/transactions`` — one Lua call (the record hash and its due entry,
  bench/floor_lua/create.lua); for ``alipay-page`` the RSA2 signature (SHA-256, PKCS#1 v1.5,
  OpenSSL through ``cryptography``) of a page-pay query string with the bench's Alipay app key;
  for ``stripe-connect`` one POST to the Stripe emulator of the body payrelay's SDK sent (captured
  by the emulator process), through one aiohttp session (keep-alive).
* ``GET /api/transactions/{paymentId}`` — one HGETALL, as JSON; for an Alipay payment whose
  record keeps no paymentUrl (payrelay's records keep none: ``service.urls``), its URL signed
  again, as at create (``Alipay.shown``; so do the notifications of Alipay payments).
* ``POST /webhooks/{stripe,alipay,wechat}`` — the verification the gateway calls for and no more
  (Stripe: HMAC-SHA256 of the signed payload; Alipay: RSA2 verify; WeChat: RSA verify and AES-GCM
  decrypt), one Lua call (the transition and its outbox entry, bench/floor_lua/transition.lua),
  the acknowledgement, then in the same process the notification: one signed POST to the notify
  URL through the same aiohttp session.

No validation, no SDK, no idempotency, no logging, no metrics. The expiry sweep's floor is
``bench.floor_sweep``. Run: ``python -m bench.floor --port P --workers N`` with the emulators'
``PAYRELAY_*`` variables and the ``FLOOR_*`` ones (see ``Floor``) set.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import redis.asyncio as aioredis
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapters.alipay.adapter import signed_query
from service import keys, notify_signature
from service.cli import KEEP_ALIVE_SECONDS

LUA = Path(__file__).resolve().parent / "floor_lua"
EXPIRES_AT = re.compile(r"expires_at=[0-9]+")
EXPIRY_MS = 30 * 60_000
CLIENT = "bench"
# the outbound connections of one process: as many as payrelay's transport may open (adapters.transport)
MAX_CONNECTIONS = 64
# the floor's own outbox: payrelay's workers, running beside it on the same Redis, must not claim its entries
OUTBOX_PREFIX = "bench-floor:"


def floor_outbox(bucket: int) -> str:
    return f"{OUTBOX_PREFIX}{keys.tag(bucket)}outbox"


def floor_delivery(bucket: int, delivery_id: str) -> str:
    return f"{OUTBOX_PREFIX}{keys.tag(bucket)}delivery:{delivery_id}"


def der_key(text: str, private: bool) -> Any:
    """A PEM key, or the bare base64 of one as Alipay's console shows them."""
    der = base64.b64decode("".join(line for line in text.strip().splitlines() if not line.startswith("-----")))
    return serialization.load_der_private_key(der, None) if private else serialization.load_der_public_key(der)


def rsa2_verify(key: rsa.RSAPublicKey, content: bytes, signature: str) -> None:
    """Raises cryptography's InvalidSignature unless ``signature`` (base64) signs ``content``."""
    key.verify(base64.b64decode(signature), content, padding.PKCS1v15(), hashes.SHA256())


def alipay_request(app_id: str, method: str, biz: dict[str, str], **others: str) -> dict[str, Any]:
    """An Alipay request's parameters, as python-alipay-sdk's ``build_body`` lays them out."""
    return {"app_id": app_id, "method": method, "charset": "utf-8", "sign_type": "RSA2",
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"), "version": "1.0", "biz_content": biz, **others}


def session(connections: int = MAX_CONNECTIONS) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=10))


class Alipay:
    """The floor's Alipay requests, signed (RSA2) with the bench's app key: gateway calls and
    page-pay (cashier) URLs."""

    def __init__(self, env: dict[str, str]) -> None:
        self.app_id = env["PAYRELAY_ALIPAY_APP_ID"]
        self.gateway = env["PAYRELAY_ALIPAY_GATEWAY_URL"]
        self.signing = der_key(env["PAYRELAY_ALIPAY_PRIVATE_KEY"], private=True)
        self.notify_url = env["FLOOR_PUBLIC_URL"] + "/webhooks/alipay"

    def signed(self, method: str, biz: dict[str, str], **others: str) -> str:
        """``gateway?<the signed request>``."""
        return f"{self.gateway}?{signed_query(self.signing, alipay_request(self.app_id, method, biz, **others))}"

    def url(self, payment_id: str, subject: str, amount: str, expires_s: int, return_url: str) -> str:
        biz = {"subject": subject, "out_trade_no": payment_id, "total_amount": amount,
               "product_code": "FAST_INSTANT_TRADE_PAY",
               "time_expire": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires_s))}
        return self.signed("alipay.trade.page.pay", biz, return_url=return_url, notify_url=self.notify_url)

    def shown(self, record: dict[str, str]) -> dict[str, str]:
        """The record as a GET or a notification shows it: an Alipay payment whose record keeps no
        paymentUrl (payrelay's keep none: ``service.urls``) with its URL signed again, the least a
        reader must do then."""
        if record.get("gateway") != "alipay-page" or "paymentUrl" in record:
            return record
        amount = f"{int(record['amount']) / 100:.2f}"
        return record | {"paymentUrl": self.url(record["paymentId"], record["description"], amount,
                                                int(record["expiresAt"]) // 1000, record["completeUrl"])}


class Floor:
    def __init__(self, env: dict[str, str]) -> None:
        self.redis = aioredis.from_url(env["FLOOR_REDIS_URL"], decode_responses=True)
        self.create_script = self.redis.register_script((LUA / "create.lua").read_text())
        self.transition_script = self.redis.register_script((LUA / "transition.lua").read_text())
        self.alipay = Alipay(env)
        self.alipay_public = der_key(env["PAYRELAY_ALIPAY_PUBLIC_KEY"], private=False)
        self.wechat_public = der_key(env["PAYRELAY_WECHAT_PUBLIC_KEY"], private=False)
        self.wechat_aead = AESGCM(env["PAYRELAY_WECHAT_APIV3_KEY"].encode())
        self.stripe_url = env["PAYRELAY_STRIPE_API_BASE"] + "/v1/checkout/sessions"
        self.stripe_headers = {"Authorization": "Bearer " + env["PAYRELAY_STRIPE_SECRET_KEY"],
                               "Content-Type": "application/x-www-form-urlencoded"}
        if env.get("FLOOR_STRIPE_ACCOUNT"):
            self.stripe_headers["Stripe-Account"] = env["FLOOR_STRIPE_ACCOUNT"]
        self.stripe_secret = env["PAYRELAY_STRIPE_WEBHOOK_SECRET"].encode()
        self.stripe_body = env.get("FLOOR_STRIPE_BODY", "")
        self.stripe_template = env.get("FLOOR_STRIPE_TEMPLATE_ID", "")
        self.notify_url = env["FLOOR_NOTIFY_URL"]
        self.notify_secret = env["FLOOR_NOTIFY_SECRET"]
        self.http: aiohttp.ClientSession | None = None
        self.sending: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.http = session()
        try:
            yield
        finally:
            await self.http.close()
            await self.redis.aclose()

    # -- create and get -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        assert self.http is not None
        body = json.loads(await request.body())
        bucket = keys.bucket_for(CLIENT, body["transactionId"])
        payment_id = keys.new_payment_id(bucket)
        now = int(time.time() * 1000)
        if body["paymentGatewayType"] == "stripe-connect":
            # a fresh expires_at: Stripe wants it 30 min to 24 h ahead of now
            content = EXPIRES_AT.sub(f"expires_at={now // 1000 + 3600}", self.stripe_body)
            async with self.http.post(self.stripe_url, data=content.replace(self.stripe_template, payment_id),
                                      headers={**self.stripe_headers, "Idempotency-Key": payment_id}) as answer:
                url = (await answer.json())["url"]
        else:
            url = self.alipay.url(payment_id, body["description"], body["amount"], now // 1000 + 1800,
                                   body["completePayRedirectUrl"])
        record = {**body, "paymentId": payment_id, "status": "waiting", "paymentUrl": url, "createdAt": now,
                  "expiresAt": now + EXPIRY_MS}
        pairs = [str(x) for item in record.items() for x in item]
        await self.create_script(keys=[keys.payment(bucket, payment_id), keys.due(bucket)],
                                 args=[now + EXPIRY_MS, payment_id, *pairs])
        return JSONResponse({"paymentUrl": url, "paymentId": payment_id, "expireTime": EXPIRY_MS // 1000,
                             "status": "waiting"})

    async def get(self, request: Request) -> Response:
        payment_id = request.path_params["payment_id"]
        record = await self.redis.hgetall(keys.payment(keys.bucket_of(payment_id) or 0, payment_id))
        if not record:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(self.alipay.shown(record))

    # -- webhooks -------------------------------------------------------------------------------

    def stripe_payment(self, headers: Any, body: bytes) -> str:
        fields = dict(part.split("=", 1) for part in headers["stripe-signature"].split(","))
        expected = hmac.new(self.stripe_secret, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["v1"]):
            raise ValueError("Stripe signature")
        return str(json.loads(body)["data"]["object"]["client_reference_id"])

    def alipay_payment(self, headers: Any, body: bytes) -> str:
        fields = dict(parse_qsl(body.decode()))
        content = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type"))
        rsa2_verify(self.alipay_public, content.encode(), fields["sign"])
        return fields["out_trade_no"]

    def wechat_payment(self, headers: Any, body: bytes) -> str:
        signed = f"{headers['wechatpay-timestamp']}\n{headers['wechatpay-nonce']}\n".encode() + body + b"\n"
        rsa2_verify(self.wechat_public, signed, headers["wechatpay-signature"])
        resource = json.loads(body)["resource"]
        plain = self.wechat_aead.decrypt(resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]),
                                         resource["associated_data"].encode())
        return str(json.loads(plain)["out_trade_no"])

    async def webhook(self, request: Request) -> Response:
        gateway = request.path_params["gateway"]
        payment_of = {"stripe": self.stripe_payment, "alipay": self.alipay_payment,
                      "wechat": self.wechat_payment}[gateway]
        payment_id = payment_of(request.headers, await request.body())
        bucket = keys.bucket_of(payment_id) or 0
        delivery_id = "dlv_" + secrets.token_hex(12)
        now = int(time.time() * 1000)
        found = await self.transition_script(
            keys=[keys.payment(bucket, payment_id), keys.due(bucket), floor_outbox(bucket),
                  floor_delivery(bucket, delivery_id)], args=[now, payment_id, delivery_id])
        if found:
            record = dict(zip(found[::2], found[1::2], strict=True))
            assert self.http is not None
            send(self.sending, notify(self.http, self.notify_url, self.notify_secret, delivery_id,
                                      "transaction.succeeded", self.alipay.shown(record)))
        return PlainTextResponse("success") if gateway == "alipay" else Response(status_code=200)


async def notify(http: aiohttp.ClientSession, url: str, secret: str, delivery_id: str, kind: str,
                 record: dict[str, str]) -> None:
    """The notification of a change: one signed POST of the record."""
    body = json.dumps({"id": delivery_id, "type": kind, "data": record}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json",
               notify_signature.HEADER: notify_signature.sign(secret, int(time.time()), body)}
    async with http.post(url, data=body, headers=headers) as answer:
        await answer.read()


def send(sending: set[asyncio.Task[None]], notification: Coroutine[Any, Any, None]) -> None:
    """Send it in the background, kept in ``sending`` until it is done."""
    task = asyncio.create_task(notification)
    sending.add(task)
    task.add_done_callback(sending.discard)


def app_from_env() -> Any:
    floor = Floor(dict(os.environ))
    return Starlette(routes=[
        Route("/api/transactions", floor.create, methods=["POST"]),
        Route("/api/transactions/{payment_id}", floor.get),
        Route("/webhooks/{gateway}", floor.webhook, methods=["POST"]),
    ], lifespan=floor.lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # exactly payrelay's `serve` call (service/cli.py), but for the app
    uvicorn.run("bench.floor:app_from_env", factory=True, host="127.0.0.1", port=args.port, workers=args.workers,
                log_config=None, timeout_graceful_shutdown=20, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                proxy_headers=True,
                forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))


if __name__ == "__main__":
    main()
