"""Reading what gateways send: JSON that is too deeply nested for Python's parser is malformed
JSON like any other (``ValueError``), never a ``RecursionError`` that escapes every boundary."""

from __future__ import annotations

import json
from typing import Any


def loads(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
