from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import money
from tests.helpers import expected_iso_exponent


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("25.00", "USD", 2500), ("25", "USD", 2500), ("25.5", "USD", 2550), ("0.01", "EUR", 1),
     ("300", "JPY", 300), ("1.234", "KWD", 1234), ("1.2", "BHD", 1200), ("89", "CNY", 8900),
     ("1.0001", "CLF", 10001), ("19999999.99", "USD", 1999999999)],
)
def test_to_minor(amount: str, currency: str, minor: int) -> None:
    assert money.to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    "amount",
    ["", " 1.00", "1.00 ", "-1.00", "+1", "0", "0.00", "1e3", "1E2", "1.", ".5", "01.00", "1,00",
     "1.001", "NaN", "Infinity", "１", "1_000", "0x10", "999999999999999.00"],
)
def test_to_minor_rejects(amount: str) -> None:
    with pytest.raises(money.AmountError):
        money.to_minor(amount, "USD")


def test_zero_decimal_currency_rejects_fraction() -> None:
    with pytest.raises(money.AmountError, match="JPY has 0 decimal places"):
        money.to_minor("300.5", "JPY")


def test_unknown_currency() -> None:
    with pytest.raises(money.AmountError, match="ISO 4217"):
        money.to_minor("1", "XYZ")


@pytest.mark.parametrize("value", ["", "0", "-5", "1.5", "01", "1e3", " 5"])
def test_parse_minor_rejects(value: str) -> None:
    with pytest.raises(money.AmountError):
        money.parse_minor(value)


currencies = st.sampled_from(sorted(money.EXPONENTS))


@given(currency=currencies, minor=st.integers(min_value=1, max_value=money.MAX_MINOR - 1))
def test_round_trip(currency: str, minor: int) -> None:
    major = money.to_major(minor, currency)
    assert money.to_minor(major, currency) == minor


@given(currency=currencies, value=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("9999999"),
                                               allow_nan=False, allow_infinity=False, places=4))
def test_exact_against_decimal(currency: str, value: Decimal) -> None:
    digits = expected_iso_exponent(currency)  # ISO's list as written out by hand, not the table under test
    text = format(value.normalize(), "f")
    scaled = value * (10**digits)
    if scaled != scaled.to_integral_value() or scaled == 0:
        with pytest.raises(money.AmountError):
            money.to_minor(text, currency)
    else:
        assert money.to_minor(text, currency) == int(scaled)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: money.to_minor("1,00", "USD"), 'must be a plain positive decimal such as "25.00"'),
    (lambda: money.to_minor("1.001", "USD"), "USD has 2 decimal places; '1.001' has 3"),
    (lambda: money.to_minor("0.00", "USD"), "must be greater than zero"),
    (lambda: money.to_minor("10000000000000.00", "USD"), "is too large"),
    (lambda: money.to_minor("1", "XYZ"), "'XYZ' is not an ISO 4217 currency code"),
    (lambda: money.parse_minor("25.00"), 'must be a positive whole number of minor units such as "2500"'),
    (lambda: money.parse_minor("1000000000000000"), "is too large"),
])
def test_refusals_say_why(call: Any, message: str) -> None:
    """These messages are the 400's detail, after the field name ("amount must be …")."""
    with pytest.raises(money.AmountError) as refused:
        call()
    assert str(refused.value) == message


def test_the_largest_amount_is_just_under_10_to_the_15_minor_units() -> None:
    assert money.parse_minor("2500") == 2500
    assert money.parse_minor("999999999999999") == 999_999_999_999_999
    assert money.to_minor("9999999999999.99", "USD") == 999_999_999_999_999
    assert money.to_minor("999999999999999", "JPY") == 999_999_999_999_999
    for too_large in ("1000000000000000", "1000000000000001"):
        with pytest.raises(money.AmountError, match="too large"):
            money.parse_minor(too_large)
    with pytest.raises(money.AmountError, match="too large"):
        money.to_minor("1000000000000", "KWD")
