"""Alipay page pay (``alipay-page``): ``config`` its settings, ``adapter`` the mechanics,
``transformers`` what is shaped like Alipay. Importing the package loads no SDK (``adapters.registry``)."""
