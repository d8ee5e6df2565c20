"""service/views.py: how a stored payment looks to the storage app."""

from __future__ import annotations

from typing import Any

from service import views
from service.model import Payment
from tests import helpers
from tests.helpers import NOW


def payment(**fields: str) -> Payment:
    return helpers.record("pr_00x", **{"status": "waiting", **fields})


def test_times_are_utc_iso_with_milliseconds_and_absent_ones_none() -> None:
    assert views.iso(1_900_000_000_000) == "2030-03-17T17:46:40.000Z"
    assert views.iso(1) == "1970-01-01T00:00:00.001Z"
    assert views.iso(None) is None


def test_amounts_in_the_clients_unit() -> None:
    assert views.amount_of(payment(), "major") == "25.00"
    assert views.amount_of(payment(), "minor") == "2500"
    assert views.amount_of(payment(amount="300", currency="JPY"), "major") == "300"
    assert views.amount_of(payment(amount="1250", currency="KWD"), "major") == "1.250"


def test_expire_time_counts_down_and_is_0_once_final_or_past() -> None:
    assert views.expire_time(payment(), NOW) == 1800
    assert views.expire_time(payment(), NOW + 1_799_999) == 0
    assert views.expire_time(payment(), NOW + 3_600_000) == 0
    assert views.expire_time(payment(status="succeeded"), NOW) == 0
    assert views.expire_time(payment(status="creating"), NOW) == 1800  # reads as waiting


def test_created_and_payment_views() -> None:
    created = views.created_view(payment(paymentUrl="https://pay.example/x"), NOW)
    assert created == {"paymentUrl": "https://pay.example/x", "paymentId": "pr_00x", "expireTime": 1800,
                       "status": "waiting"}
    assert views.created_view(payment(), NOW)["paymentUrl"] is None
    view: dict[str, Any] = views.payment_view(payment(paidAt=str(NOW), latePayment="1", version="3"), NOW, "major")
    assert view["amount"] == "25.00" and view["paymentGatewayType"] == "stripe-connect"
    assert view["updatedAt"] == view["createdAt"] == views.iso(NOW) == view["paidAt"]
    assert (view["latePayment"], view["integrityError"], view["version"]) == (True, False, 3)
    assert (view["gatewayReference"], view["failureReason"], view["customerIdentifier"]) == (None, None, None)
    assert views.payment_view(payment(), NOW, "major")["version"] == 0
