"""Secrets never reach logs, error answers or reprs: each test puts secrets in play and makes things
fail around them (wrong keys at every gateway, Redis with a password that is down, bad
configurations), then searches every log line and answer for them. The whole run is searched
as well, at its end (``tests/log_capture.py``)."""

from __future__ import annotations

import logging
import secrets as random
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from sandbox.keys import rsa_pair, token
from sandbox.runner import free_port
from service.logs import JsonFormatter, TextFormatter
from service.settings import Settings
from tests.conftest import API_KEY, StartRelay
from tests.log_capture import find_leaks
from tests.relay_process import ROOT


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Any:
    """Every log line written so far in this test, as payrelay writes them (JSON and text, tracebacks)."""
    caplog.set_level(logging.DEBUG)
    formatters = (JsonFormatter(), TextFormatter())
    return lambda: "\n".join(f.format(record) for record in caplog.records for f in formatters)


def order(**changes: Any) -> dict[str, Any]:
    return {"transactionId": f"t-{random.token_hex(6)}", "amount": "10.00", "currency": "CNY",
            "date": "2026-11-21", "paymentGatewayType": "stripe-connect",
            "completePayRedirectUrl": "https://shop.example/done", "cancelPayRedirectUrl": "https://shop.example/c",
            "onlineScenario": True, "customerIdentifier": "buyer@example.com"} | changes


def assert_clean(text: str, *values: str) -> None:
    leaks = find_leaks(text, set(values))
    assert not leaks, f"secrets leaked: {leaks}"


async def test_wrong_keys_at_every_gateway(start_relay: StartRelay, stripe_emulator: Any, alipay_emulator: Any,
                                           wechat_emulator: Any, logged: Any) -> None:
    wrong_stripe = token("sk_test_")
    wrong_whsec = token("whsec_")
    wrong_alipay_key = rsa_pair()[0]
    wrong_apiv3 = random.token_hex(16)
    relay = start_relay(stripe_emulator, alipay_emulator, wechat_emulator,
                        PAYRELAY_STRIPE_SECRET_KEY=wrong_stripe, PAYRELAY_STRIPE_WEBHOOK_SECRET=wrong_whsec,
                        PAYRELAY_ALIPAY_PRIVATE_KEY=wrong_alipay_key, PAYRELAY_WECHAT_APIV3_KEY=wrong_apiv3)
    answers = []
    async with relay.client() as client:
        answers.append(await client.post("/api/transactions", json=order(currency="USD")))  # Stripe: bad key
        alipay = await client.post("/api/transactions", json=order(paymentGatewayType="alipay-page",
                                                                   customerIdentifier=None))
        assert alipay.status_code == 200, alipay.text  # page pay: a URL payrelay signs, no call yet
        with pytest.raises(Exception):  # noqa: B017 - the cashier refuses the badly signed page
            await alipay_emulator.pay(alipay.json()["paymentUrl"])
        answers.append(await client.get(f"/api/transactions/{alipay.json()['paymentId']}?sync=true"))
        wechat = await client.post("/api/transactions", json=order(paymentGatewayType="wechat-pay-native",
                                                                   customerIdentifier=None))
        assert wechat.status_code == 200, wechat.text
        await wechat_emulator.pay(wechat.json()["paymentUrl"])  # its callback cannot be decrypted
        answers.append(await client.get(f"/api/transactions/{wechat.json()['paymentId']}"))
        answers.append(await client.post("/webhooks/stripe", content=b'{"id": "evt_1"}',
                                         headers={"Stripe-Signature": "t=1,v1=00"}))
    async with httpx.AsyncClient(base_url=relay.url) as anon:
        near_key = API_KEY[:-1] + ("x" if API_KEY[-1] != "x" else "y")
        answers.append(await anon.get("/api/transactions?transactionId=x",
                                      headers={"Authorization": f"Bearer {near_key}"}))
    assert answers[0].status_code == 502 and answers[1].status_code == 502, [a.text for a in answers[:2]]
    assert answers[2].json()["status"] == "waiting"  # the undecryptable callback changed nothing
    assert answers[3].status_code == 400 and answers[4].status_code == 401
    everything = "\n".join([logged(), *(a.text for a in answers), *(str(dict(a.headers)) for a in answers)])
    assert "webhook rejected" in everything and "gateway_refused" in everything  # the failures were logged
    configured = {**stripe_emulator.env(), **alipay_emulator.env(), **wechat_emulator.env()}
    assert_clean(everything, wrong_stripe, wrong_whsec, wrong_alipay_key, wrong_apiv3, API_KEY,
                 *(configured[name] for name in ("PAYRELAY_STRIPE_SECRET_KEY", "PAYRELAY_STRIPE_WEBHOOK_SECRET",
                                                 "PAYRELAY_ALIPAY_PRIVATE_KEY", "PAYRELAY_WECHAT_PRIVATE_KEY",
                                                 "PAYRELAY_WECHAT_APIV3_KEY")))


async def test_redis_password_stays_out_of_logs_and_answers(start_relay: StartRelay, stripe_emulator: Any,
                                                            logged: Any) -> None:
    password = token("redis-pass-")
    relay = start_relay(stripe_emulator, PAYRELAY_REDIS_URL=f"redis://:{password}@127.0.0.1:{free_port()}/0")
    async with relay.client() as client:
        created = await client.post("/api/transactions", json=order(currency="USD"))
        lookup = await client.get("/api/transactions/pr_00aaaaaaaaaaaaaaaaaaaaaaaa")
    async with httpx.AsyncClient(base_url=relay.url) as anon:
        ready = await anon.get("/readyz")
    assert created.status_code == lookup.status_code == ready.status_code == 503
    assert created.json()["code"] == "store_unavailable"
    assert_clean("\n".join([logged(), created.text, lookup.text, ready.text]), password)


def test_text_lines_read_as_sentences() -> None:
    """PAYRELAY_LOG_FORMAT=text: local time, the level from warnings up, the payment, the message,
    where the news came from; the same records as the JSON lines."""
    def line(level: int, message: str, *args: Any, **extra: Any) -> str:
        record = logging.LogRecord("payrelay.x", level, __file__, 1, message, args, None)
        record.__dict__.update(extra)
        record.created = time.mktime((2026, 12, 1, 15, 4, 9, 0, 0, -1))
        return TextFormatter().format(record)

    assert line(logging.INFO, "%s %s %s", "POST", "/api/transactions", 200,
                route="/api/transactions", status=200) == "15:04:09 POST /api/transactions 200"
    assert line(logging.INFO, "%s → %s", "waiting", "succeeded", paymentId="pr_3a", gateway="alipay-page",
                outcome="transitioned", source="webhook") == "15:04:09 pr_3a waiting → succeeded (webhook, alipay-page)"
    assert line(logging.WARNING, "webhook rejected: %s", "bad signature", gateway="stripe-connect",
                outcome="rejected") == "15:04:09 WARNING webhook rejected: bad signature (stripe-connect)"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("payrelay.x", logging.ERROR, __file__, 1, "tick failed", (), sys.exc_info())
    text = TextFormatter().format(record).splitlines()
    assert text[0].endswith(" ERROR tick failed")
    assert text[1] == "Traceback (most recent call last):" and text[-1] == "RuntimeError: boom"


def test_reprs_show_no_secret() -> None:
    values = {"PAYRELAY_REDIS_URL": "redis://:" + "p" * 20 + "@redis:6379/0", "PAYRELAY_API_KEYS": "shop:" + "k" * 24,
              "PAYRELAY_STRIPE_SECRET_KEY": token("sk_test_"), "PAYRELAY_STRIPE_WEBHOOK_SECRET": token("whsec_"),
              "PAYRELAY_NOTIFY_SECRET": token("ns_"), "PAYRELAY_CLOUDREVE_KEY": token("cr_")}
    settings = Settings.from_env(values)
    text = repr(settings) + str(settings) + repr(settings.clients) + repr(settings.gateways)
    assert_clean(text, "p" * 20, *(v for k, v in values.items() if k != "PAYRELAY_REDIS_URL"))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_errors_and_check_output(tmp_path: Any) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("PAYRELAY_")}
    apiv3 = "x" * 31 + "yz"  # 33 bytes: refused, and not echoed
    key = token("sk_live_")
    bad = _cli("check", env=base | {"PAYRELAY_API_KEYS": "shop:" + "k" * 24, "PAYRELAY_WECHAT_APIV3_KEY": apiv3,
                                     "PAYRELAY_STRIPE_SECRET_KEY": key})
    malformed = _cli("check", env=base | {"PAYRELAY_API_KEYS": "no-colon-" + "s" * 24})
    password = "q" * 20
    unreachable = _cli("check", env=base | {"PAYRELAY_API_KEYS": "shop:" + "k" * 24, "PAYRELAY_STRIPE_SECRET_KEY": key,
                                             "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 20,
                                             "PAYRELAY_REDIS_URL": f"redis://:{password}@redis:6379/0"})
    assert bad.returncode == malformed.returncode == unreachable.returncode == 1, unreachable.stderr
    output = "\n".join(p.stdout + p.stderr for p in (bad, malformed, unreachable))
    assert "Redis at redis://:***@redis:6379/0 does not answer" in unreachable.stderr
    assert_clean(output, apiv3, key, "k" * 24, "no-colon-" + "s" * 24, "s" * 24, password, "w" * 20)
