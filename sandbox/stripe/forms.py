"""Stripe's form-encoded parameters in: nested keys into dicts and lists (``parse_params``), and
the checks every endpoint runs on them (unknown parameters, integers, booleans, strings, URLs,
currencies, amounts, metadata), refused with Stripe's messages."""

from __future__ import annotations

import re
from typing import Any

from sandbox.stripe.currencies import AMOUNT_STEPS
from sandbox.stripe.errors import ApiError

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_INTEGER = re.compile(r"-?[0-9]+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def parse_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's nested form keys → dicts and lists: ``a[b][0][c]=1`` → {"a": {"b": [{"c": "1"}]}}."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise ApiError(400, f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ApiError(400, f"Invalid hash or array: {key}", param=key)
            node = child
        last = parts[-1] or str(len(node))  # "expand[]=x" appends
        if isinstance(node.get(last), dict):
            raise ApiError(400, f"Invalid parameter: {key} is a hash", param=key)
        node[last] = value
    result = _arrays(root)
    assert isinstance(result, dict)
    return result


def _arrays(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _arrays(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _known(params: dict[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            name = f"{prefix}[{key}]" if prefix else key
            raise ApiError(400, f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def _integer(value: Any, param: str, minimum: int | None = None) -> int:
    if not isinstance(value, str) or _INTEGER.fullmatch(value) is None:
        raise ApiError(400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ApiError(400, f"This value must be greater than or equal to {minimum}.", param=param,
                       code="parameter_invalid_integer")
    return number


def _boolean(value: Any, param: str) -> bool:
    if value not in ("true", "false"):
        raise ApiError(400, f"Invalid boolean: {value}", param=param)
    return value == "true"


def _string(params: dict[str, Any], key: str, prefix: str = "", *, limit: int = 5000) -> str | None:
    value = params.get(key)
    name = f"{prefix}[{key}]" if prefix else key
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid string: {name} must be a string", param=name)
    if len(value) > limit:
        raise ApiError(400, f"Invalid string: {value[:20]}...; must be at most {limit} characters",
                       param=name)
    return value


def _url(params: dict[str, Any], key: str) -> str | None:
    value = _string(params, key, limit=5000)
    if value is not None and re.match(r"https?://[^/\s]+", value) is None:
        raise ApiError(400, "Not a valid URL", param=key, code="url_invalid")
    return value


def _currency(value: Any, param: str) -> str:
    if not isinstance(value, str) or _CURRENCY.fullmatch(value) is None:
        raise ApiError(400, f"Invalid currency: {value}. Stripe currently supports three-letter ISO "
                            "currency codes in lowercase.", param=param)
    return value.lower()


def _amount(value: Any, currency: str, param: str) -> int:
    amount = _integer(value, param, minimum=1)
    step = AMOUNT_STEPS.get(currency, 1)
    if amount % step:
        raise ApiError(400, f"Invalid amount: {currency.upper()} amounts must be a multiple of {step}.",
                       param=param, code="amount_invalid")
    return amount


def _metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid object", param=param)
    if len(value) > 50:
        raise ApiError(400, "Metadata can have at most 50 keys.", param=param)
    for key, item in value.items():
        if len(key) > 40 or not isinstance(item, str) or len(item) > 500:
            raise ApiError(400, "Metadata keys must be at most 40 characters and values strings of at "
                                "most 500 characters.", param=f"{param}[{key}]")
    return dict(value)
