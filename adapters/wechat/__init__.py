"""WeChat Pay v3 Native (``wechat-pay-native``): ``config`` its settings, ``adapter`` (the SDK
client, callbacks), ``transformers`` (WeChat-shaped data: order body, trade_state table, answers),
``qr`` (the code URL as a QR code). Importing the package loads no SDK (``adapters.registry``)."""
