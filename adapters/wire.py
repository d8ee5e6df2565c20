"""Reading JSON that arrives from outside (gateways' answers and webhooks, the storage app's
requests): only JSON is taken. Python's parser also takes NaN and Infinity; and nesting too deep
for it raises RecursionError, which is not a ValueError and would escape every boundary. Both are
malformed JSON here, a ``ValueError`` like any other."""

from __future__ import annotations

import json
from typing import Any


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def loads(raw: str | bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def value_at(raw: str, start: int) -> tuple[Any, int]:
    """The JSON value that begins at ``raw[start]`` and the index just past its end (text after
    it is not read): where a signature covers the exact text of one value inside a document."""
    try:
        return json.JSONDecoder(parse_constant=_not_json).raw_decode(raw, start)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
