"""Logging: one JSON object per line, with the request's trace id and the payment context; or,
for people watching a terminal (``PAYRELAY_LOG_FORMAT=text``, what the demo uses), one readable
line per record from the same records.

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
# what a text line adds after its message, in parentheses: the rest of the context is either said
# by the message itself (a request's route and status, a delivery's id) or only for machines
_TEXT_CONTEXT = ("source", "gateway")


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


class TextFormatter(logging.Formatter):
    """``15:04:09 pr_3a… waiting → succeeded (webhook, alipay-page)``: local time, the level when it
    is a warning or worse, the payment, the message, where the news came from."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")]
        if record.levelno >= logging.WARNING:
            parts.append(record.levelname)
        payment_id = getattr(record, "paymentId", None)
        if payment_id is not None:
            parts.append(str(payment_id))
        parts.append(record.getMessage())
        context = [str(value) for name in _TEXT_CONTEXT if (value := getattr(record, name, None)) is not None]
        if context:
            parts.append(f"({', '.join(context)})")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", form: str = "json") -> None:
    """Log records at ``level`` and above to stderr, as JSON lines or as ``text``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if form == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # our middleware logs requests
    for noisy in ("stripe", "aiohttp", "httpx", "httpcore"):  # SDK debug logs may echo request bodies
        logging.getLogger(noisy).setLevel(logging.WARNING)
