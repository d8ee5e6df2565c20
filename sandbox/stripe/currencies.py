"""Stripe's money rules as the emulator keeps them (its own copy on purpose: tests/README.md): the
zero- and three-decimal currencies, the steps some amounts must be whole multiples of, and how
amounts are written: ``display_amount`` in the API's messages, ``checkout_amount`` on the hosted
page."""

from __future__ import annotations

# Stripe's own lists (they differ slightly from ISO 4217's exponents)
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                          "vuv", "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Whole minor units Stripe still refuses: three-decimal currencies are charged in whole hundredths
# only, and ISK, a two-decimal currency at Stripe (not in ISO 4217), in whole krónur only.
AMOUNT_STEPS = {**{currency: 10 for currency in THREE_DECIMAL}, "isk": 100}
# The symbols Checkout shows in English (CLDR's, the US dollar as it is written outside the US);
# every other currency is written with its code.
SYMBOLS = {"aud": "A$", "brl": "R$", "cad": "CA$", "cny": "CN¥", "eur": "€", "gbp": "£", "hkd": "HK$", "ils": "₪",
           "inr": "₹", "jpy": "¥", "krw": "₩", "mxn": "MX$", "nzd": "NZ$", "php": "₱", "twd": "NT$", "usd": "US$",
           "vnd": "₫", "xaf": "FCFA", "xcd": "EC$", "xof": "F\u00a0CFA", "xpf": "CFPF"}


def _number(minor: int, currency: str) -> str:
    """``minor`` in the currency's major unit with Stripe's digits: 123456 usd → 1,234.56."""
    digits = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    if digits == 0:
        return f"{minor:,}"
    whole, fraction = divmod(minor, 10**digits)
    return f"{whole:,}.{fraction:0{digits}d}"


def display_amount(minor: int, currency: str) -> str:
    """1234.56 USD, 300 JPY."""
    return f"{_number(minor, currency)} {currency.upper()}"


def checkout_amount(minor: int, currency: str) -> str:
    """US$1,234.56, ¥300, CHF 12.00: a letter next to the digits is set apart by a no-break space."""
    symbol = SYMBOLS.get(currency, currency.upper())
    return symbol + ("\u00a0" if symbol[-1].isalpha() else "") + _number(minor, currency)
