"""The ``Payrelay-Signature`` header on notifications to the storage app: sign and verify.

Standard library only, so a receiver can import this file or copy it as is::

    Payrelay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver verifies over the raw body bytes (before any JSON parsing), with every secret it
currently accepts (two at once while a secret is rotated), and refuses timestamps more than
``tolerance`` seconds away from its clock (either way), so a captured notification cannot be
replayed later. Several ``v1=`` entries may appear; one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

__all__ = ["HEADER", "SignatureError", "sign", "verify"]

HEADER = "Payrelay-Signature"
SCHEME = "v1"


class SignatureError(ValueError):
    """The notification's signature was refused; the message says why (never a secret)."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    return f"t={int(timestamp)},{SCHEME}={_digest(secret, int(timestamp), body)}"


def verify(secrets: Iterable[str], header: str | None, body: bytes, tolerance: int = 300,
           now: float | None = None) -> int:
    """Accept ``body`` signed by one of ``secrets`` within ``tolerance`` seconds of ``now``;
    answer the signature's timestamp, or raise :class:`SignatureError`."""
    if not header:
        raise SignatureError(f"the {HEADER} header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"the {HEADER} header must look like t=<unix>,v1=<hex>")
        if name == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise SignatureError(f"the {HEADER} timestamp is not a Unix time")
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError(f"the {HEADER} header must carry t= and {SCHEME}=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"the signature's timestamp {timestamp} is more than {tolerance} s from now ({int(current)})"
        )
    keys = [secret for secret in secrets if secret]
    if not keys:
        raise SignatureError("no secret to verify with")
    for secret in keys:
        expected = _digest(secret, timestamp, body).encode("ascii")
        if any(hmac.compare_digest(expected, s.encode("ascii", "replace")) for s in signatures):
            return timestamp
    raise SignatureError("no signature matches: a different secret, or the body was changed")
