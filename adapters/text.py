"""Text cut to a gateway's length limit, counted the way that gateway counts, never splitting a
character (a cut that split one would send bytes that are not text, which gateways refuse)."""

from __future__ import annotations


def cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that fits ``limit`` bytes of UTF-8."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")  # drops only a split last character


def cut_utf16(text: str, limit: int) -> str:
    """The longest prefix of at most ``limit`` UTF-16 code units, what Java's ``String.length()``
    counts: a character outside the BMP (an emoji) is two. Never more characters than ``limit``."""
    return text.encode("utf-16-le")[: 2 * limit].decode("utf-16-le", "ignore")  # a split pair dropped
