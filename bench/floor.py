"""The floor: the least a create can cost on payrelay's server stack.

The same uvicorn (same flags, same worker count), Starlette, redis-py asyncio with hiredis and
httpx as payrelay; per create the same Redis round trips payrelay makes (the harness measures them
with MONITOR and passes the sequence in ``FLOOR_REDIS_CALLS``) and, for ``stripe-connect``, the same
outbound call: one POST of the body payrelay's SDK sent (captured from the emulator) to the Stripe
emulator. No validation, no SDK, no idempotency logic, no logging, no metrics.

Run: ``python -m bench.floor --port P --workers N`` with FLOOR_* variables set (see ``Floor``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.cli import KEEP_ALIVE_SECONDS

EXPIRES_AT = re.compile(r"expires_at=[0-9]+")


class Floor:
    def __init__(self, env: dict[str, str]) -> None:
        self.redis = aioredis.from_url(env["FLOOR_REDIS_URL"], decode_responses=True, socket_timeout=5,
                                       socket_connect_timeout=5, health_check_interval=30)
        self.calls = env.get("FLOOR_REDIS_CALLS", "hset,hgetall,hset,hgetall").split(",")
        self.stripe_url = env.get("FLOOR_STRIPE_URL", "")
        self.stripe_key = env.get("FLOOR_STRIPE_KEY", "")
        self.stripe_body = env.get("FLOOR_STRIPE_BODY", "")
        self.stripe_template = env.get("FLOOR_STRIPE_TEMPLATE_ID", "")
        self.stripe_account = env.get("FLOOR_STRIPE_ACCOUNT", "")
        self.http = httpx.AsyncClient(timeout=30)

    async def create(self, request: Request) -> Response:
        body = json.loads(await request.body())
        payment_id = "pr_" + secrets.token_hex(13)
        key = "floor:" + payment_id
        now = str(int(time.time() * 1000))
        record = {name: str(value) for name, value in body.items()} | {"paymentId": payment_id, "createdAt": now}
        for call in self.calls:
            if call == "hset":
                await self.redis.hset(key, mapping=record)
                record = {"status": "waiting", "updatedAt": now}
            elif call == "hgetall":
                await self.redis.hgetall(key)
            elif call == "get":
                await self.redis.get(key)
            else:
                await self.redis.ping()
        url = "https://pay.example/" + payment_id
        if body.get("paymentGatewayType") == "stripe-connect":
            headers = {"Authorization": "Bearer " + self.stripe_key, "Idempotency-Key": payment_id,
                       "Content-Type": "application/x-www-form-urlencoded"}
            if self.stripe_account:
                headers["Stripe-Account"] = self.stripe_account
            # a fresh expires_at: Stripe wants it 30 min to 24 h ahead of now
            content = EXPIRES_AT.sub(f"expires_at={int(time.time()) + 3600}", self.stripe_body)
            answer = await self.http.post(self.stripe_url + "/v1/checkout/sessions",
                                          content=content.replace(self.stripe_template, payment_id),
                                          headers=headers)
            url = answer.json()["url"]
        return JSONResponse({"paymentUrl": url, "paymentId": payment_id, "expireTime": 1800, "status": "waiting"})


def app_from_env() -> Any:
    floor = Floor(dict(os.environ))
    return Starlette(routes=[Route("/api/transactions", floor.create, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # exactly payrelay's `serve` call (service/cli.py), but for the app
    uvicorn.run("bench.floor:app_from_env", factory=True, host="127.0.0.1", port=args.port, workers=args.workers,
                log_config=None, timeout_graceful_shutdown=20, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                proxy_headers=True,
                forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))


if __name__ == "__main__":
    main()
