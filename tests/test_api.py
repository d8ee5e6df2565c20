"""The storage app's API over real HTTP, on real Redis, in front of the Stripe emulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, Relay, StartRelay
from tests.helpers import valid


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator)


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


async def test_the_listing_pages_through_a_clients_own_payments(relay: Relay) -> None:
    async with relay.client() as client:
        mine = [(await client.post("/api/transactions", json=valid())).json()["paymentId"] for _ in range(12)]
        first = (await client.get("/api/transactions", params={"page_size": "10"})).json()
        assert first["pagination"]["page_size"] == 10 and first["pagination"]["is_cursor"] is True
        rest = (await client.get("/api/transactions", params={
            "page_size": "10", "next_page_token": first["pagination"]["next_token"]})).json()
        assert rest["pagination"]["next_token"] == ""
        listed = [p["paymentId"] for p in first["payments"] + rest["payments"]]
        assert listed == mine[::-1]  # newest first
        assert first["payments"][0] == (await client.get(f"/api/transactions/{mine[-1]}")).json() | {
            "expireTime": first["payments"][0]["expireTime"]}
        oldest = (await client.get("/api/transactions", params={"order_direction": "asc", "status": "waiting",
                                                                "paymentGatewayType": "stripe-connect"})).json()
        assert [p["paymentId"] for p in oldest["payments"]] == mine
    async with relay.client(f"other_key_{'o' * 24}") as other:
        theirs = (await other.get("/api/transactions")).json()
        assert theirs == {"payments": [], "pagination": {"page_size": 50, "next_token": "", "is_cursor": True}}
        assert (await other.get(f"/api/transactions/{mine[0]}/events")).status_code == 404


@pytest.mark.parametrize(("params", "param"), [
    ({"page_size": "9"}, "page_size"), ({"page_size": "101"}, "page_size"), ({"page_size": "ten"}, "page_size"),
    ({"order_direction": "up"}, "order_direction"), ({"status": "creating"}, "status"),
    ({"paymentGatewayType": "paypal"}, "paymentGatewayType"), ({"flag": "odd"}, "flag"),
    ({"createdFrom": "2026-12-01"}, "createdFrom"), ({"createdTo": "yesterday"}, "createdTo"),
    ({"createdFrom": "2026-12-02T00:00:00Z", "createdTo": "2026-12-01T00:00:00Z"}, "createdTo"),
    ({"next_page_token": "garbage"}, "next_page_token"), ({"limit": "10"}, "limit"),
    ({"transactionId": ""}, "transactionId"),
])
async def test_bad_listing_parameters_are_refused(relay: Relay, params: dict[str, str], param: str) -> None:
    async with relay.client() as client:
        answer = await client.get("/api/transactions", params=params)
    assert answer.status_code == 400 and answer.json()["param"] == param, answer.text


async def test_a_payments_timeline(relay: Relay) -> None:
    async with relay.client() as client:
        pid = (await client.post("/api/transactions", json=valid())).json()["paymentId"]
        assert (await client.post(f"/api/transactions/{pid}/close")).status_code == 200
        timeline = (await client.get(f"/api/transactions/{pid}/events")).json()
    assert timeline["paymentId"] == pid
    kinds = [(event["type"], event.get("to")) for event in timeline["data"]]
    assert kinds == [("created", None), ("opened", None), ("transition", "closed")]
    closed = timeline["data"][-1]
    assert closed["source"] == "close" and closed["from"] == "waiting" and closed["at"].endswith("Z")


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


async def test_embedded_store(start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, embedded=True)
    async with relay.client() as client:
        created = (await client.post("/api/transactions", json=valid())).json()
        url = await stripe_emulator.pay(created["paymentUrl"])
        assert url.startswith("https://shop.example/done")
        got = (await client.get(f"/api/transactions/{created['paymentId']}")).json()
    assert got["status"] == "succeeded"


