"""The Cloudreve v4 custom payment provider bridge: ``/cloudreve/{paymentGatewayType}``.

An operator adds one custom provider per gateway in Cloudreve, with this URL and the
communication key ``PAYRELAY_CLOUDREVE_KEY``. Cloudreve signs every call (``service.cloudreve_auth``).

* ``POST`` ``{name, order_no, notify_url, amount, currency}`` → ``{"code":0,"data":"<paymentUrl>"}``
  (WeChat: the ``weixin://`` code URL, which Cloudreve shows as a QR code).
* ``GET ?order_no=…`` → ``{"code":0,"data":"PAID"}`` once the order's latest payment succeeded,
  else its status (``waiting``, ``processing``, ``failed``, ``closed``). A payment still open is
  asked about at the gateway first, so a customer waiting on Cloudreve's page is not held up by a
  late webhook.
* On success payrelay's outbox sends ``GET notify_url`` until Cloudreve answers ``{"code":0}``.

All Cloudreve orders belong to one API client, ``cloudreve:any-site`` (see
``service.settings.CLOUDREVE_CLIENT`` for why not one per site): ``order_no`` is the transactionId,
``name`` the description, ``amount`` integer minor units. Cloudreve sends no redirect URLs: the
customer comes back to the site's root (``X-Cr-Site-Url`` + ``/``) whether paid or not;
Cloudreve's own order page learns the outcome by querying. The business date is the order's:
Cloudreve's order numbers start with ``YYYYMMDD`` (else today, UTC), so a create re-sent after
midnight is still the same request.

Every answer is HTTP 200; errors are ``{"code": <status>*100+1, "error": "…"}`` where ``<status>``
is the HTTP status the same failure gets on ``/api`` (40001 invalid, 40101 signature refused,
40401 unknown order, 40901 the order exists with other fields, 41301 a body over 64 KiB, 50201
gateway refused, 50301 gateway or Redis unavailable), plus 40002 for an https-only gateway behind
an http site URL and 40301 when the bridge is off (no ``PAYRELAY_CLOUDREVE_KEY``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.errors import GatewayError
from service import errors, states
from service.api import parse_json
from service.cloudreve_auth import CloudreveAuthError, verify_get, verify_post
from service.payments import Payments
from service.problems import Problem, printable, problem_of
from service.settings import CLOUDREVE_CLIENT, Settings
from service.store import StoreUnavailable
from service.validation import parse_transaction
from service.views import status_of

log = logging.getLogger("payrelay.cloudreve")

_SITE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Our request fields as Cloudreve names them, for error messages a Cloudreve operator can act on.
_CLOUDREVE_NAMES = {
    "transactionId": "order_no",
    "description": "name",
    "notifyUrl": "notify_url",
    "completePayRedirectUrl": "X-Cr-Site-Url",
    "cancelPayRedirectUrl": "X-Cr-Site-Url",
}




class BridgeError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def answer(code: int, **fields: Any) -> JSONResponse:
    return JSONResponse({"code": code, **{name: printable(value) for name, value in fields.items()}})


def _bridge_error(failure: Problem) -> BridgeError:
    """The failure's code on /api, as Cloudreve's code (<status> * 100 + 1), in Cloudreve's names."""
    detail = failure.detail
    name = _CLOUDREVE_NAMES.get(failure.param or "")
    if name and failure.param and detail.startswith(failure.param):
        detail = name + detail[len(failure.param):]
    return BridgeError(failure.status * 100 + 1, detail)


def _utf8_header(value: str, name: str) -> str:
    """A header as Cloudreve (Go) wrote it: UTF-8 text, which the ASGI server hands over decoded
    as latin-1 (so a non-ASCII site URL would otherwise be taken as mojibake)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BridgeError(40001, f"{name} is not UTF-8 text") from None


def business_date(order_no: str, today: dt.date | None = None) -> str:
    """The date in a Cloudreve order number (``YYYYMMDD…``), else today (UTC)."""
    if len(order_no) >= 8 and order_no[:8].isdigit():
        try:
            return dt.date(int(order_no[:4]), int(order_no[4:6]), int(order_no[6:8])).isoformat()
        except ValueError:
            pass
    return (today or dt.datetime.now(dt.UTC).date()).isoformat()


def site_root(site_url: str) -> str:
    return site_url.rstrip("/") + "/"


class CloudreveBridge:
    def __init__(self, settings: Settings, payments: Payments) -> None:
        self.settings = settings
        self.payments = payments

    def routes(self) -> list[Route]:
        return [
            Route("/cloudreve/{paymentGatewayType}", self.create, methods=["POST"]),
            Route("/cloudreve/{paymentGatewayType}", self.query, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        try:
            return await self._create(request)
        except Exception as exc:
            return self._failure(exc, request)

    async def query(self, request: Request) -> Response:
        try:
            return await self._query(request)
        except Exception as exc:
            return self._failure(exc, request)

    def _failure(self, exc: Exception, request: Request) -> Response:
        if isinstance(exc, StoreUnavailable):
            log.error("Redis unavailable: %s", exc)
        if isinstance(exc, errors.PayrelayError | GatewayError | StoreUnavailable):
            exc = _bridge_error(problem_of(exc))
        if not isinstance(exc, BridgeError):
            raise exc  # a bug: let it be a 500 and a traceback
        log.info("cloudreve %s refused: %s", request.method, exc.message,
                 extra={"outcome": exc.code, "route": "/cloudreve/{paymentGatewayType}"})
        return answer(exc.code, error=exc.message)

    def _key(self) -> str:
        if self.settings.cloudreve_key is None:
            raise BridgeError(40301, "the Cloudreve bridge is off: PAYRELAY_CLOUDREVE_KEY is not set")
        return self.settings.cloudreve_key.reveal()

    @staticmethod
    def _site_id(request: Request) -> str:
        """The signed X-Cr-Site-Id of a create: not needed to find orders, but a create without
        it did not come from Cloudreve; logged with the order."""
        site_id = request.headers.get("x-cr-site-id", "")
        if not _SITE_ID.fullmatch(site_id):
            raise BridgeError(40001, "X-Cr-Site-Id must be Cloudreve's site id")
        return site_id

    async def _create(self, request: Request) -> Response:
        key = self._key()
        body = await request.body()  # at most its limit (service.body_limit): 41301 past it
        try:
            verify_post(key, request.url.path, request.headers, body, request.headers.get("authorization"))
        except CloudreveAuthError as exc:
            raise BridgeError(40101, str(exc)) from None
        site_id = self._site_id(request)
        order = parse_json(body)
        transaction = parse_transaction(
            self._transaction_request(order, request), self.payments.adapters, amount_unit="minor",
            allowed_hosts=self.settings.redirect_hosts,
        )
        payment = await self.payments.create(CLOUDREVE_CLIENT, transaction, notify_kind="cloudreve")
        log.info("cloudreve order opened for site %s", site_id, extra={"paymentId": payment.payment_id})
        return answer(0, data=self.payments.urls.shown(payment).payment_url or "")

    def _transaction_request(self, order: Any, request: Request) -> dict[str, Any]:
        """Cloudreve's order as a transaction request, so that every field rule applies once."""
        if not isinstance(order, dict):
            raise BridgeError(40001, "the body must be a JSON object")
        for name in ("name", "order_no", "notify_url", "currency"):
            if not isinstance(order.get(name), str):
                raise BridgeError(40001, f"{name} must be a string")
        amount = order.get("amount")
        if type(amount) is not int or amount <= 0:
            raise BridgeError(40001, "amount must be a positive whole number of the currency's minimum unit")
        gateway = request.path_params["paymentGatewayType"]
        adapter = self.payments.adapters.get(gateway)
        site_url = _utf8_header(request.headers.get("x-cr-site-url", ""), "X-Cr-Site-Url")
        if not site_url:
            raise BridgeError(40001, "X-Cr-Site-Url is required: the customer returns there")
        if adapter is not None and adapter.requires_https_redirects and not site_url.startswith("https://"):
            raise BridgeError(40002, f"{gateway} redirects customers only to https: the Cloudreve site URL "
                                     f"{site_url[:200]!r} must be https")
        return {
            "transactionId": order["order_no"],
            "amount": amount,
            "currency": order["currency"],
            "date": business_date(order["order_no"]),
            "paymentGatewayType": gateway,
            "completePayRedirectUrl": site_root(site_url),
            "cancelPayRedirectUrl": site_root(site_url),
            "onlineScenario": True,
            "description": order["name"],
            "notifyUrl": order["notify_url"],
        }

    async def _query(self, request: Request) -> Response:
        key = self._key()
        try:
            verify_get(key, request.url.path, request.query_params.get("sign"))
        except CloudreveAuthError as exc:
            raise BridgeError(40101, str(exc)) from None
        order_no = request.query_params.get("order_no")
        if not order_no:
            raise BridgeError(40001, "order_no is required")
        payment = await self.payments.find(CLOUDREVE_CLIENT, order_no)
        if payment.gateway != request.path_params["paymentGatewayType"]:
            raise BridgeError(40401, f"no {request.path_params['paymentGatewayType']} order {order_no!r}")
        if status_of(payment) in states.OPEN:
            try:
                payment = await self.payments.sync(payment)
            except (GatewayError, errors.PayrelayError) as exc:  # the stored status is still an answer
                log.warning("cloudreve query: gateway not asked: %s", exc,
                            extra={"paymentId": payment.payment_id})
        status = status_of(payment)
        return answer(0, data="PAID" if status == "succeeded" else status)
