"""The one table of HTTP statuses: every domain refusal and every gateway failure has one, and the
Cloudreve bridge's codes are derived from it."""

from __future__ import annotations

import pytest

from adapters import errors as gateway_errors
from service import errors
from service.problems import STATUS, problem_of
from service.store import StoreUnavailable


def subclasses(root: type[Exception]) -> list[type[Exception]]:
    found, todo = [], [root]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo += kind.__subclasses__()
    return found


@pytest.mark.parametrize("kind", [k for k in subclasses(errors.PayrelayError)
                                  if k is not errors.PayrelayError and k.__module__ == errors.__name__])
def test_every_refusal_has_a_status(kind: type[errors.PayrelayError]) -> None:
    failure = problem_of(kind("some_code", "what went wrong", "field"))
    assert 400 <= failure.status < 600
    assert (failure.code, failure.detail, failure.param) == ("some_code", "what went wrong", "field")


@pytest.mark.parametrize(("kind", "status", "code"), [
    (gateway_errors.UnsupportedOperation, 400, "unsupported_by_gateway"),
    (gateway_errors.GatewayRefused, 502, "gateway_refused"),
    (gateway_errors.GatewayProtocolError, 502, "gateway_protocol_error"),
    (gateway_errors.GatewayUnavailable, 503, "gateway_unavailable"),
    (gateway_errors.GatewayError, 502, "gateway_error"),
])
def test_gateway_failures(kind: type[gateway_errors.GatewayError], status: int, code: str) -> None:
    failure = problem_of(kind("the gateway said no", param="amount"))
    assert (failure.status, failure.code, failure.detail) == (status, code, "the gateway said no")
    assert failure.param == ("amount" if status == 400 or code == "gateway_refused" else None)


def test_redis_out_of_reach_says_nothing_of_the_cause() -> None:
    failure = problem_of(StoreUnavailable("Redis: ConnectionError at 10.0.0.5:6379"))
    assert (failure.status, failure.code) == (503, "store_unavailable") and "10.0.0.5" not in failure.detail


def test_every_gateway_error_class_is_in_the_table() -> None:
    for kind in subclasses(gateway_errors.GatewayError):
        assert any(k in STATUS for k in kind.__mro__), kind
