"""`payrelay demo` as a newcomer runs it: a real process, the README's flow over real HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters import registry
from sandbox.runner import free_port
from service.settings import Settings, read_env_file


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo", "--port", str(port), "--state-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "demo did not start"
        time.sleep(0.1)
    yield url, tmp_path / "payrelay.env", process
    process.terminate()
    process.wait(20)


def test_demo_from_create_to_succeeded_then_refunded(demo: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, env_path, _ = demo
    env = read_env_file(env_path)
    settings = Settings.from_env(env)  # the written configuration is a usable one
    assert list(settings.gateways) == list(registry.GATEWAY_TYPES) and settings.redis_url is None
    api_key = env["PAYRELAY_API_KEYS"].partition(":")[2]
    headers = {"Authorization": f"Bearer {api_key}"}
    created = httpx.post(f"{url}/api/transactions", headers=headers, json={
        "transactionId": "order-1", "amount": "25.00", "currency": "USD", "date": "2026-11-21",
        "paymentGatewayType": "stripe-connect", "completePayRedirectUrl": "https://example.com/done",
        "cancelPayRedirectUrl": "https://example.com/cancel", "onlineScenario": True,
        "customerIdentifier": "buyer@example.com", "description": "10 GB storage pack",
    }).json()
    page = httpx.get(created["paymentUrl"])
    action = re.search(r'<form method="post" action="([^"]+)"><input type="hidden" name="action" value="pay">',
                       page.text)
    assert action is not None, page.text
    paid = httpx.post(httpx.URL(created["paymentUrl"]).join(action.group(1)), data={"action": "pay"})
    assert paid.status_code == 303 and paid.headers["location"].startswith("https://example.com/done")
    payment = httpx.get(f"{url}/api/transactions/{created['paymentId']}", headers=headers).json()
    assert payment["status"] == "succeeded"
    refunds = f"{url}/api/transactions/{created['paymentId']}/refunds"  # as the demo prints it
    part = httpx.post(refunds, headers=headers, json={"refundId": "refund-1", "amount": "10.00"}).json()
    rest = httpx.post(refunds, headers=headers, json={"refundId": "refund-2"}).json()
    assert [(r["status"], r["amount"]) for r in (part, rest)] == [("succeeded", "10.00"), ("succeeded", "15.00")]
    assert httpx.get(refunds, headers=headers).json()["data"] == [part, rest]
    after = httpx.get(f"{url}/api/transactions/{created['paymentId']}", headers=headers).json()
    assert (after["refundedAmount"], after["refundingAmount"]) == ("25.00", "0.00")


def test_demo_env_file_passes_check(demo: tuple[str, Path, subprocess.Popen[str]]) -> None:
    _, env_path, _ = demo
    check = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(env_path)],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False)
    assert check.returncode == 0, check.stderr
    assert "stripe-connect, alipay-page, wechat-pay-native" in check.stdout
    assert oct(env_path.stat().st_mode & 0o777) == "0o600"
