"""The QR endpoints for WeChat Pay Native payments, decoded back to the code URL."""

from __future__ import annotations

import io
from typing import Any

import zxingcpp
from PIL import Image

from tests.conftest import StartRelay
from tests.helpers import create, order


async def test_qr_endpoints_serve_the_code_url(start_relay: StartRelay, wechat_emulator: Any,
                                               alipay_emulator: Any) -> None:
    relay = start_relay(wechat_emulator, alipay_emulator)
    wechat = await create(relay, order(wechat_emulator))
    alipay = await create(relay, order(alipay_emulator))
    base = f"/api/transactions/{wechat['paymentId']}/qrcode"
    async with relay.client() as client:
        png = await client.get(f"{base}.png")
        svg = await client.get(f"{base}.svg")
        other = await client.get(f"/api/transactions/{alipay['paymentId']}/qrcode.png")
        wrong_format = await client.get(f"{base}.gif")
    async with relay.client("not-a-key") as stranger:
        unauthorized = await stranger.get(f"{base}.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert [r.text for r in decoded] == [wechat["paymentUrl"]]
    assert wechat["paymentUrl"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content
    assert (other.status_code, other.json()["code"]) == (404, "no_qr_code")
    assert wrong_format.status_code == 404 and unauthorized.status_code == 401
