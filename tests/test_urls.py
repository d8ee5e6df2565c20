"""service.urls: a URL made again is made once for a payment that is read again and again, and
only where a payment is shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from adapters.base import Adapter, CreateRequest
from sandbox.base import Emulator
from service import urls
from service.runtime import Runtime
from service.urls import PaymentUrls
from tests.conftest import Relay, StartRelay
from tests.helpers import NOW, create, order, record


class Signer:
    """An offline gateway's adapter as PaymentUrls uses it: counts the URLs it makes."""

    creates_offline = True

    def __init__(self) -> None:
        self.made: list[str] = []

    def payment_url(self, request: CreateRequest) -> str:
        self.made.append(request.payment_id)
        return f"https://cashier.example/?out_trade_no={request.payment_id}"


def payment(pid: str) -> Any:
    return record(pid, gateway="alipay-page", status="waiting", openedAt=str(NOW))


def test_a_payment_read_again_is_signed_once_and_the_least_recent_is_forgotten(monkeypatch: Any) -> None:
    monkeypatch.setattr(urls, "MADE_KEPT", 2)
    signer = Signer()
    shown = PaymentUrls({"alipay-page": cast(Adapter, signer)}).shown
    first = shown(payment("pr_a")).payment_url
    assert first == "https://cashier.example/?out_trade_no=pr_a"
    assert [shown(payment("pr_a")).payment_url for _ in range(3)] == [first] * 3
    shown(payment("pr_b"))
    shown(payment("pr_a"))  # read most recently: kept when a third comes
    shown(payment("pr_c"))
    shown(payment("pr_a"))
    shown(payment("pr_b"))  # the least recently read: made again
    assert signer.made == ["pr_a", "pr_b", "pr_c", "pr_b"]


def test_a_payment_never_opened_or_of_a_kept_url_is_not_signed() -> None:
    signer = Signer()
    shown = PaymentUrls({"alipay-page": cast(Adapter, signer)}).shown
    assert shown(record("pr_a", gateway="alipay-page", status="closed")).payment_url is None
    kept = record("pr_b", gateway="stripe-connect", status="waiting", paymentUrl="https://checkout.example/b")
    assert shown(kept).payment_url == "https://checkout.example/b"
    assert signer.made == []


def test_the_url_a_create_made_is_shown_without_signing_again() -> None:
    signer = Signer()
    urls_of = PaymentUrls({"alipay-page": cast(Adapter, signer)})
    made = record("pr_a", gateway="alipay-page", status="waiting", openedAt=str(NOW),
                  paymentUrl="https://cashier.example/?out_trade_no=pr_a")
    assert urls_of.kept(made).payment_url is None
    assert urls_of.shown(payment("pr_a")).payment_url == made.payment_url
    assert signer.made == []


@pytest.fixture
def relay(start_relay: StartRelay, alipay_emulator: Emulator) -> Relay:
    return start_relay(alipay_emulator, workers=False)


@pytest.fixture
async def runtime(relay: Relay) -> AsyncIterator[Runtime]:
    """Another process's parts on the relay's Redis and gateway: nothing of the creates remembered."""
    runtime = Runtime(relay.settings)
    yield runtime
    await runtime.close()


async def test_a_close_and_a_sync_make_no_url_and_what_shows_the_payment_makes_it(
    relay: Relay, runtime: Runtime, alipay_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = await create(relay, order(alipay_emulator))
    paid = await create(relay, order(alipay_emulator))
    await alipay_emulator.pay(paid["paymentUrl"], "paid")
    payments = runtime.payments
    adapter = payments.adapters["alipay-page"]
    made: list[str] = []
    payment_url = adapter.payment_url
    monkeypatch.setattr(adapter, "payment_url", lambda request: made.append(request.payment_id) or payment_url(request))
    to_close, to_sync = [await payments.store.get(created["paymentId"]) for created in (opened, paid)]
    assert to_close is not None and to_sync is not None
    closed, synced = await payments.close(to_close), await payments.sync(to_sync)
    assert (closed.status, synced.status) == ("closed", "succeeded")
    assert (closed.payment_url, synced.payment_url) == (None, None) and made == []
    assert payments.urls.shown(synced).payment_url == paid["paymentUrl"]
    assert made == [paid["paymentId"]]
