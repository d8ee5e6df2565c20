"""Stripe's configuration: ``PAYRELAY_STRIPE_*``."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.config import Env, GatewayConfigError, Secret, secrets

LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


@dataclass(frozen=True)
class StripeConfig:
    secret_key: Secret
    webhook_secrets: tuple[Secret, ...]  # all are accepted: rotation without downtime
    connect_account: str | None
    api_base: str | None  # None: Stripe itself

    @classmethod
    def from_env(cls, env: Env) -> StripeConfig | None:
        found = env.group(
            "Stripe", {"key": "PAYRELAY_STRIPE_SECRET_KEY", "whsec": "PAYRELAY_STRIPE_WEBHOOK_SECRET"}
        )
        if found is None:
            return None
        config = cls(
            secret_key=Secret(found["key"]),
            webhook_secrets=secrets(found["whsec"]),
            connect_account=env.get("PAYRELAY_STRIPE_CONNECT_ACCOUNT"),
            api_base=env.get("PAYRELAY_STRIPE_API_BASE"),
        )
        if config.api_base and config.secret_key.reveal().startswith(LIVE_KEY_PREFIXES):
            raise GatewayConfigError(
                "PAYRELAY_STRIPE_SECRET_KEY is a live key, but PAYRELAY_STRIPE_API_BASE sends it "
                "somewhere other than Stripe: use a test key there, or unset PAYRELAY_STRIPE_API_BASE",
                variable="PAYRELAY_STRIPE_SECRET_KEY",
            )
        return config
