"""Alipay's configuration: ``PAYRELAY_ALIPAY_*``."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.config import Env, Secret


@dataclass(frozen=True)
class AlipayConfig:
    app_id: str
    private_key: Secret
    alipay_public_key: str
    gateway_url: str | None  # None: Alipay's production gateway
    seller_id: str | None = None  # the merchant's PID (2088…): notifications must name it when set

    @classmethod
    def from_env(cls, env: Env) -> AlipayConfig | None:
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
        return cls(
            app_id=found["app_id"],
            private_key=Secret(found["private_key"]),
            alipay_public_key=found["public_key"],
            gateway_url=env.get("PAYRELAY_ALIPAY_GATEWAY_URL"),
            seller_id=env.get("PAYRELAY_ALIPAY_SELLER_ID"),
        )
