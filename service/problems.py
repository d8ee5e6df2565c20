"""RFC 9457 problem details, and the one place that picks HTTP status codes for failures.

``STATUS`` maps every failure the domain raises (``service.errors``), every gateway failure
(``adapters.errors``) and Redis out of reach to its HTTP status; the Cloudreve bridge derives its
error codes from the same status (``<status> * 100 + 1``).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import JSONResponse

from adapters.errors import (
    GatewayError,
    GatewayProtocolError,
    GatewayRefused,
    GatewayUnavailable,
    UnsupportedOperation,
)
from service import errors
from service.store import StoreUnavailable
from service.tracing import current_trace_id

STATUS: Mapping[type[Exception], int] = types.MappingProxyType({
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InternalError: 500,
    errors.NotConfigured: 503,
    UnsupportedOperation: 400,
    GatewayRefused: 502,
    GatewayProtocolError: 502,
    GatewayError: 502,
    GatewayUnavailable: 503,
    StoreUnavailable: 503,
})
# codes of the failures that carry none of their own
CODES: Mapping[type[Exception], str] = types.MappingProxyType({
    UnsupportedOperation: "unsupported_by_gateway",
    GatewayUnavailable: "gateway_unavailable",
    GatewayRefused: "gateway_refused",
    GatewayProtocolError: "gateway_protocol_error",
    GatewayError: "gateway_error",
    StoreUnavailable: "store_unavailable",
})
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
STORE_DETAIL = "the payment store (Redis) is unreachable; retry later"


@dataclass(frozen=True)
class Problem:
    status: int
    code: str
    detail: str
    param: str | None = None


def _first(table: Mapping[type[Exception], object], exc: Exception) -> object:
    for kind in type(exc).__mro__:
        if kind in table:
            return table[kind]
    raise LookupError(f"no problem for {type(exc).__name__}")


def problem_of(exc: errors.PayrelayError | GatewayError | StoreUnavailable) -> Problem:
    status = _first(STATUS, exc)
    assert isinstance(status, int)
    if isinstance(exc, errors.PayrelayError):
        return Problem(status, exc.code, exc.detail, exc.param)
    code = _first(CODES, exc)
    assert isinstance(code, str)
    if isinstance(exc, GatewayError):
        return Problem(status, code, exc.message, exc.param if isinstance(exc, GatewayRefused | UnsupportedOperation)
                       else None)
    return Problem(status, code, STORE_DETAIL)


def printable(value: object) -> object:
    """Text for a JSON answer: a lone surrogate that came in (and is quoted back in a message)
    would make the UTF-8 encoding of the whole answer fail; it is shown as its escape instead."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def problem(error: Problem) -> JSONResponse:
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
