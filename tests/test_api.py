"""The storage app's API over real HTTP, on real Redis, in front of the Stripe emulator."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, Relay, StartRelay


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transactionId": f"order-{uuid.uuid4().hex[:12]}",
        "amount": "25.00",
        "currency": "USD",
        "date": "2026-11-21",
        "paymentGatewayType": "stripe-connect",
        "completePayRedirectUrl": "https://shop.example/done",
        "cancelPayRedirectUrl": "https://shop.example/cancel",
        "onlineScenario": True,
        "customerIdentifier": "buyer@example.com",
        "description": "10 GB storage pack",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator)


MISSING = ...
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


async def test_bad_bodies(relay: Relay) -> None:
    async with relay.client() as client:
        not_json = await client.post("/api/transactions", content=b"{nope",
                                     headers={"content-type": "application/json"})
        not_object = await client.post("/api/transactions", json=[1, 2])
        xml = await client.post("/api/transactions", content=b"<a/>", headers={"content-type": "text/xml"})
    assert (not_json.status_code, not_json.json()["code"]) == (400, "invalid_json")
    assert (not_object.status_code, not_object.json()["code"]) == (400, "invalid_body")
    assert xml.status_code == 415


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic " + API_KEY, "Bearer", "bearer  x"])
async def test_api_key_required(relay: Relay, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with httpx.AsyncClient(base_url=relay.url) as client:
        answer = await client.post("/api/transactions", json=valid(), headers=headers)
        lookup = await client.get("/api/transactions/pr_00aaaaaaaaaaaaaaaaaaaaaaaa", headers=headers)
    assert answer.status_code == lookup.status_code == 401
    assert answer.json()["code"] == "unauthorized"


async def test_create_get_and_find(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    async with relay.client() as client:
        created = await client.post("/api/transactions", json=body, headers={"trace-id": "abc-123"})
        assert created.status_code == 200, created.text
        assert created.headers["trace-id"] == "abc-123"
        answer = created.json()
        assert set(answer) == {"paymentUrl", "paymentId", "expireTime", "status"}
        assert answer["status"] == "waiting" and 1790 <= answer["expireTime"] <= 1800
        assert answer["paymentUrl"].startswith(stripe_emulator.base_url)
        got = (await client.get(f"/api/transactions/{answer['paymentId']}")).json()
        found = (await client.get("/api/transactions", params={"transactionId": body["transactionId"]})).json()
    assert got == found | {"expireTime": got["expireTime"]}
    assert got["amount"] == "25.00" and got["currency"] == "USD" and got["gatewayReference"].startswith("cs_")
    assert got["transactionId"] == body["transactionId"] and got["date"] == "2026-11-21"
    assert got["latePayment"] is False and got["integrityError"] is False and got["paidAt"] is None


async def test_idempotent_replay_conflict_and_renewal(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    async with relay.client() as client:
        first = (await client.post("/api/transactions", json=body)).json()
        again = (await client.post("/api/transactions", json=body)).json()
        changed = await client.post("/api/transactions", json=body | {"amount": "26.00"})
        assert again["paymentId"] == first["paymentId"] and again["paymentUrl"] == first["paymentUrl"]
        assert changed.status_code == 409 and changed.json()["code"] == "transaction_conflict"
        closed = await client.post(f"/api/transactions/{first['paymentId']}/close")
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        renewed = (await client.post("/api/transactions", json=body)).json()
        latest = (await client.get("/api/transactions", params={"transactionId": body["transactionId"]})).json()
    assert renewed["paymentId"] != first["paymentId"] and renewed["status"] == "waiting"
    assert latest["paymentId"] == renewed["paymentId"]
    assert stripe_emulator.calls["create"] == 2


async def test_concurrent_duplicates_open_one_session(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    async with relay.client() as client:
        answers = await asyncio.gather(*(client.post("/api/transactions", json=body) for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert len({(a.json()["paymentId"], a.json()["paymentUrl"]) for a in answers}) == 1
    assert stripe_emulator.calls["create"] == 1


async def test_other_clients_payments_are_invisible(relay: Relay) -> None:
    body = valid()
    async with relay.client() as client:
        pid = (await client.post("/api/transactions", json=body)).json()["paymentId"]
    async with relay.client(f"other_key_{'o' * 24}") as other:
        assert (await other.get(f"/api/transactions/{pid}")).status_code == 404
        assert (await other.post(f"/api/transactions/{pid}/close")).status_code == 404
        found = await other.get("/api/transactions", params={"transactionId": body["transactionId"]})
        assert found.status_code == 404
        # the same transactionId is another client's own business
        mine = await other.post("/api/transactions", json=body)
        assert mine.status_code == 200 and mine.json()["paymentId"] != pid


async def test_unknown_payment_and_bad_ids(relay: Relay) -> None:
    async with relay.client() as client:
        for pid in ("pr_00aaaaaaaaaaaaaaaaaaaaaaaa", "nonsense", "pr_zz" + "a" * 24):
            answer = await client.get(f"/api/transactions/{pid}")
            assert answer.status_code == 404 and answer.json()["code"] == "payment_not_found"
        bad_flag = await client.get("/api/transactions/pr_00aaaaaaaaaaaaaaaaaaaaaaaa", params={"sync": "maybe"})
        assert bad_flag.status_code == 400


async def test_health(relay: Relay) -> None:
    async with httpx.AsyncClient(base_url=relay.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] is True
        assert "payrelay_http_requests_total" in (await client.get("/metrics")).text


async def test_gateway_outage_is_503_and_retry_reuses_the_payment(relay: Relay, stripe_emulator: Any) -> None:
    body = valid()
    stripe_emulator.down = True
    async with relay.client() as client:
        failed = await client.post("/api/transactions", json=body)
        assert failed.status_code == 503 and failed.json()["code"] == "gateway_unavailable"
        stripe_emulator.down = False
        retried = await client.post("/api/transactions", json=body)
    assert retried.status_code == 200 and retried.json()["status"] == "waiting"


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


async def test_embedded_store(start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, embedded=True)
    async with relay.client() as client:
        created = (await client.post("/api/transactions", json=valid())).json()
        url = await stripe_emulator.pay(created["paymentUrl"])
        assert url.startswith("https://shop.example/done")
        got = (await client.get(f"/api/transactions/{created['paymentId']}")).json()
    assert got["status"] == "succeeded"


async def test_saved_method_then_off_session_charges(relay: Relay, stripe_emulator: Any) -> None:
    async with relay.client() as client:
        first = (await client.post("/api/transactions", json=valid(supportOfflineScenario=True))).json()
        await stripe_emulator.pay(first["paymentUrl"])
        assert (await client.get(f"/api/transactions/{first['paymentId']}")).json()["status"] == "succeeded"

        renewal = await client.post("/api/transactions", json=valid(onlineScenario=False))
        assert renewal.status_code == 200, renewal.text
        charged = renewal.json()
        assert (charged["status"], charged["paymentUrl"]) == ("succeeded", None)
        got = (await client.get(f"/api/transactions/{charged['paymentId']}")).json()
        assert got["gatewayReference"].startswith("pi_") and got["version"] == 1

        stripe_emulator.off_session_decline = "insufficient_funds"
        declined = (await client.post("/api/transactions", json=valid(onlineScenario=False))).json()
        assert declined["status"] == "failed"
        got = (await client.get(f"/api/transactions/{declined['paymentId']}")).json()
        assert got["failureReason"] and "insufficient_funds" in got["failureReason"]

        unknown = await client.post("/api/transactions",
                                    json=valid(onlineScenario=False, customerIdentifier="nobody@example.com"))
    assert unknown.status_code == 502 and unknown.json()["param"] == "customerIdentifier"
