"""service/views.py: how a stored record looks to the storage app."""

from __future__ import annotations

from service import views

NOW = 1_900_000_000_000


def record(**fields: str) -> dict[str, str]:
    return {"paymentId": "pr_00x", "transactionId": "t1", "gateway": "stripe-connect", "amount": "2500",
            "currency": "USD", "date": "2026-11-21", "status": "waiting", "createdAt": str(NOW),
            "expiresAt": str(NOW + 1_800_000), **fields}


def test_times_are_utc_iso_with_milliseconds_and_absent_ones_none() -> None:
    assert views.iso(str(NOW)) == "2030-03-17T17:46:40.000Z"
    assert views.iso("1") == "1970-01-01T00:00:00.001Z"
    assert views.iso(None) is None and views.iso("") is None


def test_amounts_in_the_clients_unit() -> None:
    assert views.amount_of(record(), "major") == "25.00"
    assert views.amount_of(record(), "minor") == "2500"
    assert views.amount_of(record(amount="300", currency="JPY"), "major") == "300"
    assert views.amount_of(record(amount="1250", currency="KWD"), "major") == "1.250"


def test_expire_time_counts_down_and_is_0_once_final_or_past() -> None:
    assert views.expire_time(record(), NOW) == 1800
    assert views.expire_time(record(), NOW + 1_799_999) == 0
    assert views.expire_time(record(), NOW + 3_600_000) == 0
    assert views.expire_time(record(status="succeeded"), NOW) == 0


def test_created_and_payment_views() -> None:
    created = views.created_view(record(paymentUrl="https://pay.example/x"), NOW)
    assert created == {"paymentUrl": "https://pay.example/x", "paymentId": "pr_00x", "expireTime": 1800,
                       "status": "waiting"}
    assert views.created_view(record(), NOW)["paymentUrl"] is None
    view = views.payment_view(record(paidAt=str(NOW), latePayment="1", version="3"), NOW, "major")
    assert view["amount"] == "25.00" and view["paymentGatewayType"] == "stripe-connect"
    assert view["updatedAt"] == view["createdAt"] == views.iso(str(NOW)) == view["paidAt"]
    assert (view["latePayment"], view["integrityError"], view["version"]) == (True, False, 3)
    assert (view["gatewayReference"], view["failureReason"], view["customerIdentifier"]) == (None, None, None)
    assert views.payment_view(record(), NOW, "major")["version"] == 0
