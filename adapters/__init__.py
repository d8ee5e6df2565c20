"""Gateway adapters behind one interface (``adapters.base``), built from settings, all on one
HTTP transport (``adapters.transport``): each adapter's ``aclose`` closes it, once for all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.base import Adapter
from adapters.transport import HttpxTransport

if TYPE_CHECKING:
    from service.settings import Settings

GATEWAY_TYPES = ("stripe-connect", "alipay-page", "wechat-pay-native")


def build_adapters(settings: Settings) -> dict[str, Adapter]:
    """The enabled adapters by paymentGatewayType (a gateway is enabled when configured)."""
    adapters: dict[str, Adapter] = {}
    transport = HttpxTransport()
    if settings.stripe:
        from adapters.stripe import StripeAdapter

        adapters[StripeAdapter.gateway_type] = StripeAdapter(settings.stripe, settings.public_url, transport)
    if settings.alipay:
        from adapters.alipay import AlipayAdapter

        adapters[AlipayAdapter.gateway_type] = AlipayAdapter(settings.alipay, settings.public_url, transport)
    if settings.wechat:
        from adapters.wechat import WechatAdapter

        adapters[WechatAdapter.gateway_type] = WechatAdapter(settings.wechat, settings.public_url, transport)
    return adapters
