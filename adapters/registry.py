"""The gateways payrelay speaks, in one table: each ``paymentGatewayType`` with its config class,
its adapter and its emulator. Settings, ``payrelay check``, the OpenAPI document, the demo and the
contract tests iterate this table; adding a gateway is one entry here and one package beside it.

The ``paymentGatewayType`` is a gateway's one name (metrics, logs, configuration reports); its
webhook path segment (``/webhooks/<webhook>``) is part of the URLs gateways are registered with.
Adapters and emulators are named by import path and imported when used, so a process loads only
the SDKs of the gateways it has configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.alipay.config import AlipayConfig
from adapters.stripe.config import StripeConfig
from adapters.transport import AiohttpTransport, Transport
from adapters.wechat.config import WechatConfig

if TYPE_CHECKING:
    from adapters.base import Adapter


@dataclass(frozen=True)
class Gateway:
    name: str  # the paymentGatewayType: its one name
    label: str  # for people: "WeChat Pay"
    webhook: str  # the path segment of its webhook
    variables: str  # the prefix of its configuration's names
    config: type[Any]  # a class with ``from_env(adapters.config.Env) -> config | None``
    adapter_path: str  # "module:Class", built as Class(config, public_url, transport)
    emulator_path: str  # "module:Class", the sandbox that speaks this gateway's API

    def adapter(self) -> type[Adapter]:
        return _load(self.adapter_path)

    def build(self, config: Any, public_url: str, transport: Transport) -> Adapter:
        """Its adapter; a config it cannot use (a key that does not load…) is GatewayConfigError."""
        build: Any = self.adapter()  # each adapter's constructor takes its own config class
        return build(config, public_url, transport)

    def emulator(self) -> type[Any]:
        return _load(self.emulator_path)


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


STRIPE = Gateway("stripe-connect", "Stripe", "stripe", "PAYRELAY_STRIPE_", StripeConfig,
                 "adapters.stripe.adapter:StripeAdapter", "sandbox.stripe:StripeEmulator")
ALIPAY = Gateway("alipay-page", "Alipay", "alipay", "PAYRELAY_ALIPAY_", AlipayConfig,
                 "adapters.alipay.adapter:AlipayAdapter", "sandbox.alipay:AlipayEmulator")
WECHAT = Gateway("wechat-pay-native", "WeChat Pay", "wechat", "PAYRELAY_WECHAT_", WechatConfig,
                 "adapters.wechat.adapter:WechatAdapter", "sandbox.wechat:WechatEmulator")

GATEWAYS: tuple[Gateway, ...] = (STRIPE, ALIPAY, WECHAT)
BY_TYPE = {gateway.name: gateway for gateway in GATEWAYS}
GATEWAY_TYPES = tuple(BY_TYPE)


def build_adapters(configs: Mapping[str, Any], public_url: str) -> dict[str, Adapter]:
    """The adapters of the configured gateways, by paymentGatewayType, on one shared transport
    (each adapter's ``aclose`` closes it; closing it again does nothing)."""
    transport = AiohttpTransport()
    return {kind: BY_TYPE[kind].build(config, public_url, transport) for kind, config in configs.items()}
