"""Settings: read from the environment (and an optional env file) once, into frozen objects.

Nothing reads the environment at import time; ``Settings.from_env`` is called by the CLI and the
tests and the result is passed in. Every key/PEM variable also accepts ``<NAME>_FILE``.
Secrets are :class:`Secret` values, masked in every repr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """The configuration cannot be used; the message says what to change, never a secret."""


class Secret:
    """A secret string; ``repr``/``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Client:
    """An API client (a storage app, or one Cloudreve site)."""

    name: str
    keys: tuple[Secret, ...]  # two at once while a key is rotated
    notify_url: str | None = None
    notify_secrets: tuple[Secret, ...] = ()  # the first signs; more are accepted by receivers


@dataclass(frozen=True)
class StripeConfig:
    secret_key: Secret
    webhook_secrets: tuple[Secret, ...]  # all are accepted: rotation without downtime
    connect_account: str | None
    api_base: str | None


@dataclass(frozen=True)
class AlipayConfig:
    app_id: str
    private_key: Secret
    alipay_public_key: str
    gateway_url: str | None
    seller_id: str | None = None  # the merchant's PID (2088…): notifications must name it when set


@dataclass(frozen=True)
class WechatConfig:
    mchid: str
    appid: str
    private_key: Secret
    cert_serial_no: str
    apiv3_key: Secret
    public_key: str
    public_key_id: str
    api_base: str | None


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
    stripe: StripeConfig | None = None
    alipay: AlipayConfig | None = None
    wechat: WechatConfig | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)  # what `check` reports

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 86400

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = None
    ) -> Settings:
        env = dict(read_env_file(env_file)) if env_file else {}
        env.update(os.environ if environ is None else environ)
        return _parse(_Env(env))


def read_env_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments skipped; values may be single/double quoted."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read env file {path}: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if raw.strip().partition("=")[2].strip()[0] == '"':
                value = value.replace("\\n", "\n")
        values[name.strip()] = value
    return values


class _Env:
    def __init__(self, env: dict[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str | None:
        """NAME, or the contents of the file named by NAME_FILE; empty counts as unset."""
        value = self._env.get(name)
        if value:
            return value
        path = self._env.get(name + "_FILE")
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        return None

    def raw(self, name: str) -> str | None:
        return self._env.get(name) or None

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {value!r}") from None
        if number < minimum:
            raise SettingsError(f"{name} must be at least {minimum}")
        return number

    def group(self, label: str, required: Mapping[str, str]) -> dict[str, str] | None:
        """All of a gateway's required variables, or None when none is set; some → error."""
        found = {key: self.get(name) for key, name in required.items()}
        present = {k: v for k, v in found.items() if v is not None}
        if not present:
            return None
        if len(present) < len(found):
            missing = ", ".join(required[k] for k in found if found[k] is None)
            raise SettingsError(f"{label} is partly configured: also set {missing}")
        return present  # type: ignore[return-value]


def _secrets(value: str | None) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in (value or "").split(",") if part.strip())


def _parse(env: _Env) -> Settings:
    notes: list[str] = []
    redis_url = env.get("PAYRELAY_REDIS_URL")
    if redis_url is None:
        notes.append("PAYRELAY_REDIS_URL is not set: payments are kept in memory and lost on exit")
    public_url = (env.get("PAYRELAY_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")
    if env.get("PAYRELAY_PUBLIC_URL") is None:
        notes.append(f"PAYRELAY_PUBLIC_URL is not set: gateways are told {public_url}")
    amount_unit = env.get("PAYRELAY_AMOUNT_UNIT") or "major"
    if amount_unit not in ("major", "minor"):
        raise SettingsError("PAYRELAY_AMOUNT_UNIT must be 'major' or 'minor'")
    settings = Settings(
        redis_url=redis_url,
        public_url=public_url,
        clients=_clients(env),
        payment_ttl=env.integer("PAYRELAY_PAYMENT_TTL", 1800),
        amount_unit=amount_unit,
        redirect_hosts=frozenset(
            h.strip().lower() for h in (env.get("PAYRELAY_REDIRECT_HOSTS") or "").split(",") if h.strip()
        ),
        retention_days=env.integer("PAYRELAY_RETENTION_DAYS", 90),
        cloudreve_key=Secret(key) if (key := env.get("PAYRELAY_CLOUDREVE_KEY")) else None,
        max_body_bytes=env.integer("PAYRELAY_MAX_BODY_BYTES", 256 * 1024, minimum=1024),
        stripe=_stripe(env),
        alipay=_alipay(env),
        wechat=_wechat(env),
        notes=tuple(notes),
    )
    if not settings.clients and settings.cloudreve_key is None:
        raise SettingsError(
            "no API client is configured: set PAYRELAY_API_KEYS=client:key "
            "or PAYRELAY_CLIENTS_FILE (or PAYRELAY_CLOUDREVE_KEY for Cloudreve)"
        )
    if not (settings.stripe or settings.alipay or settings.wechat):
        raise SettingsError(
            "no gateway is configured: set the PAYRELAY_STRIPE_*, PAYRELAY_ALIPAY_* "
            "or PAYRELAY_WECHAT_* variables of at least one"
        )
    return settings


def _clients(env: _Env) -> tuple[Client, ...]:
    default_url = env.get("PAYRELAY_NOTIFY_URL")
    default_secrets = _secrets(env.get("PAYRELAY_NOTIFY_SECRET"))
    keys: dict[str, list[Secret]] = {}
    for entry in (env.get("PAYRELAY_API_KEYS") or "").split(","):
        if not entry.strip():
            continue
        name, sep, key = entry.strip().partition(":")
        if not sep or not name or not key:
            raise SettingsError("PAYRELAY_API_KEYS must look like client:key,client2:key2")
        keys.setdefault(name, []).append(Secret(key))
    clients = [
        Client(name, tuple(ks), default_url, default_secrets) for name, ks in keys.items()
    ]
    path = env.raw("PAYRELAY_CLIENTS_FILE")  # itself a path, so no _FILE indirection
    if path:
        clients.extend(_clients_file(path, default_url, default_secrets))
    names = [c.name for c in clients]
    if len(names) != len(set(names)):
        raise SettingsError("a client is configured twice (PAYRELAY_API_KEYS and PAYRELAY_CLIENTS_FILE)")
    return tuple(clients)


def _clients_file(path: str, default_url: str | None, default_secrets: tuple[Secret, ...]) -> list[Client]:
    """JSON: [{"name", "keys": [...], "notifyUrl"?, "notifySecrets"?: [...]}, …]."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"PAYRELAY_CLIENTS_FILE {path}: {exc}") from None
    if not isinstance(entries, list):
        raise SettingsError("PAYRELAY_CLIENTS_FILE must hold a JSON list of clients")
    clients = []
    for index, entry in enumerate(entries):
        try:
            name = str(entry["name"])
            keys = tuple(Secret(str(k)) for k in entry["keys"])
            secrets = tuple(Secret(str(s)) for s in entry.get("notifySecrets", ())) or default_secrets
        except (KeyError, TypeError):
            raise SettingsError(
                f"PAYRELAY_CLIENTS_FILE entry {index}: needs \"name\" and a list \"keys\""
            ) from None
        if not keys or not name:
            raise SettingsError(f"PAYRELAY_CLIENTS_FILE entry {index}: needs a name and a key")
        clients.append(Client(name, keys, entry.get("notifyUrl") or default_url, secrets))
    return clients


def _stripe(env: _Env) -> StripeConfig | None:
    found = env.group(
        "Stripe",
        {"key": "PAYRELAY_STRIPE_SECRET_KEY", "whsec": "PAYRELAY_STRIPE_WEBHOOK_SECRET"},
    )
    if found is None:
        return None
    return StripeConfig(
        secret_key=Secret(found["key"]),
        webhook_secrets=_secrets(found["whsec"]),
        connect_account=env.get("PAYRELAY_STRIPE_CONNECT_ACCOUNT"),
        api_base=env.get("PAYRELAY_STRIPE_API_BASE"),
    )


def _alipay(env: _Env) -> AlipayConfig | None:
    found = env.group(
        "Alipay",
        {
            "app_id": "PAYRELAY_ALIPAY_APP_ID",
            "private_key": "PAYRELAY_ALIPAY_PRIVATE_KEY",
            "public_key": "PAYRELAY_ALIPAY_PUBLIC_KEY",
        },
    )
    if found is None:
        return None
    return AlipayConfig(
        app_id=found["app_id"],
        private_key=Secret(found["private_key"]),
        alipay_public_key=found["public_key"],
        gateway_url=env.get("PAYRELAY_ALIPAY_GATEWAY_URL"),
        seller_id=env.get("PAYRELAY_ALIPAY_SELLER_ID") or None,
    )


def _wechat(env: _Env) -> WechatConfig | None:
    found = env.group(
        "WeChat Pay",
        {
            "mchid": "PAYRELAY_WECHAT_MCHID",
            "appid": "PAYRELAY_WECHAT_APPID",
            "private_key": "PAYRELAY_WECHAT_PRIVATE_KEY",
            "serial": "PAYRELAY_WECHAT_CERT_SERIAL_NO",
            "apiv3": "PAYRELAY_WECHAT_APIV3_KEY",
            "public_key": "PAYRELAY_WECHAT_PUBLIC_KEY",
            "public_key_id": "PAYRELAY_WECHAT_PUBLIC_KEY_ID",
        },
    )
    if found is None:
        return None
    if len(found["apiv3"].encode()) != 32:
        raise SettingsError("PAYRELAY_WECHAT_APIV3_KEY must be exactly 32 bytes")
    return WechatConfig(
        mchid=found["mchid"],
        appid=found["appid"],
        private_key=Secret(found["private_key"]),
        cert_serial_no=found["serial"],
        apiv3_key=Secret(found["apiv3"]),
        public_key=found["public_key"],
        public_key_id=found["public_key_id"],
        api_base=env.get("PAYRELAY_WECHAT_API_BASE"),
    )
