"""Refunds at the Alipay emulator as a merchant sees them: requests signed with python-alipay-sdk's
public ``client_api``, sent by httpx, answers checked with Alipay's key (cryptography), over real
loopback sockets. Not payrelay's adapter (tests/test_alipay_adapter.py covers that)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urljoin

import alipay
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.alipay import AlipayEmulator
from tests.fixtures_alipay import Receiver

_counter = iter(range(10**6))


class Merchant:
    """A merchant's use of the SDK's public API: ``client_api`` signs, httpx sends."""

    def __init__(self, emulator: AlipayEmulator) -> None:
        self.sdk = alipay.AliPay(appid=emulator.app_id, app_notify_url=None,
                                 app_private_key_string=emulator.app_private_key,
                                 alipay_public_key_string=emulator.alipay_public_key)
        self.gateway = emulator.base_url + "/gateway.do"
        key = serialization.load_pem_public_key(emulator.alipay_public_key.encode())
        assert isinstance(key, rsa.RSAPublicKey)
        self.alipay_public = key

    async def call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        """The answer object, once Alipay's signature over its exact text verifies."""
        async with httpx.AsyncClient() as client:
            answer = await client.get(self.gateway + "?" + self.sdk.client_api(method, biz))
        assert answer.status_code == 200, answer.text
        key = method.replace(".", "_") + "_response"
        document = json.loads(answer.text)
        start = answer.text.index("{", answer.text.index(f'"{key}"'))
        inner = json.dumps(document[key], ensure_ascii=False, separators=(",", ":"))
        assert answer.text[start:start + len(inner)] == inner
        self.alipay_public.verify(base64.b64decode(document["sign"]), inner.encode(), padding.PKCS1v15(),
                                  hashes.SHA256())
        return document[key]  # type: ignore[no-any-return]

    async def refund(self, out_trade_no: str, amount: str, out_request_no: str | None, **more: str) -> dict[str, Any]:
        biz = {"refund_amount": amount, "out_trade_no": out_trade_no} | more
        if out_request_no is not None:
            biz["out_request_no"] = out_request_no
        return await self.call("alipay.trade.refund", biz)

    async def query(self, out_trade_no: str, out_request_no: str) -> dict[str, Any]:
        return await self.call("alipay.trade.fastpay.refund.query",
                               {"out_trade_no": out_trade_no, "out_request_no": out_request_no})


@pytest.fixture
def merchant(alipay_emulator: AlipayEmulator) -> Merchant:
    return Merchant(alipay_emulator)


async def paid_trade(merchant: Merchant, emulator: AlipayEmulator, receiver: Receiver, total: str = "100.00") -> str:
    out_trade_no = f"pr_00refunds{next(_counter):016d}"
    query = merchant.sdk.api_alipay_trade_page_pay(subject="容量包", out_trade_no=out_trade_no, total_amount=total,
                                                   notify_url=receiver.url + "/webhooks/alipay")
    await emulator.pay(merchant.gateway + "?" + query, "paid")
    return out_trade_no


def rf() -> str:
    return f"rf_{next(_counter):026d}"


def notification(receiver: Receiver, emulator: AlipayEmulator, index: int = -1) -> dict[str, str]:
    """A notification that arrived, after checking Alipay's signature over it."""
    form = dict(parse_qsl(receiver.bodies[index].decode()))
    sign = form.pop("sign")
    content = "&".join(f"{k}={v}" for k, v in sorted(form.items()) if k != "sign_type")
    key = serialization.load_pem_public_key(emulator.alipay_public_key.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(sign), content.encode(), padding.PKCS1v15(), hashes.SHA256())
    return form


async def test_partial_refunds_then_the_rest(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                             alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    first, rest = rf(), rf()
    answer = await merchant.refund(trade, "30.00", first, refund_reason="部分退款")
    assert (answer["code"], answer["fund_change"], answer["refund_fee"]) == ("10000", "Y", "30.00")
    assert answer["out_trade_no"] == trade and answer["gmt_refund_pay"]
    partial = notification(alipay_receiver, alipay_emulator)
    assert partial["trade_status"] == "TRADE_SUCCESS" and partial["out_biz_no"] == first
    assert partial["refund_fee"] == "30.00" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}",
                                                             partial["gmt_refund"])
    assert partial["notify_type"] == "trade_status_sync" and partial["total_amount"] == "100.00"

    answer = await merchant.refund(trade, "70.00", rest)
    assert (answer["fund_change"], answer["refund_fee"]) == ("Y", "100.00")
    closed = notification(alipay_receiver, alipay_emulator)
    assert closed["trade_status"] == "TRADE_CLOSED" and closed["out_biz_no"] == rest and closed["gmt_close"]
    assert closed["refund_fee"] == "100.00"  # "总退款金额": the trade's total, not this refund's

    found = await merchant.query(trade, first)
    assert found["refund_status"] == "REFUND_SUCCESS" and found["refund_amount"] == "30.00"
    assert found["out_request_no"] == first and found["total_amount"] == "100.00"
    assert found["refund_reason"] == "部分退款"
    assert alipay_emulator.calls["refund"] == 2 and alipay_emulator.calls["refund_query"] == 1


async def test_the_same_out_request_no_refunds_nothing_more(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                             alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    refund_no = rf()
    assert (await merchant.refund(trade, "100.00", refund_no))["fund_change"] == "Y"
    again = await merchant.refund(trade, "100.00", refund_no)  # the trade is closed now: still the same answer
    assert (again["code"], again["fund_change"], again["refund_fee"]) == ("10000", "N", "100.00")
    assert len(alipay_receiver.bodies) == 2
    other = await merchant.refund(trade, "10.00", refund_no)
    assert (other["code"], other["sub_code"]) == ("40004", "ACQ.DISCORDANT_REPEAT_REQUEST")


@pytest.mark.parametrize(("amount", "out_request_no", "sub_code"), [
    ("100.01", "new", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"),
    ("10.00", None, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"),  # a partial refund must pass out_request_no
    ("0.00", "new", "ACQ.REASON_TRADE_REFUND_FEE_ERR"),
    ("1.234", "new", "ACQ.INVALID_PARAMETER"),
])
async def test_refusals(merchant: Merchant, alipay_emulator: AlipayEmulator, alipay_receiver: Receiver,
                        amount: str, out_request_no: str | None, sub_code: str) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    answer = await merchant.refund(trade, amount, rf() if out_request_no else None)
    assert (answer["code"], answer["sub_code"]) == ("40004", sub_code)
    assert alipay_emulator.trades[trade].refunded_fen == 0 and len(alipay_receiver.bodies) == 1


async def test_without_out_request_no_a_full_refund_is_keyed_by_out_trade_no(
        merchant: Merchant, alipay_emulator: AlipayEmulator, alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    assert (await merchant.refund(trade, "100.00", None))["fund_change"] == "Y"
    assert (await merchant.query(trade, trade))["refund_status"] == "REFUND_SUCCESS"


async def test_what_remains_counts_earlier_refunds(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                   alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    await merchant.refund(trade, "60.00", rf())
    alipay_emulator.refund_outcome = "succeed_later"
    pending = rf()
    assert (await merchant.refund(trade, "30.00", pending))["fund_change"] == "N"
    over = await merchant.refund(trade, "10.01", rf())  # 60 made + 30 in progress: 10.00 left
    assert over["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    await alipay_emulator.settle_refund(pending, "failed")
    alipay_emulator.refund_outcome = "succeed"
    assert (await merchant.refund(trade, "40.00", rf()))["fund_change"] == "Y"  # the failed one holds nothing


async def test_unpaid_closed_and_unknown_trades(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                alipay_receiver: Receiver) -> None:
    out_trade_no = f"pr_00refunds{next(_counter):016d}"
    query = merchant.sdk.api_alipay_trade_page_pay(subject="容量包", out_trade_no=out_trade_no, total_amount="5.00")
    async with httpx.AsyncClient(follow_redirects=True) as client:
        await client.get(merchant.gateway + "?" + query)  # opened, not paid
    assert (await merchant.refund(out_trade_no, "5.00", rf()))["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    await merchant.call("alipay.trade.close", {"out_trade_no": out_trade_no})
    assert (await merchant.refund(out_trade_no, "5.00", rf()))["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    assert (await merchant.refund("pr_never", "5.00", rf()))["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    paid = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    alipay_emulator.trades[paid].status = "TRADE_FINISHED"
    assert (await merchant.refund(paid, "1.00", rf()))["sub_code"] == "ACQ.TRADE_HAS_FINISHED"


async def test_query_of_no_refund_has_no_refund_fields(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                       alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    assert await merchant.query(trade, rf()) == {"code": "10000", "msg": "Success"}
    missing = await merchant.query("pr_never", rf())
    assert missing["sub_code"] == "ACQ.TRADE_NOT_EXIST"


async def test_succeed_later_shows_nothing_until_settled(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                         alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    alipay_emulator.refund_outcome = "succeed_later"
    refund_no = rf()
    accepted = await merchant.refund(trade, "25.00", refund_no)
    assert (accepted["code"], accepted["fund_change"], accepted["refund_fee"]) == ("10000", "N", "0.00")
    assert "refund_status" not in await merchant.query(trade, refund_no)
    assert (await merchant.refund(trade, "25.00", refund_no))["fund_change"] == "N"  # still in progress

    sent = await alipay_emulator.settle_refund(refund_no, "succeeded")
    arrived = notification(alipay_receiver, alipay_emulator)
    assert sent == dict(parse_qsl(alipay_receiver.bodies[-1].decode()))
    assert arrived["trade_status"] == "TRADE_SUCCESS" and arrived["out_biz_no"] == refund_no
    assert arrived["refund_fee"] == "25.00"
    assert (await merchant.query(trade, refund_no))["refund_status"] == "REFUND_SUCCESS"
    with pytest.raises(ValueError, match="succeeded already"):
        await alipay_emulator.settle_refund(refund_no, "failed")


async def test_fail_later_sends_nothing_and_is_refused_when_sent_again(
        merchant: Merchant, alipay_emulator: AlipayEmulator, alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    alipay_emulator.refund_outcome = "fail_later"
    refund_no = rf()
    assert (await merchant.refund(trade, "25.00", refund_no))["fund_change"] == "N"
    assert await alipay_emulator.settle_refund(refund_no, "failed") is None
    assert len(alipay_receiver.bodies) == 1
    assert "refund_status" not in await merchant.query(trade, refund_no)
    again = await merchant.refund(trade, "25.00", refund_no)
    assert (again["code"], again["sub_code"]) == ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH")
    with pytest.raises(KeyError):
        await alipay_emulator.settle_refund(rf(), "succeeded")
    with pytest.raises(ValueError):
        await alipay_emulator.settle_refund(refund_no, "paid")  # type: ignore[arg-type]


async def test_refund_down_answers_503_and_refunds_nothing(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                           alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    alipay_emulator.refund_down = True
    async with httpx.AsyncClient() as client:
        answer = await client.get(merchant.gateway + "?" + merchant.sdk.client_api(
            "alipay.trade.refund", {"refund_amount": "1.00", "out_trade_no": trade, "out_request_no": rf()}))
    assert answer.status_code == 503
    assert alipay_emulator.trades[trade].refunds == {} and alipay_emulator.calls["refund"] == 0
    assert (await merchant.query(trade, rf()))["code"] == "10000"  # only the refund call is down


async def test_refund_delay_applies_the_refund_before_the_answer(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                                 alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    alipay_emulator.refund_delay = 2
    refund_no = rf()
    url = merchant.gateway + "?" + merchant.sdk.client_api(
        "alipay.trade.refund", {"refund_amount": "100.00", "out_trade_no": trade, "out_request_no": refund_no})
    async with httpx.AsyncClient(timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)
    assert (await merchant.query(trade, refund_no))["refund_status"] == "REFUND_SUCCESS"
    assert notification(alipay_receiver, alipay_emulator)["trade_status"] == "TRADE_CLOSED"


async def test_the_sandbox_page_sets_the_outcome_and_settles(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                             alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    page_url = alipay_emulator.base_url + "/sandbox/refunds"
    async with httpx.AsyncClient(follow_redirects=True) as client:
        page = await client.post(page_url + "/outcome", data={"outcome": "succeed_later"})
        assert page.status_code == 200 and 'id="outcome">succeed_later<' in page.text
        assert (await client.post(page_url + "/outcome", data={"outcome": "later"})).status_code == 400
        refund_no = rf()
        await merchant.refund(trade, "10.00", refund_no)
        page = await client.get(page_url)
        actions = re.findall(r'<form method="post" action="([^"]+)"><input type="hidden" name="outcome" '
                             r'value="(\w+)">', page.text)
        assert [value for _, value in actions] == ["succeeded", "failed"] and refund_no in actions[0][0]
        settled = await client.post(urljoin(page_url, actions[0][0]), data={"outcome": "succeeded"})
        assert settled.status_code == 200 and "succeeded" in settled.text
        assert (await client.post(urljoin(page_url, actions[0][0]), data={"outcome": "failed"})).status_code == 409
        missing = await client.post(page_url + f"/{rf()}/settle", data={"outcome": "failed"})
        assert missing.status_code == 404
    assert notification(alipay_receiver, alipay_emulator)["out_biz_no"] == refund_no


async def test_console_refund_refunds_what_is_left(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                   alipay_receiver: Receiver) -> None:
    trade = await paid_trade(merchant, alipay_emulator, alipay_receiver)
    await merchant.refund(trade, "40.00", rf())
    form = await alipay_emulator.refund(trade)
    assert form["trade_status"] == "TRADE_CLOSED" and form["refund_fee"] == "100.00"
    assert alipay_emulator.trades[trade].refunded_fen == 10000
