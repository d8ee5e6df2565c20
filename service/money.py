"""Exact conversion between decimal amounts in a currency's major unit and integer minor units."""

from __future__ import annotations

import re

# ISO 4217 active codes, by minor-unit exponent. Everything not listed under 0, 3 or 4 has 2.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP "
    "GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
    "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK "
    "NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD "
    "SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG "
    "YER ZAR ZMW ZWG ZWL"
)

EXPONENTS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}

_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_INTEGER = re.compile(r"[1-9][0-9]*")
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
    match = _DECIMAL.fullmatch(amount)
    if match is None:
        raise AmountError("must be a plain positive decimal such as \"25.00\"")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > digits:
        raise AmountError(f"{currency} has {digits} decimal places; {amount!r} has {len(fraction)}")
    minor = int(whole) * 10**digits + int(fraction.ljust(digits, "0") or "0")
    return _checked(minor)


def parse_minor(amount: str) -> int:
    """'2500' → 2500, for PAYRELAY_AMOUNT_UNIT=minor."""
    if _INTEGER.fullmatch(amount) is None:
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
