"""A WeChat Pay code URL (``weixin://wxpay/bizpayurl?pr=…``) as a QR code the customer scans.

Always a full-size QR code (never Micro QR, which WeChat does not read), error correction M,
the standard 4-module quiet zone.
"""

from __future__ import annotations

import io

import segno

SCALE = 8  # pixels (or SVG units) per module


def _code(code_url: str) -> segno.QRCode:
    if not code_url:
        raise ValueError("no code URL to encode")
    return segno.make(code_url, error="m", micro=False)


def svg(code_url: str) -> bytes:
    out = io.BytesIO()
    _code(code_url).save(out, kind="svg", scale=SCALE, border=4, title="WeChat Pay")
    return out.getvalue()


def png(code_url: str) -> bytes:
    out = io.BytesIO()
    _code(code_url).save(out, kind="png", scale=SCALE, border=4)
    return out.getvalue()
