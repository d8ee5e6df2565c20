"""`payrelay demo`: payrelay on the embedded store with the three sandbox gateways and fresh keys."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import uvicorn

from adapters import registry
from sandbox.base import Emulator
from sandbox.runner import ServerThread
from service import logs
from service.app import create_app
from service.settings import Settings


def emulators() -> list[Emulator]:
    """One emulator of each gateway payrelay speaks."""
    return [gateway.emulator()() for gateway in registry.GATEWAYS]


def _env_line(name: str, value: str) -> str:
    if "\n" in value or " " in value or "#" in value:
        return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return f"{name}={value}"


def write_env(path: Path, env: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# payrelay demo configuration: generated keys for the sandbox gateways only."]
    lines += [_env_line(name, value) for name, value in sorted(env.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)


def demo_env(public_url: str, gateways: list[Emulator], api_key: str) -> dict[str, str]:
    env = {
        "PAYRELAY_PUBLIC_URL": public_url,
        "PAYRELAY_API_KEYS": f"demo:{api_key}",
        "PAYRELAY_PAYMENT_TTL": "1800",
    }
    for emulator in gateways:
        env.update(emulator.env())
    return env


def run_demo(host: str, port: int, state_dir: str) -> int:
    logs.configure(os.environ.get("PAYRELAY_LOG_LEVEL", "WARNING").upper())
    public_url = f"http://{host}:{port}"
    gateways = emulators()
    servers = []
    for emulator in gateways:
        server = ServerThread(emulator.app, host).start()
        webhook = registry.BY_TYPE[emulator.gateway_type].webhook
        emulator.bind(server.url, f"{public_url}/webhooks/{webhook}")
        servers.append(server)
    api_key = "demo_" + secrets.token_urlsafe(24)
    env = demo_env(public_url, gateways, api_key)
    env_path = Path(state_dir) / "payrelay.env"
    write_env(env_path, env)
    settings = Settings.from_env(env)
    print(_instructions(public_url, api_key, env_path, gateways), flush=True)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    finally:
        for server in servers:
            server.stop()
    return 0


def _instructions(url: str, api_key: str, env_path: Path, gateways: list[Emulator]) -> str:
    sandboxes = "\n".join(f"  {e.gateway_type:<18} sandbox at {e.base_url}" for e in gateways)
    wechat = next(e.base_url for e in gateways if e.gateway_type == "wechat-pay-native")
    return f"""
payrelay demo is running at {url}  (embedded store: nothing is kept after you stop it)
{sandboxes}
configuration written to {env_path} (use it with: payrelay serve --env-file {env_path})

Create a payment (Stripe Checkout sandbox):
  curl -s {url}/api/transactions -H 'Authorization: Bearer {api_key}' \\
    -H 'Content-Type: application/json' -d '{{"transactionId": "order-1", "amount": "25.00",
    "currency": "USD", "date": "2026-11-21", "paymentGatewayType": "stripe-connect",
    "completePayRedirectUrl": "https://example.com/done",
    "cancelPayRedirectUrl": "https://example.com/cancel",
    "onlineScenario": true, "customerIdentifier": "buyer@example.com", "description": "10 GB storage pack"}}'

Open the paymentUrl it answers in a browser and press Pay; then see the payment succeeded:
  curl -s {url}/api/transactions/<paymentId> -H 'Authorization: Bearer {api_key}'

Refund part of it, then the rest, and list the refunds:
  curl -s {url}/api/transactions/<paymentId>/refunds -H 'Authorization: Bearer {api_key}' \\
    -H 'Content-Type: application/json' -d '{{"refundId": "refund-1", "amount": "10.00"}}'
  curl -s {url}/api/transactions/<paymentId>/refunds -H 'Authorization: Bearer {api_key}' \\
    -H 'Content-Type: application/json' -d '{{"refundId": "refund-2"}}'
  curl -s {url}/api/transactions/<paymentId>/refunds -H 'Authorization: Bearer {api_key}'

For Alipay or WeChat Pay use "paymentGatewayType": "alipay-page" or "wechat-pay-native" with
"currency": "CNY". WeChat's paymentUrl is a weixin:// code for a QR code: see it at
{url}/api/transactions/<paymentId>/qrcode.svg, and "scan" it on the WeChat sandbox's page
{wechat}/pay?code_url=<paymentUrl, URL-encoded>.
Stop with Ctrl-C.
"""
