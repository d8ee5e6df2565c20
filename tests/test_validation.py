"""service/validation.py: what a create request must be, answered as 400 problems over real HTTP
(payrelay in front of the Stripe emulator, on real Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Relay, StartRelay
from tests.helpers import MISSING, valid


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator)


VALIDATION = [
    ("transactionId", MISSING, "missing_field"),
    ("transactionId", "", "invalid_field"),
    ("transactionId", "has space", "invalid_field"),
    ("transactionId", "x" * 65, "invalid_field"),
    ("transactionId", "naïve", "invalid_field"),
    ("transactionId", 42, "invalid_field"),
    ("amount", MISSING, "missing_field"),
    ("amount", 25.0, "invalid_amount"),
    ("amount", "25.001", "invalid_amount"),
    ("amount", "0", "invalid_amount"),
    ("amount", "0.00", "invalid_amount"),
    ("amount", "-1.00", "invalid_amount"),
    ("amount", "1e3", "invalid_amount"),
    ("amount", " ", "invalid_amount"),
    ("amount", "", "invalid_amount"),
    ("currency", MISSING, "missing_field"),
    ("currency", "usd", "invalid_field"),
    ("currency", "XYZ", "invalid_field"),
    ("date", MISSING, "missing_field"),
    ("date", "21/11/2026", "invalid_field"),
    ("date", "2026-13-01", "invalid_field"),
    ("paymentGatewayType", MISSING, "missing_field"),
    ("paymentGatewayType", "paypal", "invalid_field"),
    ("paymentGatewayType", "alipay-page", "gateway_not_configured"),
    ("completePayRedirectUrl", MISSING, "missing_field"),
    ("completePayRedirectUrl", "/relative", "invalid_field"),
    ("completePayRedirectUrl", "http://shop.example/done", "invalid_field"),  # Stripe: https only
    ("completePayRedirectUrl", "javascript:alert(1)", "invalid_field"),
    ("cancelPayRedirectUrl", MISSING, "missing_field"),
    ("cancelPayRedirectUrl", "ftp://shop.example/x", "invalid_field"),
    ("onlineScenario", MISSING, "missing_field"),
    ("onlineScenario", "true", "invalid_field"),
    ("supportOfflineScenario", "yes", "invalid_field"),
    ("customerIdentifier", "+86 138 0000 0000", "invalid_field"),  # Stripe wants an email
    ("customerIdentifier", "not an email", "invalid_field"),
    ("description", "x" * 1001, "invalid_field"),
    ("description", "bell\x07", "invalid_field"),
    ("notifyUrl", "not a url", "invalid_field"),
    ("unexpected", "x", "unknown_field"),
]


@pytest.mark.parametrize(("field", "value", "code"), VALIDATION)
async def test_validation_table(relay: Relay, stripe_emulator: Any, field: str, value: Any, code: str) -> None:
    async with relay.client() as client:
        answer = await client.post("/api/transactions", json=valid(**{field: value}))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["code"], problem["param"], problem["status"]) == (code, field, 400)
    assert field in problem["detail"] and problem["traceId"] == answer.headers["trace-id"]
    assert stripe_emulator.calls["create"] == 0


async def test_amounts_stripe_cannot_charge_are_refused(relay: Relay, stripe_emulator: Any) -> None:
    async with relay.client() as client:
        refused = await client.post("/api/transactions", json=valid(currency="KWD", amount="1.255"))
        assert refused.status_code == 400, refused.text
        problem = refused.json()
        assert (problem["code"], problem["param"]) == ("invalid_amount", "amount")
        assert "KWD" in problem["detail"] and "0.010" in problem["detail"]
        assert stripe_emulator.calls["create"] == 0
        for currency, amount, stripe_amount in (("KWD", "1.250", 1250), ("ISK", "500", 50000)):
            created = await client.post("/api/transactions", json=valid(currency=currency, amount=amount))
            assert created.status_code == 200, created.text
            payment = (await client.get(f"/api/transactions/{created.json()['paymentId']}")).json()
            assert (payment["amount"], payment["currency"]) == (amount, currency)
            assert stripe_emulator.sessions[payment["gatewayReference"]]["amount_total"] == stripe_amount


async def test_offline_needs_customer(relay: Relay) -> None:
    async with relay.client() as client:
        answer = await client.post("/api/transactions",
                                   json=valid(onlineScenario=False, customerIdentifier=MISSING))
    assert (answer.status_code, answer.json()["param"]) == (400, "customerIdentifier")


async def test_minor_unit_clients(start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, PAYRELAY_AMOUNT_UNIT="minor")
    async with relay.client() as client:
        ok = await client.post("/api/transactions", json=valid(amount=2500))
        bad = await client.post("/api/transactions", json=valid(amount="25.00"))
        pid = ok.json()["paymentId"]
        assert (await client.get(f"/api/transactions/{pid}")).json()["amount"] == "2500"
    assert bad.status_code == 400 and bad.json()["param"] == "amount"


async def test_redirect_host_allow_list(start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, PAYRELAY_REDIRECT_HOSTS="shop.example")
    async with relay.client() as client:
        ok = await client.post("/api/transactions", json=valid())
        bad = await client.post("/api/transactions", json=valid(cancelPayRedirectUrl="https://evil.example/x"))
        bad_notify = await client.post("/api/transactions", json=valid(notifyUrl="https://evil.example/hook"))
    assert ok.status_code == 200
    assert (bad.status_code, bad.json()["code"]) == (400, "host_not_allowed")
    assert bad_notify.json()["param"] == "notifyUrl"
