"""A payment's notifications, for the client that owns it: list them, re-send one.

``GET  /api/transactions/{paymentId}/deliveries`` → ``{"paymentId", "data": [delivery…]}``, oldest
first; ``POST /api/transactions/{paymentId}/deliveries/{deliveryId}/retry`` makes a dead or pending
delivery due now, with a fresh 24 h retry window (a delivered one → 409).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service import keys
from service.api import ApiKeys
from service.delivery_store import DeliveryStore
from service.outbox import event_id
from service.payments import Payments, now_ms
from service.settings import Settings
from service.store import Record
from service.views import iso


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def delivery_view(delivery: Record) -> dict[str, Any]:
    return {
        "id": delivery["id"],
        "eventId": event_id(delivery["id"]),
        "type": delivery.get("type"),
        "version": _int(delivery.get("version")),
        "state": delivery.get("state"),
        "attempts": int(delivery.get("attempts") or 0),
        "createdAt": iso(delivery.get("createdAt")),
        "lastAttemptAt": iso(delivery.get("lastAttemptAt")),
        "nextAt": iso(delivery.get("nextAt")) if delivery.get("state") == "pending" else None,
        "lastStatusCode": _int(delivery.get("lastStatusCode")),
        "lastError": delivery.get("lastError") or None,
        "url": delivery.get("url"),
    }


class DeliveriesApi:
    def __init__(self, settings: Settings, payments: Payments, deliveries: DeliveryStore) -> None:
        self.payments = payments
        self.deliveries = deliveries
        self.keys = ApiKeys(settings.clients)

    def routes(self) -> list[Route]:
        return [
            Route("/api/transactions/{paymentId}/deliveries", self.index, methods=["GET"]),
            Route("/api/transactions/{paymentId}/deliveries/{deliveryId}/retry", self.retry,
                  methods=["POST"]),
        ]

    async def index(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        record = await self.payments.get(client, request.path_params["paymentId"])
        payment_id = record["paymentId"]
        found = await self.deliveries.of_payment(_bucket(payment_id), payment_id)
        return JSONResponse({"paymentId": payment_id, "data": [delivery_view(d) for d in found]})

    async def retry(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        record = await self.payments.get(client, request.path_params["paymentId"])
        payment_id = record["paymentId"]
        delivery = await self.deliveries.resend(_bucket(payment_id), payment_id, request.path_params["deliveryId"],
                                                now_ms())
        return JSONResponse(delivery_view(delivery))


def _bucket(payment_id: str) -> int:
    bucket = keys.bucket_of(payment_id)
    assert bucket is not None  # the payment was found by this id
    return bucket
