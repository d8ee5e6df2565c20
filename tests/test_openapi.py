"""GET /openapi.json: a valid OpenAPI 3.1 document that describes exactly the routes the app
serves, and whose schemas real answers (over real HTTP, real Redis, the emulators) satisfy."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from service.openapi import document
from service.settings import Settings
from tests.conftest import Relay, StartRelay

# Route templates that stand for several documented paths.
EXPANSIONS = {
    "{gateway}": ["stripe", "alipay", "wechat"],
    "qrcode.{format}": ["qrcode.svg", "qrcode.png"],
}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def served_operations(app: Any) -> set[tuple[str, str]]:
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route), route
        paths = [route.path]
        for template, values in EXPANSIONS.items():
            paths = [p.replace(template, v) for p in paths for v in values] if any(
                template in p for p in paths) else paths
        for method in route.methods or {"GET"}:
            if method != "HEAD":  # Starlette answers HEAD for every GET
                operations.update((method.lower(), path) for path in paths)
    return operations


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


class Checker:
    """Validates real answers against the document's response schemas."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, method: str, path: str, answer: httpx.Response) -> Any:
        operation = self.doc["paths"][path][method]
        status = str(answer.status_code)
        assert status in operation["responses"], f"{method} {path} answered undocumented {status}: {answer.text}"
        response = operation["responses"][status]
        if "$ref" in response:
            response = self.doc["components"]["responses"][response["$ref"].rpartition("/")[2]]
        assert answer.headers.get("trace-id"), "every answer carries trace-id"
        content = response.get("content")
        if not content:
            assert not answer.content
            return None
        media_type = answer.headers["content-type"].split(";")[0].strip()
        assert media_type in content or "*/*" in content, (media_type, list(content))
        schema = content[media_type]["schema"]
        self.seen.add((method, path, status))
        if media_type.startswith("image/") or media_type == "text/plain":
            return answer.content
        body = answer.json()
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
                "components": self.doc["components"]}
        errors = sorted(Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
                        .iter_errors(body), key=str)
        assert not errors, f"{method} {path} {status}: {[e.message for e in errors]}\n{body}"
        return body


def test_document_is_valid_openapi_3_1() -> None:
    for unit in ("major", "minor"):
        settings = Settings.from_env({"PAYRELAY_API_KEYS": "a:b", "PAYRELAY_STRIPE_SECRET_KEY": "sk_test_x",
                                      "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_x", "PAYRELAY_AMOUNT_UNIT": unit})
        doc = document(settings)
        validate(doc)
        assert doc["openapi"] == "3.1.0"
        request = doc["components"]["schemas"]["TransactionRequest"]
        assert request["additionalProperties"] is False
        Draft202012Validator.check_schema(request)
    assert "oneOf" in request["properties"]["amount"]  # minor: integers


async def test_every_route_is_documented_and_every_path_served(relay: Relay) -> None:
    async with httpx.AsyncClient(base_url=relay.url) as client:
        answer = await client.get("/openapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    doc = answer.json()
    validate(doc)
    served, documented = served_operations(relay.app), documented_operations(doc)
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    for path, item in doc["paths"].items():
        for method in HTTP_METHODS & set(item):
            responses = item[method]["responses"]
            assert responses and all(r.get("headers", {}).get("trace-id") for r in responses.values()), path


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any, wechat_emulator: Any) -> Relay:
    return start_relay(stripe_emulator, wechat_emulator)


def order(**changes: Any) -> dict[str, Any]:
    body = {"transactionId": f"order-{uuid.uuid4().hex[:12]}", "amount": "25.00", "currency": "USD",
            "date": "2026-11-21", "paymentGatewayType": "stripe-connect",
            "completePayRedirectUrl": "https://shop.example/done", "cancelPayRedirectUrl": "https://shop.example/c",
            "onlineScenario": True, "customerIdentifier": "buyer@example.com", "description": "10 GB"}
    return body | changes


async def test_real_answers_match_their_schemas(relay: Relay, stripe_emulator: Any, wechat_emulator: Any) -> None:
    async with httpx.AsyncClient(base_url=relay.url) as anon:
        doc = (await anon.get("/openapi.json")).json()
    c = Checker(doc)
    pid_path = "/api/transactions/{paymentId}"
    async with relay.client() as client, httpx.AsyncClient(base_url=relay.url, timeout=30) as anon:
        body = order()
        created = c.check("post", "/api/transactions", await client.post("/api/transactions", json=body))
        pid = created["paymentId"]
        c.check("post", "/api/transactions", await client.post("/api/transactions", json=body))  # replay
        c.check("post", "/api/transactions",
                await client.post("/api/transactions", json=body | {"amount": "26.00"}))  # 409
        c.check("post", "/api/transactions",
                await client.post("/api/transactions", json=order(currency="usd")))  # 400 with param
        c.check("post", "/api/transactions", await client.post("/api/transactions", content=b"<a/>",
                                                              headers={"content-type": "text/xml"}))  # 415
        c.check("post", "/api/transactions", await anon.post("/api/transactions", json=body))  # 401
        c.check("get", pid_path, await client.get(f"/api/transactions/{pid}"))
        c.check("get", pid_path, await client.get(f"/api/transactions/{pid}", params={"sync": "true"}))
        c.check("get", pid_path, await client.get(f"/api/transactions/{pid}", params={"sync": "maybe"}))  # 400
        c.check("get", pid_path, await client.get("/api/transactions/pr_00aaaaaaaaaaaaaaaaaaaaaaaa"))  # 404
        c.check("get", "/api/transactions",
                await client.get("/api/transactions", params={"transactionId": body["transactionId"]}))
        c.check("get", "/api/transactions", await client.get("/api/transactions"))  # a page
        c.check("get", "/api/transactions", await client.get("/api/transactions", params={"page_size": "5"}))  # 400
        await stripe_emulator.pay(created["paymentUrl"])
        paid = c.check("get", pid_path, await client.get(f"/api/transactions/{pid}"))
        assert paid["status"] == "succeeded" and paid["paidAt"]
        c.check("post", "/api/transactions/{paymentId}/close",
                await client.post(f"/api/transactions/{pid}/close"))  # 409 payment_succeeded
        other = c.check("post", "/api/transactions", await client.post("/api/transactions", json=order()))
        closed = c.check("post", "/api/transactions/{paymentId}/close",
                         await client.post(f"/api/transactions/{other['paymentId']}/close"))
        assert closed["status"] == "closed"
        refunds = "/api/transactions/{paymentId}/refunds"
        c.check("post", refunds, await client.post(f"/api/transactions/{other['paymentId']}/refunds",
                                                   json={"refundId": "r1"}))  # 409: a closed payment
        c.check("post", refunds, await client.post(f"/api/transactions/{pid}/refunds", json={"amount": "1"}))  # 400
        c.check("get", refunds + "/{refundId}", await client.get(f"/api/transactions/{pid}/refunds/r1"))  # 404
        made = c.check("post", refunds, await client.post(f"/api/transactions/{pid}/refunds",
                                                          json={"refundId": "r1", "amount": "5.00"}))
        assert made["status"] == "succeeded"
        c.check("post", refunds, await client.post(f"/api/transactions/{pid}/refunds",
                                                   json={"refundId": "r2", "amount": "25.00"}))  # 409: 20.00 left
        c.check("get", refunds, await client.get(f"/api/transactions/{pid}/refunds"))
        c.check("get", refunds + "/{refundId}", await client.get(f"/api/transactions/{pid}/refunds/r1",
                                                                 params={"sync": "true"}))
        c.check("get", pid_path, await client.get(f"/api/transactions/{pid}"))  # refundedAmount 5.00
        events = "/api/transactions/{paymentId}/events"
        c.check("get", events, await client.get(f"/api/transactions/{pid}/events"))
        c.check("get", events, await client.get("/api/transactions/pr_00aaaaaaaaaaaaaaaaaaaaaaaa/events"))  # 404
        deliveries = "/api/transactions/{paymentId}/deliveries"
        c.check("get", deliveries, await client.get(f"/api/transactions/{pid}/deliveries"))
        c.check("get", deliveries, await client.get("/api/transactions/pr_00aaaaaaaaaaaaaaaaaaaaaaaa/deliveries"))
        retry = "/api/transactions/{paymentId}/deliveries/{deliveryId}/retry"
        c.check("post", retry, await client.post(f"/api/transactions/{pid}/deliveries/dlv_nope/retry"))  # 404
        # WeChat: a code URL and its QR codes; a Stripe payment has none (404)
        wechat = c.check("post", "/api/transactions", await client.post("/api/transactions", json=order(
            currency="CNY", paymentGatewayType="wechat-pay-native", customerIdentifier=None)))
        assert wechat["paymentUrl"].startswith("weixin://")
        for ext in ("svg", "png"):
            qr = f"/api/transactions/{{paymentId}}/qrcode.{ext}"
            assert c.check("get", qr, await client.get(f"/api/transactions/{wechat['paymentId']}/qrcode.{ext}"))
            c.check("get", qr, await client.get(f"/api/transactions/{pid}/qrcode.{ext}"))  # 404
        # webhooks in their gateways' formats, the bridge, health
        c.check("post", "/webhooks/stripe", await anon.post("/webhooks/stripe", content=b"{}"))  # 400
        c.check("post", "/webhooks/wechat", await anon.post("/webhooks/wechat", content=b"{}"))  # 400
        c.check("post", "/webhooks/alipay", await anon.post("/webhooks/alipay", content=b"a=b"))  # 404: not on
        c.check("post", "/cloudreve/{paymentGatewayType}",
                await anon.post("/cloudreve/stripe-connect", json={}))  # bridge off: code 40301
        c.check("get", "/cloudreve/{paymentGatewayType}",
                await anon.get("/cloudreve/stripe-connect", params={"order_no": "x", "sign": "y"}))
        c.check("get", "/healthz", await anon.get("/healthz"))
        c.check("get", "/readyz", await anon.get("/readyz"))
        c.check("get", "/metrics", await anon.get("/metrics"))
        c.check("get", "/openapi.json", await anon.get("/openapi.json"))
    statuses = {status for _, _, status in c.seen}
    assert {"200", "400", "401", "404", "409", "415"} <= statuses, statuses
    assert {(method, path) for method, path, _ in c.seen} == documented_operations(doc)  # each one answered


async def test_minor_unit_document(start_relay: StartRelay, stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, PAYRELAY_AMOUNT_UNIT="minor")
    async with relay.client() as client:
        doc = (await client.get("/openapi.json")).json()
        created = await client.post("/api/transactions", json=order(amount=2500))
        got = await client.get(f"/api/transactions/{created.json()['paymentId']}")
    c = Checker(doc)
    c.check("post", "/api/transactions", created)
    assert c.check("get", "/api/transactions/{paymentId}", got)["amount"] == "2500"
