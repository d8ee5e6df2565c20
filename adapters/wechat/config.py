"""WeChat Pay's configuration: ``PAYRELAY_WECHAT_*``."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.config import Env, GatewayConfigError, Secret


@dataclass(frozen=True)
class WechatConfig:
    mchid: str
    appid: str
    private_key: Secret
    cert_serial_no: str
    apiv3_key: Secret
    public_key: str
    public_key_id: str
    api_base: str | None  # None: WeChat Pay itself

    @classmethod
    def from_env(cls, env: Env) -> WechatConfig | None:
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
            raise GatewayConfigError("PAYRELAY_WECHAT_APIV3_KEY must be exactly 32 bytes",
                                     variable="PAYRELAY_WECHAT_APIV3_KEY")
        return cls(
            mchid=found["mchid"],
            appid=found["appid"],
            private_key=Secret(found["private_key"]),
            cert_serial_no=found["serial"],
            apiv3_key=Secret(found["apiv3"]),
            public_key=found["public_key"],
            public_key_id=found["public_key_id"],
            api_base=env.get("PAYRELAY_WECHAT_API_BASE"),
        )
