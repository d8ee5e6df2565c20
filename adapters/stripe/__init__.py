"""Stripe Checkout (``stripe-connect``): ``config`` its settings, ``adapter`` the mechanics,
``transformers`` Stripe's shapes. Importing the package loads no SDK (``adapters.registry``)."""
