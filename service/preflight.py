"""What ``payrelay check`` (and ``serve``, before it starts) verifies: it builds everything
``serve`` builds — each gateway's adapter with its keys and URL rules, and, for ``check``, a
connection to Redis — and returns every problem found, each naming the variable to change."""

from __future__ import annotations

from urllib.parse import urlsplit

from adapters import registry
from adapters.config import ConfigError
from adapters.transport import AiohttpTransport
from service import store
from service.settings import Settings


async def problems(settings: Settings, *, reach_redis: bool) -> list[ConfigError]:
    found: list[ConfigError] = []
    transport = AiohttpTransport()
    for kind, config in settings.gateways.items():
        try:
            registry.BY_TYPE[kind].build(config, settings.public_url, transport)
        except ConfigError as refused:
            found.append(refused)
    await transport.aclose()
    if reach_redis and settings.redis_url and (unreachable := await _redis_problem(settings.redis_url)):
        found.append(unreachable)
    return found


async def _redis_problem(url: str) -> ConfigError | None:
    try:
        client = store.connect(url)
    except ValueError as exc:  # redis-py: a URL it cannot parse
        return ConfigError(f"PAYRELAY_REDIS_URL is not a Redis URL ({exc})", variable="PAYRELAY_REDIS_URL")
    try:
        answered = await store.Store(client, 0).ping()
    finally:
        await client.aclose()
    if answered:
        return None
    return ConfigError(f"PAYRELAY_REDIS_URL: Redis at {redacted(url)} does not answer",
                       variable="PAYRELAY_REDIS_URL")


def redacted(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
