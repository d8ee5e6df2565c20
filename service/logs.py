"""Logging: one JSON object per line, with the request's trace id and the payment context.

Records carry context through ``extra={"paymentId": …, "gateway": …, "outcome": …}``; secrets
never reach a log call (settings hold them in ``Secret``, which prints as ***).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from service.tracing import current_trace_id

_CONTEXT = ("paymentId", "gateway", "outcome", "source", "deliveryId", "worker", "entry", "route", "status")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None) or current_trace_id()
        if trace_id:
            entry["trace-id"] = trace_id
        for name in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # our middleware logs requests
    for noisy in ("stripe", "httpx", "httpcore"):  # SDK debug logs may echo request bodies
        logging.getLogger(noisy).setLevel(logging.WARNING)
