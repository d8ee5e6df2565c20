"""Exact conversion between decimal amounts in a currency's major unit and integer minor units."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping

import iso4217

# ISO 4217's active codes with their minor-unit exponent, from the published list (SIX, the
# maintenance agency) that the pinned iso4217 package ships unchanged. Codes whose minor unit is
# "N.A." (gold XAU, the SDR XDR, the testing code XTS…) have no amount in minor units and are not
# currencies payrelay takes. Gateways whose amounts differ from ISO keep that as data in their own
# adapter (adapters/stripe/transformers.py); a test checks every exception is named there.
ISO_PUBLISHED = iso4217.__published__
EXPONENTS: Mapping[str, int] = types.MappingProxyType({
    currency.code: currency.exponent for currency in iso4217.Currency if currency.exponent is not None
})

DECIMAL = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")
INTEGER = re.compile(r"[1-9][0-9]*")
MAX_MINOR = 10**15  # far beyond any gateway's limit; keeps amounts exact in Lua's doubles too


class AmountError(ValueError):
    pass


def exponent(currency: str) -> int:
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise AmountError(f"{currency!r} is not an ISO 4217 currency code") from None


def to_minor(amount: str, currency: str) -> int:
    """'25.00' USD → 2500. Rejects blanks, signs, exponents, zero and excess fraction digits."""
    digits = exponent(currency)
    match = DECIMAL.fullmatch(amount)
    if match is None:
        raise AmountError("must be a plain positive decimal such as \"25.00\"")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > digits:
        raise AmountError(f"{currency} has {digits} decimal places; {amount!r} has {len(fraction)}")
    minor = int(whole) * 10**digits + int(fraction.ljust(digits, "0") or "0")
    return _checked(minor)


def parse_minor(amount: str) -> int:
    """'2500' → 2500, for PAYRELAY_AMOUNT_UNIT=minor."""
    if INTEGER.fullmatch(amount) is None:
        raise AmountError("must be a positive whole number of minor units such as \"2500\"")
    return _checked(int(amount))


def _checked(minor: int) -> int:
    if minor <= 0:
        raise AmountError("must be greater than zero")
    if minor >= MAX_MINOR:
        raise AmountError("is too large")
    return minor


def to_major(minor: int, currency: str) -> str:
    """2500 USD → '25.00'; 300 JPY → '300'."""
    digits = exponent(currency)
    if digits == 0:
        return str(minor)
    whole, fraction = divmod(minor, 10**digits)
    return f"{whole}.{fraction:0{digits}d}"
