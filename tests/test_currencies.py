"""Currency facts against sources outside the code: ISO 4217's published list, each gateway's own
rules (named as data in its adapter), and the emulators' independent copies of those rules.

The expected values here are written out by hand from SIX's list of 2026-01-01 and from the
gateways' documentation, never read from the tables under test: a table that moves OMR to two
decimals (a tenth of the price at Stripe) or forgets that Stripe counts MGA in whole ariary (a
hundred times the price) disagrees with them.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from adapters import money
from adapters.alipay import transformers as alipay_tx
from adapters.alipay.adapter import AlipayAdapter
from adapters.base import CreateRequest, Money
from adapters.errors import GatewayProtocolError, UnsupportedOperation
from adapters.stripe import transformers as stripe_tx
from adapters.stripe.adapter import StripeAdapter
from adapters.wechat import transformers as wechat_tx
from adapters.wechat.adapter import WechatAdapter
from sandbox import alipay as alipay_sandbox
from sandbox import stripe as stripe_sandbox
from sandbox import wechat as wechat_sandbox
from sandbox.wechat import WechatKeys
from tests.conftest import Relay, StartRelay
from tests.helpers import ISO_NOT_TWO, expected_iso_exponent

ISO_TWO_COUNT = 139  # active codes with two decimals (USD … ZWG, XAD and XCG included)
# withdrawn from the list (BGN: Bulgaria joined the euro on 2026-01-01; ANG: replaced by XCG)
WITHDRAWN = ["ANG", "BGN", "CUC", "HRK", "SLL", "ZWL", "VEF", "MRO", "STD", "LTL"]
# codes with no minor unit ("N.A."): not amounts payrelay can hold
NO_MINOR_UNIT = ["XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "XBA", "XSU", "XUA"]


def test_the_list_is_iso_4217_as_published() -> None:
    assert dt.date(2026, 1, 1) <= money.ISO_PUBLISHED
    for exponent, codes in ISO_NOT_TWO.items():
        assert sorted(c for c, e in money.EXPONENTS.items() if e == exponent) == codes.split()
    assert sum(1 for e in money.EXPONENTS.values() if e == 2) == ISO_TWO_COUNT
    assert {"USD", "EUR", "CNY", "MGA", "XCG", "ZWG", "VED", "SLE", "XAD"} <= set(money.EXPONENTS)
    assert set(money.EXPONENTS).isdisjoint(WITHDRAWN + NO_MINOR_UNIT)


@pytest.mark.parametrize("currency", sorted(money.EXPONENTS))
def test_every_currency_converts_with_its_iso_exponent(currency: str) -> None:
    digits = expected_iso_exponent(currency)
    assert money.exponent(currency) == digits
    assert money.to_minor("25", currency) == 25 * 10**digits
    fraction = "7".rjust(digits, "0")  # the smallest unit but six: 0.7, 0.07, 0.007, 0.0007
    if digits:
        assert money.to_minor(f"25.{fraction}", currency) == 25 * 10**digits + 7
        assert money.to_major(25 * 10**digits + 7, currency) == f"25.{fraction}"
        with pytest.raises(money.AmountError):
            money.to_minor(f"25.{fraction}1", currency)
    else:
        assert money.to_major(25, currency) == "25"
        with pytest.raises(money.AmountError):
            money.to_minor("25.0", currency)


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("25.00", "OMR", 25000), ("25.000", "OMR", 25000), ("1.5", "TND", 1500), ("0.010", "JOD", 10),
    ("7", "IQD", 7000), ("0.001", "LYD", 1), ("1000", "MGA", 100000), ("500", "ISK", 500),
    ("1.0001", "UYW", 10001), ("3", "UYI", 3), ("89.00", "CNY", 8900), ("10", "XCG", 1000),
])
def test_fixed_vectors(amount: str, currency: str, minor: int) -> None:
    assert money.to_minor(amount, currency) == minor


@pytest.mark.parametrize("currency", WITHDRAWN + NO_MINOR_UNIT)
def test_withdrawn_and_unit_less_codes_are_refused(currency: str) -> None:
    with pytest.raises(money.AmountError, match="ISO 4217"):
        money.to_minor("1", currency)


# -- each gateway's exceptions, named as data next to its adapter ---------------------------------

# Stripe's documentation (docs.stripe.com/currencies): zero-decimal, three-decimal, ISK in hundredths.
STRIPE_ZERO_DECIMAL = "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF"
STRIPE_THREE_DECIMAL = "BHD JOD KWD OMR TND"
# where Stripe's unit is not ISO's: (Stripe's decimals, ISO minor units per Stripe amount step)
STRIPE_NOT_ISO = {"ISK": (2, 1), "MGA": (0, 100)}
# ISO currencies with no rule at Stripe: three decimals that are not Stripe's, and fund codes
STRIPE_REFUSED = {"IQD", "LYD", "CLF", "UYI", "UYW"}
STRIPE_STEPS = {"BHD": 10, "JOD": 10, "KWD": 10, "OMR": 10, "TND": 10, "MGA": 100}


def test_stripe_names_its_exceptions() -> None:
    assert frozenset(STRIPE_ZERO_DECIMAL.split()) == stripe_tx.ZERO_DECIMAL
    assert frozenset(STRIPE_THREE_DECIMAL.split()) == stripe_tx.THREE_DECIMAL
    assert dict(stripe_tx.STRIPE_MULTIPLES) == {**dict.fromkeys(STRIPE_THREE_DECIMAL.split(), 10), "ISK": 100}
    assert dict(stripe_tx.AMOUNT_STEPS) == STRIPE_STEPS
    assert StripeAdapter.amount_steps is stripe_tx.AMOUNT_STEPS
    assert StripeAdapter.currencies == frozenset(money.EXPONENTS) - STRIPE_REFUSED


@pytest.mark.parametrize("currency", sorted(money.EXPONENTS))
def test_stripe_uses_the_iso_exponent_unless_it_names_an_exception(currency: str) -> None:
    adapter_currencies = StripeAdapter.currencies
    assert adapter_currencies is not None
    if currency in STRIPE_REFUSED:
        assert currency not in adapter_currencies
        assert stripe_tx.stripe_exponent(currency) is None
        with pytest.raises(UnsupportedOperation):
            stripe_tx.stripe_amount(Money(1000, currency))
        return
    assert currency in adapter_currencies
    decimals, step = STRIPE_NOT_ISO.get(currency, (expected_iso_exponent(currency), STRIPE_STEPS.get(currency, 1)))
    assert stripe_tx.stripe_exponent(currency) == decimals
    assert StripeAdapter.amount_steps.get(currency, 1) == step
    # 12.34… in the currency's own digits, a multiple of the step: Stripe's amount is the same
    # number written with Stripe's decimals
    minor = 1234 * 10**expected_iso_exponent(currency) * step
    sent = stripe_tx.stripe_amount(Money(minor, currency))
    assert sent == minor * 10**decimals // 10**expected_iso_exponent(currency)


@pytest.mark.parametrize("currency", sorted(StripeAdapter.currencies or ()))
def test_stripe_steps_follow_from_stripes_units_and_multiples(currency: str) -> None:
    step = stripe_tx._amount_step(currency)  # (the table is built at import: here the function runs under test)
    assert (step, type(step)) == (STRIPE_STEPS.get(currency, 1), int)


def test_the_step_is_the_fewest_iso_units_that_are_a_whole_stripe_multiple(monkeypatch: pytest.MonkeyPatch) -> None:
    """The derivation itself, for multiples Stripe might name. ISK is counted in hundredths at
    Stripe: multiples of 50 are met by every whole króna (100); multiples of 250 (2.50 ISK) only
    by every fifth (500), as ISK has no fraction in ISO 4217."""
    monkeypatch.setattr(stripe_tx, "STRIPE_MULTIPLES", {"ISK": 50, "JPY": 7, "MGA": 3})
    assert stripe_tx._amount_step("ISK") == 1
    monkeypatch.setattr(stripe_tx, "STRIPE_MULTIPLES", {"ISK": 250, "JPY": 7, "MGA": 3})
    assert stripe_tx._amount_step("ISK") == 5
    assert stripe_tx._amount_step("JPY") == 7  # same units: the multiple itself
    assert stripe_tx._amount_step("MGA") == 300  # whole ariary at Stripe, in threes: 3.00 MGA


def test_stripe_amounts_off_the_step_are_refused_not_rounded() -> None:
    with pytest.raises(UnsupportedOperation) as refused:
        stripe_tx.stripe_amount(Money(150, "MGA"))
    assert (str(refused.value), refused.value.param) == ("Stripe takes MGA in whole units of 1.00 only", "amount")
    with pytest.raises(UnsupportedOperation) as refused:
        stripe_tx.stripe_amount(Money(1000, "IQD"))
    assert (str(refused.value), refused.value.param) == ("Stripe takes no IQD", "currency")
    session = {"id": "cs_test_1", "status": "complete", "payment_status": "paid", "amount_total": 50050,
               "currency": "isk", "metadata": {"paymentId": "pr_x"}}
    with pytest.raises(GatewayProtocolError) as answered:
        stripe_tx.session_state("pr_x", session)
    assert str(answered.value) == ("Stripe answered a Checkout Session amount_total of 50050 ISK, "
                                   "which is no whole amount of ISK")
    for missing in ("amount_total", "currency"):
        with pytest.raises(GatewayProtocolError) as answered:
            stripe_tx.session_state("pr_x", {k: v for k, v in session.items() if k != missing})
        assert str(answered.value) == f"Stripe answered a Checkout Session without a usable {missing!r}"
    session = {"id": "cs_test_1", "status": "complete", "payment_status": "paid", "amount_total": 1000,
               "currency": "iqd", "metadata": {"paymentId": "pr_x"}}
    with pytest.raises(GatewayProtocolError, match="'IQD'"):
        stripe_tx.session_state("pr_x", session)


def test_alipay_and_wechat_take_cny_in_fen() -> None:
    assert AlipayAdapter.currencies == frozenset({"CNY"}) == WechatAdapter.currencies
    assert not AlipayAdapter.amount_steps and not WechatAdapter.amount_steps
    assert money.exponent("CNY") == 2  # fen: WeChat's total and Alipay's two-decimal yuan
    request = CreateRequest(payment_id="pr_00test00000000000000000001", amount=Money(8905, "CNY"),
                            description="x", complete_url="https://shop.example/done",
                            cancel_url="https://shop.example/cancel", expires_at=int(time.time()) + 1800)
    assert alipay_tx.page_pay_params(request, "https://relay.example/n", time.time())["total_amount"] == "89.05"
    assert wechat_tx.native_order(request, "https://relay.example/n")["amount"] == {"total": 8905, "currency": "CNY"}
    with pytest.raises(UnsupportedOperation):
        alipay_tx.page_pay_params(CreateRequest(**{**request.__dict__, "amount": Money(8905, "HKD")}),
                                  "https://relay.example/n", time.time())


# -- the emulators keep their own copy of the gateways' rules: both copies agree --------------------

def _emulator_decimals(currency: str) -> int:
    """The decimals the Stripe emulator shows a currency with, read from its hosted page text."""
    shown = stripe_sandbox.display_amount(123456789, currency.lower())
    number = shown.removesuffix(f" {currency}").replace(",", "")
    return len(number.partition(".")[2])


@pytest.mark.parametrize("currency", sorted(StripeAdapter.currencies or ()))
def test_stripe_emulator_agrees_on_every_currency(currency: str) -> None:
    assert _emulator_decimals(currency) == stripe_tx.stripe_exponent(currency)
    step = StripeAdapter.amount_steps.get(currency, 1)
    for minor in (step, 7 * step, 1234567 * step):
        sent = stripe_tx.stripe_amount(Money(minor, currency))
        assert sent % stripe_sandbox.AMOUNT_STEPS.get(currency.lower(), 1) == 0  # the emulator takes it
        shown = stripe_sandbox.display_amount(sent, currency.lower()).removesuffix(f" {currency}")
        assert Decimal(shown.replace(",", "")) == Decimal(money.to_major(minor, currency))
        session = {"id": "cs_test_1", "status": "complete", "payment_status": "paid", "amount_total": sent,
                   "currency": currency.lower(), "metadata": {"paymentId": "pr_x"}}
        assert stripe_tx.session_state("pr_x", session).amount == Money(minor, currency)
    if step > 1:  # what payrelay refuses, Stripe (the emulator) would refuse or cannot be sent
        try:
            sent = stripe_tx.stripe_amount(Money(step + step // 10 or 1, currency))
        except UnsupportedOperation:
            return
        assert sent % stripe_sandbox.AMOUNT_STEPS[currency.lower()]


def test_stripe_emulator_lists_are_the_adapters() -> None:
    assert {c.upper() for c in stripe_sandbox.ZERO_DECIMAL} == stripe_tx.ZERO_DECIMAL
    assert {c.upper() for c in stripe_sandbox.THREE_DECIMAL} == stripe_tx.THREE_DECIMAL
    assert {c.upper(): n for c, n in stripe_sandbox.AMOUNT_STEPS.items()} == dict(stripe_tx.STRIPE_MULTIPLES)


@pytest.mark.parametrize("currency", sorted(money.EXPONENTS))
def test_cny_only_emulators_agree(wechat_keys: WechatKeys, currency: str) -> None:
    request = CreateRequest(payment_id="pr_00test00000000000000000001", amount=Money(8905, currency),
                            description="x", complete_url="https://shop.example/done",
                            cancel_url="https://shop.example/cancel", expires_at=int(time.time()) + 1800)
    order = wechat_tx.native_order(request, "https://relay.example/n") | {"appid": wechat_keys.appid,
                                                                          "mchid": wechat_keys.mchid}
    try:
        wechat_sandbox._validate_create(order, wechat_keys)
    except wechat_sandbox._ApiError:
        taken = False
    else:
        taken = True
    assert taken == (currency in (WechatAdapter.currencies or ()))
    # Alipay's total_amount is yuan with at most two decimals: CNY's ISO exponent, written by to_major
    assert alipay_sandbox._AMOUNT.fullmatch(money.to_major(8905, "CNY"))
    assert not alipay_sandbox._AMOUNT.fullmatch("89.050")


# -- end to end: the amount the customer is asked for --------------------------------------------

def _body(**changes: Any) -> dict[str, Any]:
    return {
        "transactionId": f"order-{uuid.uuid4().hex[:12]}", "amount": "25.00", "currency": "USD",
        "date": "2026-11-21", "paymentGatewayType": "stripe-connect",
        "completePayRedirectUrl": "https://shop.example/done", "cancelPayRedirectUrl": "https://shop.example/cancel",
        "onlineScenario": True, "customerIdentifier": "buyer@example.com", "description": "10 GB storage pack",
    } | changes


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any) -> Relay:
    return start_relay(stripe_emulator)


@pytest.mark.parametrize(("currency", "amount", "sent", "shown"), [
    ("MGA", "1000", 1000, "1,000 MGA"),  # whole ariary at Stripe: was sent as 100000, a hundredfold
    ("MGA", "1000.00", 1000, "1,000 MGA"),
    ("OMR", "25.00", 25000, "25.000 OMR"),
    ("ISK", "500", 50000, "500.00 ISK"),
    ("JPY", "300", 300, "300 JPY"),
    ("XCG", "10.50", 1050, "10.50 XCG"),
])
async def test_the_customer_is_asked_for_the_amount(relay: Relay, stripe_emulator: Any, currency: str, amount: str,
                                                    sent: int, shown: str) -> None:
    async with relay.client() as client:
        created = await client.post("/api/transactions", json=_body(currency=currency, amount=amount))
        assert created.status_code == 200, created.text
        payment = (await client.get(f"/api/transactions/{created.json()['paymentId']}")).json()
        session = stripe_emulator.sessions[payment["gatewayReference"]]
        assert session["amount_total"] == sent
        assert stripe_sandbox.display_amount(session["amount_total"], session["currency"]) == shown


@pytest.mark.parametrize(("currency", "amount", "code", "param", "detail"), [
    ("MGA", "1000.50", "invalid_amount", "amount", "steps of 1.00"),
    ("IQD", "1.000", "currency_not_supported", "currency", "stripe-connect does not take IQD"),
    ("BGN", "10.00", "invalid_field", "currency", "ISO 4217"),
])
async def test_what_stripe_cannot_charge_is_refused_before_asking(relay: Relay, stripe_emulator: Any, currency: str,
                                                                   amount: str, code: str, param: str,
                                                                   detail: str) -> None:
    async with relay.client() as client:
        refused = await client.post("/api/transactions", json=_body(currency=currency, amount=amount))
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert (problem["code"], problem["param"]) == (code, param) and detail in problem["detail"]
    assert stripe_emulator.calls["create"] == 0
