"""A payment's notifications, for the client that owns it: list them, re-send one.

``GET  /api/transactions/{paymentId}/deliveries`` → ``{"paymentId", "data": [delivery…]}``, oldest
first; ``POST /api/transactions/{paymentId}/deliveries/{deliveryId}/retry`` makes a dead or pending
delivery due now, with a fresh 24 h retry window (a delivered one → 409).
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError, WatchError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service import errors, keys
from service.api import ApiKeys
from service.outbox import event_id
from service.payments import Payments, now_ms
from service.settings import Settings
from service.store import Record, StoreUnavailable
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
    def __init__(self, settings: Settings, payments: Payments) -> None:
        self.payments = payments
        self.redis = payments.store.redis
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
        bucket = keys.bucket_of(record["paymentId"])
        assert bucket is not None
        try:
            ids = await self.redis.lrange(keys.deliveries(bucket, record["paymentId"]), 0, -1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hgetall(keys.delivery(bucket, id_))
                found = await pipe.execute() if ids else []
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from exc
        return JSONResponse({"paymentId": record["paymentId"],
                             "data": [delivery_view(d) for d in found if d]})

    async def retry(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        record = await self.payments.get(client, request.path_params["paymentId"])
        payment_id, delivery_id = record["paymentId"], request.path_params["deliveryId"]
        bucket = keys.bucket_of(payment_id)
        assert bucket is not None
        key, outbox = keys.delivery(bucket, delivery_id), keys.outbox(bucket)

        async def resend(pipe: Any) -> None:
            delivery = await pipe.hgetall(key)
            if not delivery or delivery.get("paymentId") != payment_id:
                raise errors.NotFound("delivery_not_found", f"payment {payment_id} has no delivery "
                               f"{delivery_id!r}", "deliveryId")
            state = delivery.get("state")
            if state == "delivered":
                raise errors.Conflict("delivery_delivered", "the notification was delivered already")
            now = now_ms()
            score = await pipe.zscore(outbox, delivery_id)
            if delivery.get("claim") and score is not None and score > now:
                raise errors.Conflict("delivery_in_flight",
                               "the notification is being sent right now; look again shortly")
            pipe.multi()
            pipe.hset(key, mapping={"state": "pending", "nextAt": now, "windowStart": now,
                                    "windowAttempts": 0})
            pipe.zadd(outbox, {delivery_id: now})
            pipe.zrem(keys.dead(bucket), delivery_id)

        try:
            await self.redis.transaction(resend, key, outbox)
            delivery = await self.redis.hgetall(key)
        except WatchError as exc:
            raise errors.Conflict("delivery_in_flight",
                           "the notification changed while re-sending it; try again") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from exc
        return JSONResponse(delivery_view(delivery))
