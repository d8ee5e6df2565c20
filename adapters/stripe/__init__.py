"""Stripe Checkout (``stripe-connect``): ``adapter`` holds the mechanics, ``transformers`` Stripe's shapes."""

from adapters.stripe.adapter import StripeAdapter

__all__ = ["StripeAdapter"]
