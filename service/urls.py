"""Where a stored payment's ``paymentUrl`` comes from.

A gateway whose create makes no call (``Adapter.creates_offline``: Alipay page pay signs its
cashier URL) makes the same URL again from the same request (``Adapter.payment_url``), so the
records of its payments keep none: that URL is about 900 bytes, most of what a waiting payment
would cost in Redis (tests/test_memory.py). Whatever shows a payment (the API's answers, its
notifications, Cloudreve's create answer, the console's payment page) gets it made again, here,
from the record; reads that show nothing (a close, a sync, a refund) go without. The other
gateways' URLs are the gateway's own and kept as given. Records stored before kept every URL,
and still answer the one they kept.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping

from adapters.base import Adapter, CreateRequest, Money
from service.model import Payment


def create_request_of(payment: Payment) -> CreateRequest:
    """The request its adapter's create was given (and is given again on a resumed create)."""
    return CreateRequest(
        payment_id=payment.payment_id,
        amount=Money(payment.amount, payment.currency),
        description=payment.description,
        complete_url=payment.complete_url,
        cancel_url=payment.cancel_url,
        expires_at=payment.expires_at // 1000,
        customer=payment.customer_identifier,
        online=payment.online,
        save_method=payment.save_method,
        created_at=payment.created_at // 1000,
    )


# URLs made again, kept by paymentId (what they are made from never changes): a storage app polls
# the payment its customer is paying, and a signature costs ~0.3 ms
MADE_KEPT = 4096


class PaymentUrls:
    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self.rebuilt = {name: adapter for name, adapter in adapters.items() if adapter.creates_offline}
        self._made: OrderedDict[str, str] = OrderedDict()  # the most recently shown last

    def kept(self, payment: Payment) -> Payment:
        """The payment as its record keeps it: without a URL its adapter makes again (the URL
        its create made is the first one remembered: its notification will show it)."""
        if payment.gateway not in self.rebuilt:
            return payment
        if payment.payment_url is not None:
            self._remember(payment.payment_id, payment.payment_url)
        return dataclasses.replace(payment, payment_url=None)

    def shown(self, payment: Payment) -> Payment:
        """The payment with its URL (made again where its record keeps none). One never opened
        (still creating, or closed by a recovery that found nothing) has none; nor has one of a
        gateway no longer configured."""
        adapter = self.rebuilt.get(payment.gateway)
        if payment.payment_url is not None or adapter is None or payment.opened_at is None:
            return payment
        url = self._made.get(payment.payment_id)
        if url is not None:
            self._made.move_to_end(payment.payment_id)
        else:
            url = adapter.payment_url(create_request_of(payment))
            if url is None:
                return payment
            self._remember(payment.payment_id, url)
        return dataclasses.replace(payment, payment_url=url)

    def _remember(self, payment_id: str, url: str) -> None:
        self._made[payment_id] = url
        if len(self._made) > MADE_KEPT:
            self._made.popitem(last=False)
