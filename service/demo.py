"""`payrelay demo`: payrelay on the embedded store with the three sandbox gateways
(``service.sandboxes``) and a notification receiver standing in for the storage app, logging
each request, transition and delivery as a readable line, and the operator console with a demo
operator (a password made at each start, printed once)."""

from __future__ import annotations

import json
import logging
import os
import secrets

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from adapters import registry
from sandbox.runner import ServerThread
from service import logs, notify_signature
from service.app import create_app
from service.passwords import hash_password
from service.sandboxes import LABEL_WIDTH, Sandboxes, check_free
from service.settings import Settings

NOTIFY_PATH = "/notify"
OPERATOR = "operator"  # the demo's console user

log = logging.getLogger("payrelay.demo")


def receiver(secret: str) -> Starlette:
    """The storage app's end of the notifications: checks each one's ``Payrelay-Signature``,
    logs what it says and answers 204 (400 to a notification that is not payrelay's)."""

    async def notify(request: Request) -> Response:
        body = await request.body()
        try:
            notify_signature.verify([secret], request.headers.get(notify_signature.HEADER), body)
            event = json.loads(body)
            data = event["data"]
            kind, version, payment_id = str(event["type"]), event["version"], str(data["paymentId"])
        except (notify_signature.SignatureError, ValueError, KeyError, TypeError) as exc:
            log.warning("notification refused: %s", exc if isinstance(exc, ValueError) else "not an event")
            return PlainTextResponse("not a notification signed by payrelay", 400)
        about = f"refund {data.get('refundId')}, " if kind.startswith("refund.") else ""
        log.info("notification received: %s, %sversion %s, signature valid", kind, about, version,
                 extra={"paymentId": payment_id})
        return Response(status_code=204)

    return Starlette(routes=[Route(NOTIFY_PATH, notify, methods=["POST"])])


def run_demo(host: str, port: int, state_dir: str, *, sandbox_port: int, notify_port: int, ttl: int) -> int:
    public_url = f"http://{host}:{port}"
    notify_url = f"http://{host}:{notify_port}{NOTIFY_PATH}"
    sandboxes = Sandboxes(state_dir, host, sandbox_port, public_url)
    password = secrets.token_urlsafe(12)
    env = sandboxes.env(PAYRELAY_NOTIFY_URL=notify_url, PAYRELAY_PAYMENT_TTL=str(ttl),
                        PAYRELAY_CONSOLE_USERS=f"{OPERATOR}:{hash_password(password)}")
    level = os.environ.get("PAYRELAY_LOG_LEVEL", "INFO")
    settings = Settings.from_env(env | {"PAYRELAY_LOG_LEVEL": level})
    check_free(host, {"payrelay": port, "the notification receiver": notify_port} | sandboxes.listeners)
    sandboxes.start()
    notifications = ServerThread(receiver(sandboxes.notify_secret), host, notify_port)
    try:
        notifications.start()
        sandboxes.write(env)
        logs.configure(settings.log_level, settings.log_format)  # after the threads' uvicorn set theirs
        print(_instructions(public_url, notify_url, ttl, sandboxes, password), flush=True)
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    finally:
        notifications.stop()
        sandboxes.stop()
    return 0


def _instructions(url: str, notify_url: str, ttl: int, sandboxes: Sandboxes, password: str) -> str:
    key = sandboxes.api_key
    wechat = {e.gateway_type: e.base_url for e in sandboxes.emulators}[registry.WECHAT.name]
    return f"""
payrelay demo is running at {url}  (embedded store: payments are not kept after you stop it)
{sandboxes.describe()}
  {"notification receiver":<{LABEL_WIDTH}} {notify_url}  (checks each notification's signature, logs it)
  {"operator console":<{LABEL_WIDTH}} {url}/console  (sign in as {OPERATOR}, password {password})
payments expire after {ttl} s (--ttl); configuration written to {sandboxes.env_path}
(keys kept in {sandboxes.state_dir}; `payrelay sandbox` runs the same sandboxes without the demo)

Create a payment (Stripe Checkout sandbox):
  curl -s {url}/api/transactions -H 'Authorization: Bearer {key}' \\
    -H 'Content-Type: application/json' -d '{{"transactionId": "order-1", "amount": "25.00",
    "currency": "USD", "date": "2026-11-21", "paymentGatewayType": "stripe-connect",
    "completePayRedirectUrl": "https://example.com/done",
    "cancelPayRedirectUrl": "https://example.com/cancel",
    "onlineScenario": true, "customerIdentifier": "buyer@example.com", "description": "10 GB storage pack"}}'

Open the paymentUrl it answers in a browser and press Pay; the log below shows the webhook's
transition and the notification's delivery, and the console shows the payment, its timeline and
its notifications (refund it there, or here). Then see the payment and its notifications:
  curl -s {url}/api/transactions/<paymentId> -H 'Authorization: Bearer {key}'
  curl -s {url}/api/transactions/<paymentId>/deliveries -H 'Authorization: Bearer {key}'

Refund part of it, then the rest, and list the refunds:
  curl -s {url}/api/transactions/<paymentId>/refunds -H 'Authorization: Bearer {key}' \\
    -H 'Content-Type: application/json' -d '{{"refundId": "refund-1", "amount": "10.00"}}'
  curl -s {url}/api/transactions/<paymentId>/refunds -H 'Authorization: Bearer {key}' \\
    -H 'Content-Type: application/json' -d '{{"refundId": "refund-2"}}'
  curl -s {url}/api/transactions/<paymentId>/refunds -H 'Authorization: Bearer {key}'

For Alipay or WeChat Pay use "paymentGatewayType": "alipay-page" or "wechat-pay-native" with
"currency": "CNY" (and a new transactionId). Alipay's paymentUrl opens its cashier. WeChat's
paymentUrl is a weixin:// code that a phone scans; here, open the WeChat sandbox's page for it,
which shows the QR code and pays as the scanning customer (paste the paymentUrl as it is):
  {wechat}/pay?code_url=<paymentUrl>
The storage app shows the same code from payrelay's QR image:
  curl -s {url}/api/transactions/<paymentId>/qrcode.svg -H 'Authorization: Bearer {key}' -o qr.svg
Stop with Ctrl-C.
"""
