"""The console users' password hashes: argon2 (what ``payrelay hash-password`` makes: argon2id,
argon2-cffi's defaults, RFC 9106's second recommended profile) and scrypt, in PHC string form.

    $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>
    $scrypt$ln=17,r=8,p=1$<salt>$<hash>      (base64 without padding; passlib's "." for "+" too)

Every comparison is constant-time (argon2's own, ``hmac.compare_digest`` for scrypt), and a name
that is no user is checked against a hash of the same cost (``verify_unknown``), so the time a
sign-in takes does not tell whether the name exists.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = argon2.PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
_ARGON2 = re.compile(r"\$argon2(?:id|i|d)\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")
_SCRYPT = re.compile(r"\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,3}),p=([0-9]{1,2})\$([A-Za-z0-9+/.]+)\$([A-Za-z0-9+/.]+)")
_SCRYPT_MAX_MEMORY = 1 << 29  # 128 · r · N bytes; a configured hash above 512 MiB is a mistake


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``, in PHC string form."""
    return _HASHER.hash(password)


def check_hash(hashed: str) -> None:
    """Raise ValueError saying what is wrong with a stored hash (never quoting it)."""
    if hashed.startswith("$scrypt$"):
        _scrypt_parts(hashed)
        return
    if not hashed.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        raise ValueError("is not an argon2 or scrypt hash (a password in plain text?)")
    try:
        if _ARGON2.fullmatch(hashed) is None:
            raise InvalidHashError
        argon2.extract_parameters(hashed)
    except InvalidHashError:
        raise ValueError("is not a well-formed argon2 hash") from None


def verify_password(hashed: str, password: str) -> bool:
    """Whether ``password`` is the one ``hashed`` was made from (False for a malformed hash)."""
    if hashed.startswith("$scrypt$"):
        try:
            n, r, p, salt, expected = _scrypt_parts(hashed)
        except ValueError:
            return False
        derived = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                                 maxmem=2 * 128 * r * (n + p) + (1 << 20))
        return hmac.compare_digest(derived, expected)
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
        return False


def verify_unknown(password: str) -> bool:
    """What checking a password for a name that is no user costs: as long as for a user, and False."""
    verify_password(_dummy_hash(), password)
    return False


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _scrypt_parts(hashed: str) -> tuple[int, int, int, bytes, bytes]:
    match = _SCRYPT.fullmatch(hashed)
    if match is None:
        raise ValueError("is not a well-formed scrypt hash ($scrypt$ln=…,r=…,p=…$salt$hash)")
    ln, r, p = (int(group) for group in match.group(1, 2, 3))
    if not (1 <= ln <= 24 and r >= 1 and p >= 1) or 128 * r * (1 << ln) > _SCRYPT_MAX_MEMORY:
        raise ValueError("has scrypt parameters out of range (ln 1–24, r and p from 1, at most 512 MiB)")
    try:
        salt, expected = (_b64(part) for part in match.group(4, 5))
    except (binascii.Error, ValueError):
        raise ValueError("has a salt or hash that is not base64") from None
    if len(expected) < 16:
        raise ValueError("has a scrypt hash shorter than 16 bytes")
    return 1 << ln, r, p, salt, expected


def _b64(text: str) -> bytes:
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
