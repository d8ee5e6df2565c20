"""Cloudreve v4 request signing: how Cloudreve signs calls to a custom payment provider.

Cloudreve (Go) signs with the communication key (``PAYRELAY_CLOUDREVE_KEY``)::

    sig  = urlsafe_b64encode(HMAC-SHA256(key, content + ":" + str(expires)))   # with "=" padding
    POST   Authorization: Bearer Cr <sig>:<expires>
           content = json.Marshal(struct{Path, Header, Body string})           # Go's encoding/json
    GET    ?sign=<sig>:<expires>
           content = the URL path alone (the query is not signed)

``Header`` is every ``X-Cr-*`` request header (except ``X-Cr-Filename``, which Cloudreve's signer
skips) as ``Name=Value`` with Go's canonical name, sorted bytewise, joined by ``&``. ``expires`` is
an absolute Unix time. Reproducing the content byte for byte means reproducing Go: it escapes
``&`` ``<`` ``>`` U+2028 U+2029 as ``\\u00XX``/``\\u20XX``, writes other non-ASCII raw, and turns
each byte of invalid UTF-8 into the six characters ``\\ufffd``. Go 1.22+ writes ``\\b``/``\\f`` as
short escapes, like Python's json (older Go wrote ``\\u0008``/``\\u000c``).

Header values are taken as an ASGI server hands them over (Starlette: the raw bytes decoded as
latin-1), so they are turned back into bytes with latin-1 where possible, else UTF-8.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping

__all__ = [
    "AUTHORIZATION_PREFIX",
    "CloudreveAuthError",
    "canonical_header_name",
    "post_content",
    "sign_content",
    "sign_get",
    "sign_post",
    "signed_headers",
    "verify_get",
    "verify_post",
]

AUTHORIZATION_PREFIX = "Bearer Cr "
_HEADER_PREFIX = "X-Cr-"
_UNSIGNED_HEADERS = frozenset({"X-Cr-Filename"})
# Go's textproto validHeaderFieldByte: the RFC 7230 token characters.
_TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}=")  # 32 bytes, URL-safe base64 with padding
_EXPIRES = re.compile(r"[0-9]{1,19}")
_GO_ESCAPES = {
    "&": "\\u0026",
    "<": "\\u003c",
    ">": "\\u003e",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
    **{chr(0xDC00 + b): "\\ufffd" for b in range(0x80, 0x100)},  # surrogateescape'd invalid bytes
}
_GO_ESCAPED = re.compile("[&<>\u2028\u2029\udc80-\udcff]")


class CloudreveAuthError(Exception):
    """A Cloudreve request's signature was refused. ``reason``: missing, malformed, expired or
    bad_signature; the message says what was wrong and never contains the key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def canonical_header_name(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-cr-site-url`` → ``X-Cr-Site-Url``. A name
    with a byte outside the token characters (a space, non-ASCII…) is left as it is."""
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or any(b not in _TOKEN_BYTES for b in raw):
        return name
    out, upper = [], True
    for char in name:
        out.append(char.upper() if upper else char.lower())
        upper = char == "-"
    return "".join(out)


def signed_headers(headers: Mapping[str, str]) -> str:
    """The ``Header`` field: ``X-Cr-*`` headers as ``Name=Value``, sorted, joined by ``&``. When a
    name comes twice (in any case), the first value counts, as with Go's ``Header.Get``."""
    return _header_bytes(headers).decode("utf-8", "surrogateescape")


def post_content(path: str | bytes, headers: Mapping[str, str], body: str | bytes) -> str:
    """What Cloudreve signs for a POST: Go's ``json.Marshal`` of ``{Path, Header, Body}``."""
    fields = (("Path", _as_bytes(path)), ("Header", _header_bytes(headers)), ("Body", _as_bytes(body)))
    return "{" + ",".join(f'"{name}":{_go_json_string(value)}' for name, value in fields) + "}"


def sign_content(key: bytes | str, content: str | bytes, expires: int) -> str:
    """URL-safe base64 (padded) of HMAC-SHA256(key, content + ":" + expires)."""
    message = _as_bytes(content) + b":" + str(int(expires)).encode("ascii")
    digest = hmac.new(_as_bytes(key), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def sign_post(key: bytes | str, path: str | bytes, headers: Mapping[str, str], body: str | bytes, expires: int) -> str:
    """The ``Authorization`` header value Cloudreve sends with a POST."""
    return f"{AUTHORIZATION_PREFIX}{sign_content(key, post_content(path, headers, body), expires)}:{expires}"


def sign_get(key: bytes | str, path: str | bytes, expires: int) -> str:
    """The ``sign`` query value Cloudreve sends with a GET: only the path is signed."""
    return f"{sign_content(key, path, expires)}:{expires}"


def verify_post(
    key: bytes | str,
    path: str | bytes,
    headers: Mapping[str, str],
    body: str | bytes,
    authorization: str | None,
    now: float | None = None,
) -> None:
    """Accept a signed POST or raise :class:`CloudreveAuthError`."""
    if not authorization:
        raise CloudreveAuthError("missing", "the Authorization header is missing")
    if not authorization.startswith(AUTHORIZATION_PREFIX):
        raise CloudreveAuthError("malformed", "the Authorization header must be 'Bearer Cr <signature>:<expires>'")
    token = authorization[len(AUTHORIZATION_PREFIX) :]
    _verify(key, post_content(path, headers, body), token, now, "the Authorization header")


def verify_get(key: bytes | str, path: str | bytes, sign: str | None, now: float | None = None) -> None:
    """Accept a signed GET (its ``sign`` query value) or raise :class:`CloudreveAuthError`."""
    if not sign:
        raise CloudreveAuthError("missing", "the sign query parameter is missing")
    _verify(key, path, sign, now, "the sign query parameter")


def _verify(key: bytes | str, content: str | bytes, token: str, now: float | None, where: str) -> None:
    signature, _, expires_text = token.rpartition(":")
    if not _SIGNATURE.fullmatch(signature) or not _EXPIRES.fullmatch(expires_text):
        raise CloudreveAuthError("malformed", f"{where} must be '<signature>:<expires>'")
    expires = int(expires_text)
    current = time.time() if now is None else now
    if expires < current:  # Cloudreve's own check; its "0 = never expires" is refused here too
        raise CloudreveAuthError("expired", f"the signature expired at {expires} (now {int(current)})")
    expected = sign_content(key, content, expires)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise CloudreveAuthError(
            "bad_signature",
            "the signature does not match: a different communication key, or the request was changed",
        )


def _header_bytes(headers: Mapping[str, str]) -> bytes:
    chosen: dict[str, bytes] = {}
    for name, value in headers.items():
        canonical = canonical_header_name(name)
        if canonical.startswith(_HEADER_PREFIX) and canonical not in _UNSIGNED_HEADERS:
            chosen.setdefault(canonical, _wire_bytes(value))
    return b"&".join(sorted(_wire_bytes(name) + b"=" + value for name, value in chosen.items()))


def _wire_bytes(text: str) -> bytes:
    """Header text back to the bytes on the wire: latin-1 as ASGI decodes them, else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _go_json_string(data: bytes) -> str:
    """A JSON string exactly as Go's encoding/json writes it (HTML escaping on)."""
    # surrogateescape keeps each invalid byte as one lone surrogate, which becomes Go's \ufffd.
    text = json.dumps(data.decode("utf-8", "surrogateescape"), ensure_ascii=False)
    return _GO_ESCAPED.sub(lambda match: _GO_ESCAPES[match.group()], text)
