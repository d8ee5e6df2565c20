"""The emulator's two exceptions: ``ApiError``, an answer in Stripe's error format (the API's
endpoints raise it, ``api`` turns it into the response), and ``CheckoutError``, raised to the
tests when the hosted page refuses what the customer asked."""

from __future__ import annotations

from typing import Any


class CheckoutError(Exception):
    """The hosted page would not do what the customer asked (session expired, complete, unknown)."""


class ApiError(Exception):
    """An answer in Stripe's error format."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, extra: dict[str, Any] | None = None,
                 saved: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param
        self.error.update(extra or {})
        self.saved = saved  # the endpoint ran: Stripe keeps this answer for the idempotency key


def missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required param: {param}.", param=param, code="parameter_missing")
