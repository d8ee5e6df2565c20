"""Who is signed in to the console: sessions kept in Redis, sign-in limits, CSRF tokens.

A session's cookie holds a random token; Redis holds the session under the token's SHA-256
(``keys.console_session``), so what is in Redis cannot be replayed as a cookie. A session ends
after ``keys.CONSOLE_SESSION_TTL`` without a request, ``SESSION_MAX_S`` after sign-in, at sign-out,
and when its user's entry in PAYRELAY_CONSOLE_USERS is removed or given another password.

Sign-ins are counted per name and per client address for ``keys.CONSOLE_SIGNIN_WINDOW`` from the
first; an attempt over either limit is refused before its password is checked. Counting comes
first, so concurrent attempts cannot slip past the limit; a successful sign-in clears its name's
count (the address's keeps it: many operators behind one address share its limit).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.config import Secret
from service import keys, passwords
from service.store import guarded

SESSION_MAX_S = 12 * 3600
SIGNINS_PER_NAME = 5
SIGNINS_PER_ADDRESS = 30


@dataclass(frozen=True)
class Session:
    name: str
    csrf: str  # the token every state-changing form of this session carries


class SignInRefused(Exception):
    """Too many sign-ins by this name or from this address: ``retry_after`` seconds to wait."""

    def __init__(self, by: str, retry_after: int) -> None:
        super().__init__(f"too many sign-ins {by}")
        self.by = by  # "for this name" | "from this address"
        self.retry_after = retry_after


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


class Sessions:
    def __init__(self, redis: Any, users: Mapping[str, Secret]) -> None:
        self.redis = redis
        self.users = users

    def _fingerprint(self, name: str) -> str | None:
        """Changes when the user's password does (or the user is removed: None)."""
        hashed = self.users.get(name)
        return None if hashed is None else _digest(hashed.reveal())

    async def sign_in(self, name: str, password: str, address: str) -> str | None:
        """A new session's token, None for a wrong name or password; SignInRefused over a limit."""
        by_name = keys.console_signins("name", _digest(name))
        limits = ((by_name, SIGNINS_PER_NAME, "for this name"),
                  (keys.console_signins("address", _digest(address)), SIGNINS_PER_ADDRESS, "from this address"))
        counts = [await self._count(key) for key, _, _ in limits]
        for (attempts, ttl), (_, limit, by) in zip(counts, limits, strict=True):
            if attempts > limit:
                raise SignInRefused(by, max(ttl, 1))
        hashed = self.users.get(name)
        if hashed is None:
            await asyncio.to_thread(passwords.verify_unknown, password)
            return None
        if not await asyncio.to_thread(passwords.verify_password, hashed.reveal(), password):
            return None
        await guarded(self.redis.delete(by_name))
        token = secrets.token_urlsafe(32)
        session = {"name": name, "csrf": secrets.token_urlsafe(32), "user": self._fingerprint(name) or "",
                   "signedInAt": str(int(time.time()))}
        key = keys.console_session(_digest(token))

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=session)
                pipe.expire(key, keys.CONSOLE_SESSION_TTL)
                await pipe.execute()

        await guarded(write())
        return token

    async def _count(self, key: str) -> tuple[int, int]:
        """One more attempt on ``key``: the attempts in its window, and the seconds the window has left."""
        async def count() -> tuple[int, int]:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, keys.CONSOLE_SIGNIN_WINDOW, nx=True)
                pipe.ttl(key)
                attempts, _, ttl = await pipe.execute()
            return int(attempts), int(ttl)

        return await guarded(count())

    async def session_of(self, token: str | None) -> Session | None:
        """The live session of a cookie's token (renewing its idle time), or None."""
        if not token:
            return None
        key = keys.console_session(_digest(token))
        found: dict[str, str] = await guarded(self.redis.hgetall(key))
        name = found.get("name", "")
        signed_in = int(found.get("signedInAt") or 0)
        fingerprint = self._fingerprint(name)
        if fingerprint is None or found.get("user") != fingerprint or time.time() - signed_in > SESSION_MAX_S:
            if found:
                await guarded(self.redis.delete(key))
            return None
        await guarded(self.redis.expire(key, keys.CONSOLE_SESSION_TTL))
        return Session(name=name, csrf=found["csrf"])

    async def sign_out(self, token: str) -> None:
        await guarded(self.redis.delete(keys.console_session(_digest(token))))
