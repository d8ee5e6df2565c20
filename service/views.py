"""How a stored payment record looks to the storage app (GET answers and notification data)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapters import money
from service import states
from service.store import Record


def iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def status_of(record: Record) -> str:
    return states.public(states.PaymentState(record["status"])).value


def amount_of(record: Record, amount_unit: str) -> str:
    minor = int(record["amount"])
    return str(minor) if amount_unit == "minor" else money.to_major(minor, record["currency"])


def expire_time(record: Record, now_ms: int) -> int:
    """Seconds until the payment expires (0 once it is final or past due)."""
    if status_of(record) not in states.OPEN:
        return 0
    return max(0, (int(record["expiresAt"]) - now_ms) // 1000)


def created_view(record: Record, now_ms: int) -> dict[str, Any]:
    return {
        "paymentUrl": record.get("paymentUrl") or None,
        "paymentId": record["paymentId"],
        "expireTime": expire_time(record, now_ms),
        "status": status_of(record),
    }


def payment_view(record: Record, now_ms: int, amount_unit: str) -> dict[str, Any]:
    return {
        **created_view(record, now_ms),
        "transactionId": record["transactionId"],
        "amount": amount_of(record, amount_unit),
        "currency": record["currency"],
        "paymentGatewayType": record["gateway"],
        "description": record.get("description", ""),
        "customerIdentifier": record.get("customerIdentifier") or None,
        "date": record["date"],
        "expiresAt": iso(record["expiresAt"]),
        "createdAt": iso(record["createdAt"]),
        "updatedAt": iso(record.get("updatedAt") or record["createdAt"]),
        "paidAt": iso(record.get("paidAt")),
        "gatewayReference": record.get("gatewayReference") or None,
        "failureReason": record.get("failureReason") or None,
        "latePayment": record.get("latePayment") == "1",
        "integrityError": record.get("integrityError") == "1",
        "version": int(record.get("version", "0")),
    }
