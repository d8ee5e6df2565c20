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
from service.clock import now_ms
from service.delivery_store import DeliveryStore
from service.model import Delivery, DeliveryState
from service.outbox import event_id
from service.payments import Payments
from service.settings import Settings
from service.views import iso


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.delivery_id,
        "eventId": event_id(delivery.delivery_id),
        "type": delivery.type,
        "version": delivery.version,
        "state": delivery.state.value,
        "attempts": delivery.attempts,
        "createdAt": iso(delivery.created_at),
        "lastAttemptAt": iso(delivery.last_attempt_at),
        "nextAt": iso(delivery.next_at) if delivery.state is DeliveryState.PENDING else None,
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "url": delivery.url,
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
        payment = await self.payments.get(client, request.path_params["paymentId"])
        payment_id = payment.payment_id
        found = await self.deliveries.of_payment(_bucket(payment_id), payment_id)
        return JSONResponse({"paymentId": payment_id, "data": [delivery_view(d) for d in found]})

    async def retry(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        payment = await self.payments.get(client, request.path_params["paymentId"])
        payment_id = payment.payment_id
        delivery = await self.deliveries.resend(_bucket(payment_id), payment_id, request.path_params["deliveryId"],
                                                now_ms())
        await self.payments.timeline.record(payment_id, "resend", deliveryId=delivery.delivery_id, by="api")
        return JSONResponse(delivery_view(delivery))


def _bucket(payment_id: str) -> int:
    bucket = keys.bucket_of(payment_id)
    assert bucket is not None  # the payment was found by this id
    return bucket
