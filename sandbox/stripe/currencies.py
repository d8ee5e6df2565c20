"""Stripe's money rules as the emulator keeps them (its own copy on purpose: tests/README.md): the
zero- and three-decimal currencies, the steps some amounts must be whole multiples of, and how the
hosted page shows an amount."""

from __future__ import annotations

# Stripe's own lists (they differ slightly from ISO 4217's exponents)
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                          "vuv", "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Whole minor units Stripe still refuses: three-decimal currencies are charged in whole hundredths
# only, and ISK, a two-decimal currency at Stripe (not in ISO 4217), in whole krónur only.
AMOUNT_STEPS = {**{currency: 10 for currency in THREE_DECIMAL}, "isk": 100}


def display_amount(minor: int, currency: str) -> str:
    digits = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    if digits == 0:
        return f"{minor:,} {currency.upper()}"
    whole, fraction = divmod(minor, 10**digits)
    return f"{whole:,}.{fraction:0{digits}d} {currency.upper()}"
