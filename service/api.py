"""The storage app's API: /api/transactions…, behind Bearer API keys."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters import wire
from adapters.wechat import qr
from service import errors
from service.clock import now_ms
from service.model import Payment
from service.payments import Payments
from service.settings import Client, Settings
from service.states import OPEN, PaymentState
from service.timeline import event_view
from service.validation import parse_list_query, parse_transaction
from service.views import created_view, payment_view, refund_view


class ApiKeys:
    """Bearer keys → clients; every presented key is compared with every key in constant time."""

    def __init__(self, clients: tuple[Client, ...]) -> None:
        self._digests = [
            (hashlib.sha256(key.reveal().encode()).digest(), client)
            for client in clients for key in client.keys
        ]

    def client_for(self, request: Request) -> Client:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthorized("unauthorized", "send the API key as 'Authorization: Bearer <key>'")
        presented = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for digest, client in self._digests:
            if hmac.compare_digest(digest, presented):
                found = client
        if found is None:
            raise errors.Unauthorized("unauthorized", "the API key is not valid")
        return found


def parse_json(body: bytes) -> Any:
    """The body as JSON, or a 400 ``invalid_json`` (also for NaN, Infinity, integers past Python's
    digit limit and nesting too deep to parse: ``adapters.wire``)."""
    try:
        return wire.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise errors.InvalidRequest("invalid_json", "the body is not valid JSON") from None


async def read_json(request: Request) -> Any:
    body = await request.body()  # at most its limit (service.body_limit)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise errors.UnsupportedMediaType("unsupported_media_type", "send the body as application/json")
    return parse_json(body)


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise errors.InvalidRequest("invalid_query", f"{name} must be true or false", name)
    return value in ("true", "1")


class TransactionsApi:
    def __init__(self, settings: Settings, payments: Payments) -> None:
        self.settings = settings
        self.payments = payments
        self.keys = ApiKeys(settings.clients)

    def routes(self) -> list[Route]:
        return [
            Route("/api/transactions", self.create, methods=["POST"]),
            Route("/api/transactions", self.find, methods=["GET"]),
            Route("/api/transactions/{paymentId}", self.get, methods=["GET"]),
            Route("/api/transactions/{paymentId}/close", self.close, methods=["POST"]),
            Route("/api/transactions/{paymentId}/events", self.events, methods=["GET"]),
            Route("/api/transactions/{paymentId}/qrcode.{format}", self.qrcode, methods=["GET"]),
            Route("/api/transactions/{paymentId}/refunds", self.refund, methods=["POST"]),
            Route("/api/transactions/{paymentId}/refunds", self.refunds, methods=["GET"]),
            Route("/api/transactions/{paymentId}/refunds/{refundId}", self.get_refund, methods=["GET"]),
        ]

    def view(self, payment: Payment) -> JSONResponse:
        return JSONResponse(payment_view(self.payments.urls.shown(payment), now_ms(), self.settings.amount_unit))

    async def create(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        transaction = parse_transaction(
            await read_json(request), self.payments.adapters,
            amount_unit=self.settings.amount_unit, allowed_hosts=self.settings.redirect_hosts,
        )
        payment = await self.payments.create(client, transaction)
        return JSONResponse(created_view(self.payments.urls.shown(payment), now_ms()))

    async def get(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        sync = _flag(request, "sync")
        payment = await self.payments.get(client, request.path_params["paymentId"])
        if sync:
            payment = await self.payments.sync(payment)
        return self.view(payment)

    async def find(self, request: Request) -> Response:
        """With ``transactionId``: its latest payment; without: the client's payments, a page."""
        client = self.keys.client_for(request)
        if "transactionId" not in request.query_params:
            return await self.index(request, client)
        transaction_id = request.query_params["transactionId"]
        if not transaction_id:
            raise errors.InvalidRequest("missing_field", "transactionId is required", "transactionId")
        return self.view(await self.payments.find(client, transaction_id))

    async def index(self, request: Request, client: Client) -> Response:
        query = parse_list_query(request.query_params, client.name, self.payments.adapters)
        page = await self.payments.listing.page(query)
        now, unit, shown = now_ms(), self.settings.amount_unit, self.payments.urls.shown
        return JSONResponse({"payments": [payment_view(shown(payment), now, unit) for payment in page.payments],
                             "pagination": {"page_size": query.page_size, "next_token": page.next_token,
                                            "is_cursor": True}})

    async def events(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        payment = await self.payments.get(client, request.path_params["paymentId"])
        found = await self.payments.timeline.of_payment(payment.payment_id)
        return JSONResponse({"paymentId": payment.payment_id, "data": [event_view(event) for event in found]})

    async def close(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        payment = await self.payments.get(client, request.path_params["paymentId"])
        status = payment.status
        if status == PaymentState.CREATING or status in OPEN:
            payment = await self.payments.close(payment)
            status = payment.status
        if status != PaymentState.CLOSED:
            raise errors.Conflict(f"payment_{status}", f"the payment is {status} and cannot be closed")
        return self.view(payment)

    async def refund(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        refund = await self.payments.refunds.create(client, request.path_params["paymentId"],
                                                    await read_json(request))
        return JSONResponse(refund_view(refund, self.settings.amount_unit))

    async def refunds(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        payment_id = request.path_params["paymentId"]
        found = await self.payments.refunds.of_payment(client, payment_id)
        return JSONResponse({"paymentId": payment_id,
                             "data": [refund_view(refund, self.settings.amount_unit) for refund in found]})

    async def get_refund(self, request: Request) -> Response:
        client = self.keys.client_for(request)
        refund = await self.payments.refunds.get(client, request.path_params["paymentId"],
                                                 request.path_params["refundId"])
        if _flag(request, "sync"):
            refund = await self.payments.refunds.sync(refund)
        return JSONResponse(refund_view(refund, self.settings.amount_unit))

    async def qrcode(self, request: Request) -> Response:
        """WeChat Native's code URL as a ready-made QR code (SVG or PNG)."""
        client = self.keys.client_for(request)
        payment = await self.payments.get(client, request.path_params["paymentId"])
        render = {"svg": (qr.svg, "image/svg+xml"), "png": (qr.png, "image/png")}.get(
            request.path_params["format"])
        if render is None:
            raise errors.NotFound("not_found", "QR codes come as qrcode.svg or qrcode.png")
        adapter = self.payments.adapters.get(payment.gateway)
        if adapter is None or not adapter.payment_url_is_a_code or payment.payment_url is None:
            raise errors.NotFound("no_qr_code", "only payments whose paymentUrl is a code (WeChat Pay Native) "
                                  "have a QR code")
        encode, media_type = render
        return Response(encode(payment.payment_url), media_type=media_type,
                        headers={"Cache-Control": "private, max-age=300"})
