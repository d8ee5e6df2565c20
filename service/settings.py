"""Settings: read from the environment (and an optional env file) once, into frozen objects.

Nothing reads the environment at import time; ``Settings.from_env`` is called by the CLI and the
tests and the result is passed in. Every key/PEM variable also accepts ``<NAME>_FILE``.
Secrets are :class:`adapters.config.Secret` values, masked in every repr. Each gateway's variables
are read by its own config class (``adapters/<gateway>/config.py``), found in ``adapters.registry``.
A configuration with problems raises :class:`SettingsError` holding all of them.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from adapters import registry
from adapters.config import ConfigError, Env, Secret, secrets
from service import passwords

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
LOG_LEVELS = ("INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")  # the first is the default
T = TypeVar("T")
_UNREADABLE: Any = object()  # what a value whose variables have a problem is while the rest is read
CONSOLE_USER = re.compile(r"[A-Za-z0-9._@-]{1,64}")
# console users are separated by whitespace (newlines in a file), or by a comma where the next
# entry starts "name:$": an argon2 hash holds commas of its own ($argon2id$v=19$m=65536,t=3,p=4$…)
_CONSOLE_USERS_SEPARATOR = re.compile(r"\s*,\s*(?=[^\s,:$]+:\$)|\s+")


class SettingsError(ValueError):
    """The configuration cannot be used: every problem found, each naming its variable."""

    def __init__(self, problems: Sequence[ConfigError], partial: Settings | None = None) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = tuple(problems)
        self.partial = partial  # what could be read, defaults standing in for the rest (for `check`)


@dataclass(frozen=True)
class Client:
    """An API client (a storage app, or one Cloudreve site)."""

    name: str
    keys: tuple[Secret, ...]  # two at once while a key is rotated
    notify_url: str | None = None
    notify_secrets: tuple[Secret, ...] = ()  # the first signs; more are accepted by receivers


# One client for every Cloudreve site, so that a query is answered by its order_no alone. A query's
# signature covers only the URL path: neither order_no nor any X-Cr-* header is signed, and
# Cloudreve may send none of those headers on a query (peers implementing this protocol check the
# sign and look the order up by order_no alone). A site id on a query would therefore be a claim
# anyone could make, and one client per site (``cloudreve:<site id>``, as before) made a query
# without it unanswerable. Every site talking to this payrelay signs with the one
# PAYRELAY_CLOUDREVE_KEY, so they are one trust domain anyway: any of them could sign a create in
# another's name. Cloudreve's order numbers carry the time and random digits (v4: 12, v3: 6), so
# sites do not collide in practice; if two ever did, the second create differs at least in its
# notify_url (its own site's) and is refused with 40901, never handed the other site's payment.
# The name has a colon, so no client of PAYRELAY_API_KEYS (``name:key``) can share its orders.
CLOUDREVE_CLIENT = Client(name="cloudreve:any-site", keys=())


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = field(repr=False)  # may carry the Redis password
    public_url: str
    clients: tuple[Client, ...]
    payment_ttl: int = 1800
    amount_unit: str = "major"
    redirect_hosts: frozenset[str] = frozenset()
    retention_days: int = 90
    cloudreve_key: Secret | None = None
    max_body_bytes: int = 256 * 1024  # the cap on every route's body (service.body_limit)
    log_level: str = "INFO"
    log_format: str = "json"  # or "text": readable lines for a terminal (service.logs)
    gateways: Mapping[str, Any] = field(default_factory=dict)  # paymentGatewayType → its config
    console_users: Mapping[str, Secret] = field(default_factory=dict)  # name → password hash; none: no console
    notes: tuple[str, ...] = field(default=(), compare=False)  # what `check` reports

    @property
    def all_clients(self) -> tuple[Client, ...]:
        """Every client whose payments there can be: the configured ones, and Cloudreve's sites'
        when the bridge is on."""
        return (*self.clients, CLOUDREVE_CLIENT) if self.cloudreve_key else self.clients

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 86400

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = None
    ) -> Settings:
        env = dict(read_env_file(env_file)) if env_file else {}
        env.update(os.environ if environ is None else environ)
        return _parse(Env(env))


def read_env_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments skipped; values may be single/double quoted."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigError(f"cannot read env file {path}: {exc.strerror}", variable="--env-file")
        raise SettingsError([problem]) from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise SettingsError([ConfigError(f"{path}:{number}: expected NAME=VALUE", variable="--env-file")])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if raw.strip().partition("=")[2].strip()[0] == '"':
                value = value.replace("\\n", "\n")
        values[name.strip()] = value
    return values


class _Problems:
    """What is wrong with the configuration, gathered so that ``check`` can tell all of it at once."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def attempt(self, read: Callable[[], T], fallback: T) -> T:
        """``read()``; a problem it raises is noted and ``fallback`` stands in for its value."""
        try:
            return read()
        except ConfigError as problem:
            self.found.append(problem)
            return fallback


def _parse(env: Env) -> Settings:
    problems = _Problems()
    notes: list[str] = []
    redis_url = problems.attempt(lambda: env.get("PAYRELAY_REDIS_URL"), None)
    if redis_url is None:
        notes.append("PAYRELAY_REDIS_URL is not set: payments are kept in memory and lost on exit")
    given_url = problems.attempt(lambda: env.get("PAYRELAY_PUBLIC_URL"), None)
    public_url = problems.attempt(lambda: _public_url(given_url), DEFAULT_PUBLIC_URL)
    if given_url is None:
        notes.append(f"PAYRELAY_PUBLIC_URL is not set: gateways are told {public_url}")
    cloudreve_key = problems.attempt(lambda: env.get("PAYRELAY_CLOUDREVE_KEY"), None)
    clients = problems.attempt(lambda: _clients(env), None)
    configs = {
        gateway.name: problems.attempt(functools.partial(gateway.config.from_env, env), _UNREADABLE)
        for gateway in registry.GATEWAYS
    }
    settings = Settings(
        redis_url=redis_url,
        public_url=public_url,
        clients=clients or (),
        payment_ttl=problems.attempt(lambda: env.integer("PAYRELAY_PAYMENT_TTL", 1800), 1800),
        amount_unit=problems.attempt(lambda: _choice(env, "PAYRELAY_AMOUNT_UNIT", ("major", "minor")), "major"),
        redirect_hosts=frozenset(
            h.strip().lower()
            for h in (problems.attempt(lambda: env.get("PAYRELAY_REDIRECT_HOSTS"), None) or "").split(",")
            if h.strip()
        ),
        retention_days=problems.attempt(lambda: env.integer("PAYRELAY_RETENTION_DAYS", 90), 90),
        cloudreve_key=Secret(cloudreve_key) if cloudreve_key else None,
        max_body_bytes=problems.attempt(
            lambda: env.integer("PAYRELAY_MAX_BODY_BYTES", 256 * 1024, minimum=1024), 256 * 1024
        ),
        log_level=problems.attempt(lambda: _choice(env, "PAYRELAY_LOG_LEVEL", LOG_LEVELS, case=str.upper), "INFO"),
        log_format=problems.attempt(lambda: _choice(env, "PAYRELAY_LOG_FORMAT", LOG_FORMATS, case=str.lower), "json"),
        gateways={kind: config for kind, config in configs.items() if config not in (None, _UNREADABLE)},
        console_users=problems.attempt(lambda: _console_users(env), {}),
        notes=tuple(notes),
    )
    if clients == () and settings.cloudreve_key is None:
        problems.found.append(ConfigError(
            "no API client is configured: set PAYRELAY_API_KEYS=client:key "
            "or PAYRELAY_CLIENTS_FILE (or PAYRELAY_CLOUDREVE_KEY for Cloudreve)",
            variable="PAYRELAY_API_KEYS",
        ))
    if all(config is None for config in configs.values()):
        names = ", ".join(f"{g.variables}*" for g in registry.GATEWAYS)
        problems.found.append(ConfigError(
            f"no gateway is configured: set the variables of at least one of {names}",
            variable="PAYRELAY_*",
        ))
    if problems.found:
        raise SettingsError(problems.found, settings)
    return settings


def _choice(env: Env, name: str, allowed: Sequence[str], *, case: Callable[[str], str] = str) -> str:
    """The variable's value, one of ``allowed`` (the first when unset)."""
    value = case(env.get(name) or allowed[0])
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ConfigError(f"{name} must be {choices}, not {value!r}", variable=name)
    return value


def _public_url(given: str | None) -> str:
    url = (given or DEFAULT_PUBLIC_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"PAYRELAY_PUBLIC_URL must be an http(s) URL such as https://pay.example.com, "
                          f"not {url!r}", variable="PAYRELAY_PUBLIC_URL")
    return url


def _console_users(env: Env) -> dict[str, Secret]:
    """PAYRELAY_CONSOLE_USERS: ``name:<argon2 or scrypt hash>`` entries (see _CONSOLE_USERS_SEPARATOR)."""
    variable = "PAYRELAY_CONSOLE_USERS"
    users: dict[str, Secret] = {}
    for number, entry in enumerate(_CONSOLE_USERS_SEPARATOR.split(env.get(variable) or ""), 1):
        if not entry:
            continue
        name, sep, hashed = entry.partition(":")
        if not sep or not CONSOLE_USER.fullmatch(name):
            raise ConfigError(f"{variable}: entry {number} must look like name:<password hash> (a name of "
                              "letters, digits and ._@-; make the hash with `payrelay hash-password`)",
                              variable=variable)
        if name in users:
            raise ConfigError(f"{variable}: the user {name!r} is there twice", variable=variable)
        try:
            passwords.check_hash(hashed)
        except ValueError as exc:
            # a colon is in no hash: the next entry ran into this one (a plain password after a comma)
            merged = " (or the entry after it is no hash: entries are separated by whitespace, or by a " \
                     "comma before the next name:$…)" if ":" in hashed else ""
            raise ConfigError(f"{variable}: the password of {name!r} {exc}{merged}: make one with "
                              "`payrelay hash-password`", variable=variable) from None
        users[name] = Secret(hashed)
    return users


def _clients(env: Env) -> tuple[Client, ...]:
    default_url = env.get("PAYRELAY_NOTIFY_URL")
    default_secrets = secrets(env.get("PAYRELAY_NOTIFY_SECRET"))
    keys: dict[str, list[Secret]] = {}
    for entry in (env.get("PAYRELAY_API_KEYS") or "").split(","):
        if not entry.strip():
            continue
        name, sep, key = entry.strip().partition(":")
        if not sep or not name or not key:
            raise ConfigError("PAYRELAY_API_KEYS must look like client:key,client2:key2",
                              variable="PAYRELAY_API_KEYS")
        keys.setdefault(name, []).append(Secret(key))
    clients = [
        Client(name, tuple(ks), default_url, default_secrets) for name, ks in keys.items()
    ]
    path = env.raw("PAYRELAY_CLIENTS_FILE")  # itself a path, so no _FILE indirection
    if path:
        clients.extend(_clients_file(path, default_url, default_secrets))
    names = [c.name for c in clients]
    if len(names) != len(set(names)):
        raise ConfigError("a client is configured twice (PAYRELAY_API_KEYS and PAYRELAY_CLIENTS_FILE)",
                          variable="PAYRELAY_CLIENTS_FILE")
    return tuple(clients)


def _clients_file(path: str, default_url: str | None, default_secrets: tuple[Secret, ...]) -> list[Client]:
    """JSON: [{"name", "keys": [...], "notifyUrl"?, "notifySecrets"?: [...]}, …]."""

    def problem(message: str) -> ConfigError:
        return ConfigError(f"PAYRELAY_CLIENTS_FILE {message}", variable="PAYRELAY_CLIENTS_FILE")

    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise problem(f"{path}: {exc}") from None
    if not isinstance(entries, list):
        raise problem("must hold a JSON list of clients")
    clients = []
    for index, entry in enumerate(entries):
        try:
            name = str(entry["name"])
            keys = tuple(Secret(str(k)) for k in entry["keys"])
            notify_secrets = tuple(Secret(str(s)) for s in entry.get("notifySecrets", ())) or default_secrets
        except (KeyError, TypeError):
            raise problem(f"entry {index}: needs \"name\" and a list \"keys\"") from None
        if not keys or not name:
            raise problem(f"entry {index}: needs a name and a key")
        clients.append(Client(name, keys, entry.get("notifyUrl") or default_url, notify_secrets))
    return clients
