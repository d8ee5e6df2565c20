"""The three sandbox emulators, served with no added delay, plus a control API for the harness.

Run as its own process (``python -m bench.gateways PORTS_JSON``) so the load generator and the
harness never share its event loop. The control API seeds gateway-side objects for payments the
harness wrote straight into Redis, signs webhooks with the emulators' own helpers (genuine
signatures, written as raw HTTP requests for wrk to replay), and reports call counters.

Control endpoints (JSON):
  GET  /env                 PAYRELAY_* variables pointing payrelay at the three emulators
  GET  /last/{gateway}      the last create call payrelay made (raw form / JSON body, headers)
  POST /seed/{gateway}      {"items": [[paymentId, amountMinor], …], "template": {...}} → {"refs": […]}
  POST /sign/{gateway}      {"ids": [...], "path": file, "host": "h:p"} → writes length-prefixed requests
  GET  /stats               per gateway: API calls by operation, objects held, objects closed
  POST /reset               forget every gateway-side object and the notification count (between scenarios)
  POST /notify              stands in for the storage app's notification URL (answers 200, counts it)
  GET  /notified            {"count": notifications received, "last": wall-clock time of the last one}
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox import stripe as stripe_sandbox
from sandbox import wechat as wechat_sandbox
from sandbox.alipay import AlipayEmulator
from sandbox.runner import KEEP_ALIVE_SECONDS
from sandbox.stripe import StripeEmulator
from sandbox.wechat import WechatEmulator

CREATE_PATHS = {"/v1/checkout/sessions", "/v3/pay/transactions/native"}
WEBHOOK_PATHS = {"stripe-connect": "/webhooks/stripe", "alipay-page": "/webhooks/alipay",
                 "wechat-pay-native": "/webhooks/wechat"}


class Recorder:
    """ASGI wrapper remembering the last create call (the floor replays the same body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last: dict[str, Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in CREATE_PATHS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        await self.app(scope, recording, send)
        self.last = {"path": scope["path"], "body": b"".join(chunks).decode(),
                     "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}


class Gateways:
    def __init__(self) -> None:
        self.stripe = StripeEmulator()
        self.alipay = AlipayEmulator()
        self.wechat = WechatEmulator()
        self.emulators = {"stripe-connect": self.stripe, "alipay-page": self.alipay, "wechat-pay-native": self.wechat}
        self.recorders = {name: Recorder(emu.app) for name, emu in self.emulators.items()}
        self.notified = 0
        self.last_notified: float | None = None

    def control_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/env", self.env),
            Route("/last/{gateway}", self.last),
            Route("/seed/{gateway}", self.seed, methods=["POST"]),
            Route("/sign/{gateway}", self.sign, methods=["POST"]),
            Route("/stats", self.stats),
            Route("/reset", self.reset, methods=["POST"]),
            Route("/notify", self.notify, methods=["POST"]),
            Route("/notified", self.notifications),
        ])

    async def notify(self, request: Request) -> JSONResponse:
        """The notifications to the storage app (payrelay's and the floor's) land here: counted,
        with the time of the last (a webhook is done once the notification it caused arrived)."""
        await request.body()
        self.notified += 1
        self.last_notified = time.time()
        return JSONResponse({"ok": True})

    async def notifications(self, request: Request) -> JSONResponse:
        return JSONResponse({"count": self.notified, "last": self.last_notified})

    async def env(self, request: Request) -> JSONResponse:
        env: dict[str, str] = {}
        for emu in self.emulators.values():
            env.update(emu.env())
        return JSONResponse(env)

    async def last(self, request: Request) -> JSONResponse:
        return JSONResponse(self.recorders[request.path_params["gateway"]].last)

    async def seed(self, request: Request) -> JSONResponse:
        gateway = request.path_params["gateway"]
        spec = await request.json()
        items: list[list[Any]] = spec["items"]
        refs: list[str | None] = []
        if gateway == "stripe-connect":
            template = self.recorders[gateway].last
            assert template is not None, "create one payment through payrelay first"
            account = template["headers"].get("stripe-account", "")
            pairs = parse_qsl(template["body"], keep_blank_values=True)
            for payment_id, _amount in items:
                own = sorted((k, v.replace(spec["template"], payment_id) if k != "expires_at"
                              else str(int(time.time()) + 3600)) for k, v in pairs)
                call = stripe_sandbox._Call(account, stripe_sandbox.parse_params(own), {})
                session = await self.stripe._create_session(call)
                refs.append(session["id"])
        elif gateway == "alipay-page":
            far = time.time() + 7 * 86400  # the emulator's own timer must not close them first
            with self.alipay._lock:
                for payment_id, amount in items:
                    total = f"{Decimal(amount) / 100:.2f}"
                    trade = self.alipay._new_trade(payment_id, total, spec.get("subject", "bench"),
                                                   {"notify_url": ""}, far)
                    refs.append(trade.trade_no)
        elif gateway == "wechat-pay-native":
            with self.wechat._lock:
                for payment_id, amount in items:
                    body = {"appid": self.wechat.keys.appid, "mchid": self.wechat.keys.mchid,
                            "description": "bench", "out_trade_no": payment_id, "notify_url": "",
                            "amount": {"total": int(amount), "currency": "CNY"}}
                    pr = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
                    self.wechat.orders[payment_id] = wechat_sandbox.Order(payment_id, body, pr=pr, expires_at=None,
                                                                          history=["NOTPAY"])
                    self.wechat._by_pr[pr] = payment_id
                    refs.append(None)
        return JSONResponse({"refs": refs})

    async def sign(self, request: Request) -> JSONResponse:
        """Sign one success webhook per id (each a distinct event) and write them as raw HTTP/1.1
        requests, each preceded by its length on a line of its own (bench/lua/replay.lua reads them)."""
        gateway = request.path_params["gateway"]
        spec = await request.json()
        path = WEBHOOK_PATHS[gateway]
        count = 0
        with open(spec["path"], "ab" if spec.get("append") else "wb") as out:
            for ident in spec["ids"]:
                if gateway == "stripe-connect":
                    body, headers = self.stripe.signed_event(
                        "checkout.session.completed", ident,
                        overrides={"status": "complete", "payment_status": "paid"})
                elif gateway == "alipay-page":
                    body = urlencode(self.alipay.signed_notification(ident, "TRADE_SUCCESS")).encode()
                    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
                else:
                    body, headers = self.wechat.signed_callback(ident, "SUCCESS")
                    headers = {**headers, "Content-Type": "application/json"}
                head = [f"POST {path} HTTP/1.1", f"Host: {spec['host']}", f"Content-Length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
                raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
                out.write(f"{len(raw)}\n".encode() + raw)
                count += 1
        return JSONResponse({"written": count})

    async def stats(self, request: Request) -> JSONResponse:
        closed = {
            "stripe-connect": sum(1 for s in list(self.stripe.sessions.values()) if s["status"] == "expired"),
            "alipay-page": sum(1 for t in list(self.alipay.trades.values()) if t.status == "TRADE_CLOSED"),
            "wechat-pay-native": sum(1 for o in list(self.wechat.orders.values()) if o.trade_state == "CLOSED"),
        }
        held = {"stripe-connect": len(self.stripe.sessions), "alipay-page": len(self.alipay.trades),
                "wechat-pay-native": len(self.wechat.orders)}
        return JSONResponse({name: {"calls": dict(emu.calls), "objects": held[name], "closed": closed[name]}
                             for name, emu in self.emulators.items()})

    async def reset(self, request: Request) -> JSONResponse:
        s = self.stripe
        for table in (s.sessions, s.customers, s.payment_methods, s.payment_intents, s._owner, s._descriptions,
                      s._setup_usage, s._intent_data, s._idempotency):
            table.clear()
        s.events.clear()
        s._outbox.clear()
        with self.alipay._lock:
            self.alipay.trades.clear()
            self.alipay._by_trade_no.clear()
            self.alipay.notifications.clear()
        with self.wechat._lock:
            self.wechat.orders.clear()
            self.wechat._by_pr.clear()
            self.wechat.requests.clear()
        for emu in self.emulators.values():
            emu.calls.clear()
            emu.webhooks_sent.clear()
        self.notified, self.last_notified = 0, None
        return JSONResponse({"ok": True})


async def serve(ports: dict[str, int]) -> None:
    gateways = Gateways()
    servers = []
    for name, emu in gateways.emulators.items():
        emu.bind(f"http://127.0.0.1:{ports[name]}", "")  # no webhooks of their own: the harness sends them
        servers.append((gateways.recorders[name], ports[name]))
    servers.append((gateways.control_app(), ports["control"]))
    await asyncio.gather(*(
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                      lifespan="off", backlog=4096,
                                      timeout_keep_alive=KEEP_ALIVE_SECONDS)).serve()
        for app, port in servers
    ))


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
