"""WeChat Pay v3 Native: ``adapter`` (the SDK client, callbacks), ``transformers`` (WeChat-shaped
data: order body, trade_state table, answers), ``qr`` (the code URL as a QR code)."""

from adapters.wechat import qr
from adapters.wechat.adapter import WechatAdapter

__all__ = ["WechatAdapter", "qr"]
