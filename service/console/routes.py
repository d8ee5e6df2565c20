"""The console's pages and actions, under /console (mounted by ``service.app`` only when
PAYRELAY_CONSOLE_USERS names someone).

Every page but the sign-in form needs a session (``auth.Sessions``); every POST carries the
session's CSRF token (the sign-in form: a token in a cookie of its own, submitted twice). Each
action (close, sync, redeliver, refund) is confirmed on a page of its own first, works without
JavaScript, and is written into the payment's timeline with the operator's name before it runs
(and its refusal after, when it is refused). The payment page follows the payment while it can
still change: ``static/live.js`` asks ``…/live`` and reloads the page's main part when the
payment moved (without script, the page refreshes itself).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from adapters import registry
from adapters.errors import GatewayError
from service import errors, keys, states
from service.clock import now_ms
from service.console import charts
from service.console.auth import Session, Sessions, SignInRefused, same_token
from service.console.web import PREFIX, render, secured, static_files, with_query
from service.deliveries_api import delivery_view
from service.delivery_store import DeliveryStore
from service.listing import FLAGS, ListQuery
from service.model import Delivery, DeliveryState, Payment
from service.problems import TITLES, problem_of
from service.runtime import Runtime
from service.settings import Client, Settings
from service.store import StoreUnavailable
from service.timeline import event_view
from service.validation import parse_refund
from service.views import payment_view, refund_view

COOKIE = "payrelay_console"  # the session's token
SIGNIN_COOKIE = "payrelay_console_signin"  # the sign-in form's CSRF token
PAGE_SIZE = 50
QUEUE_SIZE = 50
ACTIONS = ("close", "sync", "redeliver", "refund")
STATUSES = tuple(state.value for state in states.PaymentState if state not in states.PUBLIC)
FILTERS = ("status", "gateway", "from", "to", "flag", "client")
DONE = {  # what the payment page says after an action, by action
    "close": "Closed.",
    "sync": "Asked the gateway; the payment shows what it said.",
    "redeliver": "The notification is due again now.",
    "refund": "The refund was sent to the gateway; it shows below.",
}
UNREACHABLE = "The console cannot reach Redis: try again shortly."
Handler = Callable[[Request, Session], Awaitable[Response]]
Refusal = errors.PayrelayError | GatewayError | StoreUnavailable


def local_path(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if target and target.startswith(f"{PREFIX}/") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and not target.startswith("//"):
            return target
    return f"{PREFIX}/payments"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _day(text: str, name: str, *, end: bool = False) -> int | None:
    """A YYYY-MM-DD date (UTC) as epoch ms: its start, or with ``end`` the start of the next day."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise errors.InvalidRequest("invalid_query", f"{name} must be a date such as 2026-11-21", name) from None
    moment = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), dt.UTC)
    return int(moment.timestamp() * 1000)


def _bucket(payment_id: str) -> int:
    bucket = keys.bucket_of(payment_id)
    if bucket is None:
        raise errors.NotFound("payment_not_found", f"no payment {payment_id!r}", "paymentId")
    return bucket


class Console:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.payments = runtime.payments
        self.deliveries = DeliveryStore(runtime.redis)
        self.sessions = Sessions(runtime.redis, settings.console_users)
        self.clients: Mapping[str, Client] = {client.name: client for client in settings.all_clients}
        self.gateways = [(gateway.name, gateway.label) for gateway in registry.GATEWAYS]

    def routes(self) -> list[BaseRoute]:
        page = self._signed_in
        return [
            Mount(f"{PREFIX}/static", app=static_files()),
            Route(PREFIX, self.home, methods=["GET"]),
            Route(f"{PREFIX}/signin", self.signin_form, methods=["GET"]),
            Route(f"{PREFIX}/signin", self.signin, methods=["POST"]),
            Route(f"{PREFIX}/signout", page(self.signout), methods=["POST"]),
            Route(f"{PREFIX}/payments", page(self.payment_list), methods=["GET"]),
            Route(f"{PREFIX}/payments/{{paymentId}}", page(self.payment), methods=["GET"]),
            Route(f"{PREFIX}/payments/{{paymentId}}/live", page(self.live), methods=["GET"]),
            Route(f"{PREFIX}/payments/{{paymentId}}/confirm", page(self.confirm), methods=["GET"]),
            Route(f"{PREFIX}/payments/{{paymentId}}/{{action}}", page(self.act), methods=["POST"]),
            Route(f"{PREFIX}/queues", page(self.queues), methods=["GET"]),
            Route(f"{PREFIX}/dashboard", page(self.dashboard), methods=["GET"]),
        ]

    # -- sessions -------------------------------------------------------------------------------

    def _secure(self, request: Request) -> bool:
        """Whether cookies get ``Secure``: payrelay is reached over https (its public URL says so,
        or the request came over https, also through a proxy: uvicorn's proxy headers)."""
        return self.settings.public_url.startswith("https://") or request.url.scheme == "https"

    def _cookie(self, answer: Response, request: Request, name: str, value: str) -> None:
        answer.set_cookie(name, value, path=PREFIX, httponly=True, samesite="strict", secure=self._secure(request))

    def _signed_in(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint of a page that needs a session (and, for a POST, its CSRF token)."""

        async def endpoint(request: Request) -> Response:
            session: Session | None = None
            try:
                session = await self.sessions.session_of(request.cookies.get(COOKIE))
                if session is None:
                    return self._to_signin(request)
                if request.method == "POST" and not same_token(_text(await request.form(), "csrf"), session.csrf):
                    return render("message.html", 403, session=session, title="Refused",
                                  message="This form is out of date, or it was not sent from the console: "
                                          "go back, reload the page and try again.", back="")
                return await handler(request, session)
            except (errors.PayrelayError, GatewayError, StoreUnavailable) as exc:
                return self._refused(request, session, exc)

        return endpoint

    def _to_signin(self, request: Request) -> Response:
        if request.url.path.endswith("/live"):
            return secured(JSONResponse({"signedIn": False}, status_code=401))
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        following = {"next": target} if request.method == "GET" else {}
        return secured(RedirectResponse(with_query(f"{PREFIX}/signin", following), status_code=303))

    def _refused(self, request: Request, session: Session | None, exc: Refusal) -> Response:
        problem = problem_of(exc)
        payment_id = request.path_params.get("paymentId")
        back = f"{PREFIX}/payments/{payment_id}" if payment_id and problem.status != 404 else ""
        return render("message.html", problem.status, session=session,
                      title=TITLES.get(problem.status, "Error"), message=problem.detail, back=back)

    async def home(self, request: Request) -> Response:
        return secured(RedirectResponse(f"{PREFIX}/payments", status_code=303))

    async def signin_form(self, request: Request) -> Response:
        target = local_path(request.query_params.get("next"))
        try:
            if await self.sessions.session_of(request.cookies.get(COOKIE)):
                return secured(RedirectResponse(target, status_code=303))
        except StoreUnavailable:
            return self._signin_page(request, target, status_code=503, message=UNREACHABLE)
        signed_out = request.query_params.get("signedout") == "1"
        return self._signin_page(request, target, message="You are signed out." if signed_out else "")

    def _signin_page(self, request: Request, target: str, *, status_code: int = 200, message: str = "",
                     name: str = "", retry_after: int | None = None) -> Response:
        """The sign-in form, with a fresh CSRF token in its cookie and its hidden field."""
        token = secrets.token_urlsafe(32)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        answer = render("signin.html", status_code, headers, session=None, csrf=token, next=target, name=name,
                        message=message, refused=status_code != 200)
        self._cookie(answer, request, SIGNIN_COOKIE, token)
        return answer

    async def signin(self, request: Request) -> Response:
        form = await request.form()
        name, password, target = _text(form, "name"), form.get("password"), local_path(_text(form, "next"))

        def again(status_code: int, message: str, retry_after: int | None = None) -> Response:
            return self._signin_page(request, target, status_code=status_code, message=message, name=name,
                                     retry_after=retry_after)

        if not same_token(_text(form, "csrf"), request.cookies.get(SIGNIN_COOKIE) or "\0"):
            return again(403, "The sign-in form had expired: please sign in again.")
        if not name or not isinstance(password, str) or not password:
            return again(400, "Enter your name and your password.")
        address = request.client.host if request.client else "unknown"
        try:
            token = await self.sessions.sign_in(name, password, address)
        except SignInRefused as refused:
            minutes = -(-refused.retry_after // 60)
            return again(429, f"Too many sign-ins {refused.by}: try again in {minutes} minute"
                              f"{'s' * (minutes > 1)}.", refused.retry_after)
        except StoreUnavailable:
            return again(503, UNREACHABLE)
        if token is None:
            return again(401, "That name and password do not match.")
        answer = secured(RedirectResponse(target, status_code=303))
        self._cookie(answer, request, COOKIE, token)
        answer.delete_cookie(SIGNIN_COOKIE, path=PREFIX)
        return answer

    async def signout(self, request: Request, session: Session) -> Response:
        await self.sessions.sign_out(request.cookies.get(COOKIE) or "")
        answer = secured(RedirectResponse(f"{PREFIX}/signin?signedout=1", status_code=303))
        answer.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=self._secure(request))
        return answer

    # -- payments -------------------------------------------------------------------------------

    def _view(self, payment: Payment, now: int) -> dict[str, Any]:
        return payment_view(payment, now, self.settings.amount_unit) | {"client": payment.client,
                                                                         "refunded": payment.refunded > 0}

    def _query(self, filters: Mapping[str, str], token: str) -> ListQuery:
        """The filter form's query; a value no choice of the form has is refused (400)."""
        choices = {"status": STATUSES, "gateway": [name for name, _ in self.gateways], "flag": FLAGS,
                   "client": list(self.clients)}
        for name, allowed in choices.items():
            if filters[name] and filters[name] not in allowed:
                raise errors.InvalidRequest("invalid_query", f"{name} must be one of {', '.join(allowed)}", name)
        return ListQuery(
            client=filters["client"] or None, status=filters["status"] or None,
            gateway=filters["gateway"] or None, created_from=_day(filters["from"], "from"),
            created_to=_day(filters["to"], "to", end=True), flag=filters["flag"] or None,
            page_size=PAGE_SIZE, token=token,
        )

    async def payment_list(self, request: Request, session: Session) -> Response:
        params = request.query_params
        filters = {name: params.get(name, "").strip() for name in FILTERS}
        search = params.get("q", "").strip()
        found: list[Payment] = []
        next_token, error, status_code = "", "", 200
        try:
            if search:
                found = await self.payments.listing.search(search, list(self.clients))
            else:
                page = await self.payments.listing.page(self._query(filters, params.get("page", "")))
                found, next_token = page.payments, page.next_token
        except errors.InvalidRequest as exc:
            error, status_code = exc.detail, 400
        now = now_ms()
        next_page = with_query(f"{PREFIX}/payments", {**filters, "page": next_token}) if next_token else ""
        return render("payments.html", status_code, session=session, nav="payments", filters=filters,
                      search=search, rows=[self._view(p, now) for p in found], next_page=next_page,
                      first_page=bool(params.get("page")), error=error, gateways=self.gateways,
                      statuses=[(s, s) for s in STATUSES], flags=[(f, f) for f in FLAGS],
                      clients=[(c, c) for c in sorted(self.clients)])

    async def _payment(self, payment_id: str) -> Payment:
        _bucket(payment_id)
        payment = await self.payments.store.get(payment_id)
        if payment is None:
            raise errors.NotFound("payment_not_found", f"no payment {payment_id!r}", "paymentId")
        return payment

    async def _state(self, payment: Payment) -> dict[str, Any]:
        """All the payment page shows of a payment, and whether it may still change."""
        payment_id = payment.payment_id
        events = await self.payments.timeline.of_payment(payment_id)
        found = await self.deliveries.of_payment(_bucket(payment_id), payment_id)
        refunds = await self.payments.refunds.store.of_payment(payment_id)
        pending = any(delivery.state is DeliveryState.PENDING for delivery in found)
        live = payment.status not in states.FINAL or payment.refunding > 0 or pending
        stamp = hashlib.sha256(f"{payment.version}:{payment.updated_at}:{payment.refunded}:{payment.refunding}:"
                               f"{len(events)}".encode()).hexdigest()[:16]
        return {"payment": payment, "events": events, "deliveries": found, "refunds": refunds, "live": live,
                "stamp": stamp}

    def actions(self, payment: Payment, deliveries: list[Delivery]) -> dict[str, bool]:
        """Which actions the payment's state allows (the confirm step and the action check it too)."""
        return {
            "close": payment.status == states.PaymentState.CREATING or payment.status in states.OPEN,
            "sync": True,
            "redeliver": any(delivery.state is not DeliveryState.DELIVERED for delivery in deliveries),
            "refund": payment.status == states.PaymentState.SUCCEEDED
                      and payment.amount > payment.refunded + payment.refunding,
        }

    async def payment(self, request: Request, session: Session) -> Response:
        payment = await self._payment(request.path_params["paymentId"])
        state = await self._state(payment)
        now = now_ms()
        unit = self.settings.amount_unit
        done = request.query_params.get("done", "")
        notice = DONE.get(done, "")
        if done == "close" and payment.status != states.PaymentState.CLOSED:
            notice = f"Not closed: the gateway says the payment is {payment_view(payment, now, unit)['status']}."
        return render(
            "payment.html", session=session, nav="payments", view=self._view(self.payments.urls.shown(payment), now),
            timeline=[event_view(event) for event in state["events"]],
            deliveries=[delivery_view(delivery) for delivery in state["deliveries"]],
            refunds=[refund_view(refund, unit) for refund in state["refunds"]],
            actions=self.actions(payment, state["deliveries"]), live=state["live"], stamp=state["stamp"],
            notice=notice, amount_unit=unit,
        )

    async def live(self, request: Request, session: Session) -> Response:
        payment = await self._payment(request.path_params["paymentId"])
        state = await self._state(payment)
        view = payment_view(payment, now_ms(), self.settings.amount_unit)
        return secured(JSONResponse({"stamp": state["stamp"], "live": state["live"], "status": view["status"]}))

    # -- actions --------------------------------------------------------------------------------

    async def _checked(self, request: Request, action: str,
                       values: Mapping[str, str]) -> tuple[Payment, dict[str, str]]:
        """The payment, and the action's fields, once the action is known to be possible now."""
        if action not in ACTIONS:
            raise errors.NotFound("not_found", f"the console has no action {action!r}")
        payment = await self._payment(request.path_params["paymentId"])
        found = await self.deliveries.of_payment(_bucket(payment.payment_id), payment.payment_id)
        if not self.actions(payment, found)[action]:
            status = payment_view(payment, now_ms(), self.settings.amount_unit)["status"]
            raise errors.Conflict(f"cannot_{action}", f"the payment is {status}: {action} is not possible now")
        fields: dict[str, str] = {}
        if action == "redeliver":
            delivery_id = values.get("delivery", "")
            if not any(d.delivery_id == delivery_id and d.state is not DeliveryState.DELIVERED for d in found):
                raise errors.NotFound("delivery_not_found", f"the payment has no undelivered notification "
                                      f"{delivery_id!r}", "delivery")
            fields["deliveryId"] = delivery_id
        if action == "refund":
            # the refundId is made when the refund is confirmed: sending the confirmation twice is one refund
            fields = {"refundId": values.get("refundId") or f"console-{secrets.token_hex(8)}"}
            fields |= {name: values[name] for name in ("amount", "reason") if values.get(name)}
            parse_refund(fields, payment.currency, amount_unit=self.settings.amount_unit)
        return payment, fields

    async def confirm(self, request: Request, session: Session) -> Response:
        params = request.query_params
        action = params.get("action", "")
        payment, fields = await self._checked(request, action, {name: params.get(name, "").strip()
                                                                 for name in ("delivery", "amount", "reason")})
        return render("confirm.html", session=session, nav="payments", action=action, fields=fields,
                      view=self._view(payment, now_ms()), amount_unit=self.settings.amount_unit)

    async def act(self, request: Request, session: Session) -> Response:
        action = request.path_params["action"]
        form = await request.form()
        payment, fields = await self._checked(request, action, {name: _text(form, name) for name in
                                                                ("delivery", "refundId", "amount", "reason")})
        payment_id = payment.payment_id
        timeline = self.payments.timeline
        await timeline.record(payment_id, "operator", actor=session.name, action=action, **fields)
        try:
            await self._perform(action, payment, fields)
        except (errors.PayrelayError, GatewayError, StoreUnavailable) as exc:
            with contextlib.suppress(StoreUnavailable):
                await timeline.record(payment_id, "operator", actor=session.name, action=action,
                                      outcome="refused", detail=problem_of(exc).detail)
            raise
        return secured(RedirectResponse(f"{PREFIX}/payments/{payment_id}?done={action}", status_code=303))

    async def _perform(self, action: str, payment: Payment, fields: Mapping[str, str]) -> None:
        if action == "close":
            await self.payments.close(payment)
        elif action == "sync":
            await self.payments.sync(payment)
        elif action == "redeliver":
            await self.deliveries.resend(_bucket(payment.payment_id), payment.payment_id, fields["deliveryId"],
                                         now_ms())
        else:
            client = self.clients.get(payment.client) or Client(payment.client, keys=())
            await self.payments.refunds.create(client, payment.payment_id, dict(fields))

    # -- queues and the dashboard ---------------------------------------------------------------

    async def queues(self, request: Request, session: Session) -> Response:
        now = now_ms()
        listing = self.payments.listing
        late = await listing.page(ListQuery(flag="latePayment", page_size=QUEUE_SIZE))
        integrity = await listing.page(ListQuery(flag="integrityError", page_size=QUEUE_SIZE))
        overdue = await listing.overdue(now, limit=QUEUE_SIZE)
        dead = await self.deliveries.dead(QUEUE_SIZE)
        return render(
            "queues.html", session=session, nav="queues", size=QUEUE_SIZE,
            late=[self._view(p, now) for p in late.payments], late_more=bool(late.next_token),
            integrity=[self._view(p, now) for p in integrity.payments], integrity_more=bool(integrity.next_token),
            overdue=[self._view(p, now) for p in overdue],
            dead=[delivery_view(d) | {"paymentId": d.payment_id} for d in dead],
        )

    async def dashboard(self, request: Request, session: Session) -> Response:
        hours = await self.payments.stats.hours(now_ms(), hours=24)
        latency, buckets = charts.latency(hours)
        deliveries, delivered = charts.deliveries(hours)
        return render("dashboard.html", session=session, nav="dashboard", by_status=charts.by_status(hours),
                      conversion=charts.conversion(hours, [g for g in self.gateways if g[0] in self.settings.gateways]),
                      latency=latency, buckets=buckets,
                      deliveries=deliveries, delivered=delivered)
