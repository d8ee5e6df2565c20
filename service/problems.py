"""RFC 9457 problem details, and the one place that picks HTTP status codes for failures."""

from __future__ import annotations

from starlette.responses import JSONResponse

from adapters.errors import (
    GatewayError,
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnavailable,
    UnsupportedOperation,
)
from service.store import StoreUnavailable
from service.tracing import current_trace_id

TITLES = {
    400: "Invalid request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    500: "Internal error",
    502: "Gateway error",
    503: "Service unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.param = param


def from_gateway(exc: GatewayError) -> ApiError:
    if isinstance(exc, UnsupportedOperation):
        return ApiError(400, "unsupported_by_gateway", exc.message, exc.param)
    if isinstance(exc, GatewayUnavailable):
        return ApiError(503, "gateway_unavailable", exc.message)
    if isinstance(exc, GatewayRefused):
        return ApiError(502, "gateway_refused", exc.message, exc.param)
    if isinstance(exc, GatewayProtocolError):
        return ApiError(502, "gateway_protocol_error", exc.message)
    return ApiError(502, "gateway_error", exc.message)


def from_store(exc: StoreUnavailable) -> ApiError:
    return ApiError(503, "store_unavailable", "the payment store (Redis) is unreachable; retry later")


def printable(value: object) -> object:
    """Text for a JSON answer: a lone surrogate that came in (and is quoted back in a message)
    would make the UTF-8 encoding of the whole answer fail; it is shown as its escape instead."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def problem(error: ApiError) -> JSONResponse:
    body = {
        "type": f"urn:payrelay:problem:{error.code}",
        "title": TITLES.get(error.status, "Error"),
        "status": error.status,
        "detail": printable(error.detail),
        "code": error.code,
        "traceId": current_trace_id(),
    }
    if error.param:
        body["param"] = printable(error.param)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, media_type="application/problem+json",
                        headers=headers)
