"""How a stored payment looks to the storage app (GET answers and notification data)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapters import money
from service import states
from service.model import Payment, Refund


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def status_of(payment: Payment) -> str:
    return states.public(payment.status).value


def amount_in(minor: int, currency: str, amount_unit: str) -> str:
    """An amount as the storage app writes it (``PAYRELAY_AMOUNT_UNIT``)."""
    return str(minor) if amount_unit == "minor" else money.to_major(minor, currency)


def amount_of(payment: Payment, amount_unit: str) -> str:
    return amount_in(payment.amount, payment.currency, amount_unit)


def expire_time(payment: Payment, now_ms: int) -> int:
    """Seconds until the payment expires (0 once it is final or past due)."""
    if status_of(payment) not in states.OPEN:
        return 0
    return max(0, (payment.expires_at - now_ms) // 1000)


def created_view(payment: Payment, now_ms: int) -> dict[str, Any]:
    return {
        "paymentUrl": payment.payment_url,
        "paymentId": payment.payment_id,
        "expireTime": expire_time(payment, now_ms),
        "status": status_of(payment),
    }


def payment_view(payment: Payment, now_ms: int, amount_unit: str) -> dict[str, Any]:
    return {
        **created_view(payment, now_ms),
        "transactionId": payment.transaction_id,
        "amount": amount_of(payment, amount_unit),
        "currency": payment.currency,
        "paymentGatewayType": payment.gateway,
        "description": payment.description,
        "customerIdentifier": payment.customer_identifier,
        "date": payment.date,
        "expiresAt": iso(payment.expires_at),
        "createdAt": iso(payment.created_at),
        "updatedAt": iso(payment.updated_at),
        "paidAt": iso(payment.paid_at),
        "gatewayReference": payment.gateway_reference,
        "failureReason": payment.failure_reason,
        "latePayment": payment.late_payment,
        "integrityError": payment.integrity_error,
        "version": payment.version,
        "refundedAmount": amount_in(payment.refunded, payment.currency, amount_unit),
        "refundingAmount": amount_in(payment.refunding, payment.currency, amount_unit),
    }


def refund_view(refund: Refund, amount_unit: str) -> dict[str, Any]:
    return {
        "refundId": refund.refund_id,
        "paymentId": refund.payment_id,
        "amount": amount_in(refund.amount, refund.currency, amount_unit),
        "currency": refund.currency,
        "reason": refund.reason,
        "status": refund.status.value,
        "gatewayReference": refund.gateway_reference,
        "failureReason": refund.failure_reason,
        "createdAt": iso(refund.created_at),
        "updatedAt": iso(refund.updated_at),
    }
