"""The app factory: everything is built from the settings passed in."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.errors import GatewayError
from service import errors
from service.api import TransactionsApi
from service.body_limit import BodyLimit
from service.cloudreve import CloudreveBridge
from service.console import Console
from service.deliveries_api import DeliveriesApi
from service.delivery_store import DeliveryStore
from service.metrics import Metrics
from service.openapi import route as openapi_route
from service.problems import TITLES, Problem, problem, problem_of
from service.runtime import Runtime
from service.settings import Settings
from service.store import StoreUnavailable
from service.tracing import TraceMiddleware
from service.workers import IDLE_SECONDS

log = logging.getLogger("payrelay.http")


class HttpMetrics:
    """Counts and times every request by route template and status, and logs it. Also the last
    resort: an exception nothing mapped (a bug) is logged with its traceback and answered as a 500
    problem with the trace id, instead of Starlette's plain-text 500 without one."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # (count, latency) by route, method, status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if status is not None:  # too late for another answer: the server closes the connection
                raise
            bug = errors.InternalError("internal_error",
                                       "payrelay failed unexpectedly; quote the trace id to report it")
            await problem(problem_of(bug))(scope, receive, send_status)
        finally:
            status = status or 500
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            series = self._series.get((route, method, status))
            if series is None:  # routes and methods are few: the series are looked up once each
                series = self._series[route, method, status] = (
                    self.metrics.http_requests.labels(route, method, str(status)),
                    self.metrics.http_latency.labels(route, method))
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
            level = logging.ERROR if status >= 500 else logging.INFO
            log.log(level, "%s %s %s", method, route, status, extra={"route": route, "status": status})


def create_app(settings: Settings, *, redis: Any = None, run_workers: bool = True,
               idle_seconds: float = IDLE_SECONDS, worker_options: dict[str, dict[str, Any]] | None = None,
               ) -> Starlette:
    """The payrelay ASGI app; its lifespan runs the background workers unless told not to.
    ``redis``: a client to use instead of connecting by the settings; ``idle_seconds`` and
    ``worker_options``: worker timings (see ``Runtime``), for tests."""
    runtime = Runtime(settings, redis=redis, idle_seconds=idle_seconds, worker_options=worker_options)
    payments, metrics = runtime.payments, runtime.metrics
    api = TransactionsApi(settings, payments)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = {"redis": await runtime.store.ping(),
                  **{f"worker:{name}": alive for name, alive in runtime.workers_alive().items()}}
        ready = all(checks.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def webhook(request: Request) -> Response:
        body = await request.body()
        reply = await payments.webhook(request.path_params["gateway"], request.headers, body)
        if reply is None:
            raise errors.NotFound("unknown_webhook", "no gateway with that webhook is configured")
        return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if run_workers:
            runtime.start_workers()
        try:
            yield
        finally:
            await runtime.close()

    async def on_refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.PayrelayError | GatewayError | StoreUnavailable)
        if isinstance(exc, StoreUnavailable):
            log.error("Redis unavailable: %s", exc)
        return problem(problem_of(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(Problem(exc.status_code, code, TITLES.get(exc.status_code, str(exc.detail))))

    app = Starlette(
        routes=[
            *api.routes(),
            *DeliveriesApi(settings, payments, DeliveryStore(runtime.redis)).routes(),
            *CloudreveBridge(settings, payments).routes(),
            Route("/webhooks/{gateway}", webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            openapi_route(settings),
            *(Console(settings, runtime).routes() if settings.console_users else []),
        ],
        lifespan=lifespan,
        exception_handlers={
            errors.PayrelayError: on_refusal,
            GatewayError: on_refusal,
            StoreUnavailable: on_refusal,
            HTTPException: on_http_error,
        },
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.add_middleware(TraceMiddleware)
    app.state.runtime = runtime
    return app
