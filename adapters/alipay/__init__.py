"""Alipay page pay: ``adapter`` holds the mechanics, ``transformers`` what is shaped like Alipay."""

from adapters.alipay.adapter import AlipayAdapter

__all__ = ["AlipayAdapter"]
