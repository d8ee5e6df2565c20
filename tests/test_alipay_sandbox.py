"""The Alipay emulator as a merchant sees it, over real loopback sockets: python-alipay-sdk's public
API (not payrelay's adapter) builds and signs the requests and verifies notifications, httpx sends
them to the emulator's /gateway.do, and the signature of each synchronous answer is checked with
cryptography alone, over the exact text Alipay signs."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import alipay
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.alipay import AlipayEmulator, CashierError
from tests.fixtures_alipay import Receiver

CHINA = timezone(timedelta(hours=8))
FORMAT = "%Y-%m-%d %H:%M:%S"
_counter = iter(range(10**6))


class UnsignedAnswer(Exception):
    """An answer with no signed ``<method>_response`` object, which a merchant must not trust."""


def answer_text(raw: str, key: str) -> str:
    """The exact text of the ``key`` object as it stands in the body: what Alipay signs (a
    re-serialisation of the parsed object need not match it byte for byte)."""
    start = raw.index(json.dumps(key) + ":") + len(json.dumps(key)) + 1
    _, end = json.JSONDecoder().raw_decode(raw, start)
    return raw[start:end]


def verified_answer(raw: str, key: str, alipay_public: rsa.RSAPublicKey) -> dict[str, Any]:
    """The ``key`` object of a synchronous answer once its ``sign`` checks out: RSA2 (PKCS#1 v1.5,
    SHA-256) with Alipay's key over that object's exact UTF-8 text. Raises UnsignedAnswer or
    InvalidSignature. Shares no code with the SDK, the adapter or the emulator."""
    body = json.loads(raw)
    if key not in body or "sign" not in body:
        raise UnsignedAnswer(raw)
    inner = answer_text(raw, key)
    signature = base64.b64decode(body["sign"], validate=True)
    alipay_public.verify(signature, inner.encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(inner)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Merchant:
    """A shop's own code: the SDK signs, httpx sends. The SDK takes no gateway URL, so the shop
    keeps the one it sends to."""

    sdk: alipay.AliPay
    gateway: str
    alipay_public: rsa.RSAPublicKey

    def page_url(self, receiver: Receiver, **changes: Any) -> tuple[str, str]:
        """(payment URL, out_trade_no) the way a merchant makes one with the SDK."""
        params = {
            "subject": "10 GB 容量包 <b>&</b>",
            "out_trade_no": f"pr_00sandbox{next(_counter):016d}",
            "total_amount": "89.00",
            "return_url": "https://shop.example/done",
            "notify_url": receiver.url + "/webhooks/alipay",
            "time_expire": china(1800),
        } | changes
        return self.gateway + "?" + self.sdk.api_alipay_trade_page_pay(**params), params["out_trade_no"]

    def signed_url(self, method: str, biz: dict[str, Any], **common: str | None) -> str:
        """A signed request; ``common`` replaces common parameters before signing, None removes one."""
        data = self.sdk.build_body(method, biz)
        for name, value in common.items():
            if value is None:
                data.pop(name)
            else:
                data[name] = value
        return self.gateway + "?" + self.sdk.sign_data(data)

    async def call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        """What the SDK's api_alipay_trade_* do, sent with httpx: the answer object, verified."""
        answer = await get(self.signed_url(method, biz))
        answer.raise_for_status()
        return verified_answer(answer.text, method.replace(".", "_") + "_response", self.alipay_public)

    async def query(self, out_trade_no: str) -> dict[str, Any]:
        return await self.call("alipay.trade.query", {"out_trade_no": out_trade_no})

    async def close(self, out_trade_no: str) -> dict[str, Any]:
        return await self.call("alipay.trade.close", {"out_trade_no": out_trade_no})


@pytest.fixture
def merchant(alipay_emulator: AlipayEmulator) -> Merchant:
    sdk = alipay.AliPay(appid=alipay_emulator.app_id, app_notify_url=None,
                        app_private_key_string=alipay_emulator.app_private_key,
                        alipay_public_key_string=alipay_emulator.alipay_public_key)
    alipay_public = serialization.load_pem_public_key(alipay_emulator.alipay_public_key.encode())
    assert isinstance(alipay_public, rsa.RSAPublicKey)
    return Merchant(sdk, alipay_emulator.base_url + "/gateway.do", alipay_public)


def china(offset: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset, CHINA).strftime(FORMAT)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url)


def answer_of(response: httpx.Response, key: str = "alipay_trade_query_response") -> dict[str, Any]:
    return json.loads(response.text)[key]  # type: ignore[no-any-return]


def test_env_points_payrelay_at_the_emulator(alipay_emulator: AlipayEmulator) -> None:
    env = alipay_emulator.env()
    assert env["PAYRELAY_ALIPAY_APP_ID"] == alipay_emulator.app_id and len(alipay_emulator.app_id) == 16
    assert env["PAYRELAY_ALIPAY_GATEWAY_URL"] == alipay_emulator.base_url + "/gateway.do"
    assert env["PAYRELAY_ALIPAY_PRIVATE_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
    assert env["PAYRELAY_ALIPAY_PUBLIC_KEY"] == alipay_emulator.alipay_public_key != alipay_emulator.app_public_key
    assert "PRIVATE" not in repr(alipay_emulator)


# -- the request signature and common parameters ------------------------------------------------------


async def test_tampered_page_pay_request_is_refused(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                    alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    page = await get(url.replace("89.00", "0.01"))
    assert page.status_code == 400 and "isv.invalid-signature" in page.text
    assert out_trade_no not in alipay_emulator.trades and alipay_emulator.calls["create"] == 0


@pytest.mark.parametrize(("common", "code", "sub_code"), [
    ({"app_id": "2021000000000001"}, "40002", "isv.invalid-app-id"),
    ({"charset": "GBK"}, "40002", "isv.invalid-charset"),
    ({"sign_type": "RSA"}, "40002", "isv.invalid-signature-type"),
    ({"version": "2.0"}, "40002", "isv.invalid-parameter"),
    ({"timestamp": "2026/11/21 10:00"}, "40002", "isv.invalid-timestamp"),
    ({"timestamp": china(-3 * 86400)}, "40002", "isv.invalid-timestamp"),
    ({"timestamp": None}, "40001", "isv.missing-timestamp"),
    ({"biz_content": "not json"}, "40004", "ACQ.INVALID_PARAMETER"),
])
async def test_common_parameters_are_checked(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                             common: dict[str, str | None], code: str, sub_code: str) -> None:
    answer = await get(merchant.signed_url("alipay.trade.query", {"out_trade_no": "x"}, **common))
    body = json.loads(answer.text)
    assert answer.status_code == 200 and body["alipay_trade_query_response"]["code"] == code
    assert body["alipay_trade_query_response"]["sub_code"] == sub_code
    assert ("sign" in body) is (code == "40004")  # Alipay signs business errors only
    assert alipay_emulator.calls["query"] == 0


async def test_bad_request_signature_and_unknown_method(merchant: Merchant) -> None:
    url = merchant.signed_url("alipay.trade.query", {"out_trade_no": "x"})
    forged = answer_of(await get(url.replace("out_trade_no%22%3A%22x", "out_trade_no%22%3A%22y")))
    assert (forged["code"], forged["sub_code"]) == ("40002", "isv.invalid-signature")
    unsigned = answer_of(await get(url.split("&sign=")[0]))
    assert (unsigned["code"], unsigned["sub_code"]) == ("40001", "isv.missing-signature")
    unknown = await get(merchant.signed_url("alipay.trade.cancel", {"out_trade_no": "x"}))
    assert answer_of(unknown, "error_response")["sub_code"] == "isv.invalid-method"
    with pytest.raises(UnsignedAnswer):  # gateway-level errors come unsigned: not to be trusted
        verified_answer(unknown.text, "alipay_trade_cancel_response", merchant.alipay_public)


async def test_sdk_local_time_stamps_are_accepted(merchant: Merchant) -> None:
    """python-alipay-sdk stamps the host's local time, 8 h behind China time on a UTC host."""
    utc_now = datetime.now(UTC).strftime(FORMAT)
    answer = answer_of(await get(merchant.signed_url("alipay.trade.query", {"out_trade_no": "x"},
                                            timestamp=utc_now)))
    assert answer["sub_code"] == "ACQ.TRADE_NOT_EXIST"


# -- signed answers -------------------------------------------------------------------------------------


async def test_answers_are_signed_over_their_exact_text(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                        alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    await alipay_emulator.pay(url, "paid")
    raw = (await get(merchant.signed_url("alipay.trade.query", {"out_trade_no": out_trade_no}))).text
    assert raw.startswith('{"alipay_trade_query_response":{') and '"fund_bill_list":[{' in raw
    inner = answer_text(raw, "alipay_trade_query_response")
    assert raw == '{"alipay_trade_query_response":' + inner + ',"sign":"' + json.loads(raw)["sign"] + '"}'
    answer = verified_answer(raw, "alipay_trade_query_response", merchant.alipay_public)
    assert answer == json.loads(raw)["alipay_trade_query_response"]
    assert answer["trade_status"] == "TRADE_SUCCESS" and answer["total_amount"] == "89.00"
    assert answer["buyer_logon_id"] == "buy***@sandbox.com" and answer["send_pay_date"]

    missing = await merchant.query("pr_never")
    assert missing == {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                       "sub_msg": "交易不存在"}
    alipay_emulator.forge_signatures = True
    with pytest.raises(InvalidSignature):
        await merchant.query(out_trade_no)


# -- the cashier -----------------------------------------------------------------------------------------


async def test_reopening_shows_the_same_trade(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                              alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    first, second = await get(url), await get(url)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == (
        f"/cashier/{alipay_emulator.trades[out_trade_no].trade_no}")
    assert alipay_emulator.calls["create"] == 1 and alipay_emulator.calls["cashier"] == 2

    async with httpx.AsyncClient() as client:
        page = await client.get(alipay_emulator.base_url + first.headers["location"])
    assert page.status_code == 200 and '<strong class="amount" id="amount">¥89.00</strong>' in page.text
    assert "10 GB 容量包 &lt;b&gt;&amp;&lt;/b&gt;" in page.text  # shown, escaped
    assert 'id="pay-form"' in page.text and 'id="leave-form"' in page.text

    moved, _ = merchant.page_url(alipay_receiver, out_trade_no=out_trade_no, total_amount="1.00")
    renamed, _ = merchant.page_url(alipay_receiver, out_trade_no=out_trade_no, subject="other")
    for changed in (moved, renamed):
        refused = await get(changed)
        assert refused.status_code == 409 and "ACQ.CONTEXT_INCONSISTENT" in refused.text
        assert "交易信息被篡改" in refused.text


async def test_page_pay_over_a_posted_form(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                           alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    gateway, _, query = url.partition("?")
    async with httpx.AsyncClient() as client:
        opened = await client.post(gateway, data=dict(parse_qsl(query)))
    assert opened.status_code == 303 and out_trade_no in alipay_emulator.trades


@pytest.mark.parametrize("changes", [
    {"total_amount": "0.00"}, {"total_amount": "100000000.01"}, {"total_amount": "1.234"},
    {"subject": ""}, {"subject": "容" * 257}, {"subject": "😀" * 129},  # 129 characters, 258 UTF-16 units
    {"out_trade_no": "has-dash"}, {"time_expire": "2026-11-21T10:00"},
])
async def test_page_pay_parameters_are_checked(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                               alipay_receiver: Receiver, changes: dict[str, str]) -> None:
    refused = await get(merchant.page_url(alipay_receiver, **changes)[0])
    assert refused.status_code == 400 and "ACQ.INVALID_PARAMETER" in refused.text
    assert alipay_emulator.trades == {}


async def test_largest_amount_and_longest_subject_are_taken(merchant: Merchant, alipay_receiver: Receiver) -> None:
    url, _ = merchant.page_url(alipay_receiver, total_amount="100000000.00", subject="容" * 256)
    assert (await get(url)).status_code == 303
    url, _ = merchant.page_url(alipay_receiver, subject="😀" * 128)  # 256 UTF-16 units, as Java counts
    assert (await get(url)).status_code == 303


async def test_pay_notifies_and_returns(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                        alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    landed = await alipay_emulator.pay(url, "paid")
    trade = alipay_emulator.trades[out_trade_no]
    assert trade.status == "TRADE_SUCCESS" and len(trade.trade_no) == 28

    form = dict(parse_qsl(alipay_receiver.bodies[0].decode(), keep_blank_values=True))
    assert {"notify_time", "notify_type", "notify_id", "app_id", "charset", "version", "sign_type", "trade_no",
            "out_trade_no", "total_amount", "receipt_amount", "buyer_pay_amount", "trade_status", "gmt_create",
            "gmt_payment", "subject", "sign"} <= set(form)
    assert (form["notify_type"], form["sign_type"], form["trade_status"]) == (
        "trade_status_sync", "RSA2", "TRADE_SUCCESS")
    assert form["total_amount"] == form["receipt_amount"] == "89.00" and form["subject"] == trade.subject
    sign = form.pop("sign")
    assert merchant.sdk.verify(dict(form), sign)  # over every field but sign and sign_type
    assert alipay_emulator.webhooks_sent == [(form["notify_id"], 200)]

    returned = dict(parse_qsl(urlsplit(landed).query))
    assert landed.startswith("https://shop.example/done?")
    assert returned["method"] == "alipay.trade.page.pay.return" and returned["trade_no"] == trade.trade_no
    assert merchant.sdk.verify(returned, returned.pop("sign"))
    with pytest.raises(CashierError, match=r"ACQ\.TRADE_HAS_SUCCESS"):
        await alipay_emulator.pay(url, "paid")


@pytest.mark.parametrize(("answer", "recorded"), [
    ((200, b"success"), 200), ((200, b"fail"), None), ((200, b"SUCCESS"), None), ((503, b"success"), 503),
])
async def test_deliveries_count_only_a_plain_success(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                     alipay_receiver: Receiver, answer: tuple[int, bytes],
                                                     recorded: int | None) -> None:
    alipay_receiver.answer = answer
    url, _ = merchant.page_url(alipay_receiver)
    await alipay_emulator.pay(url, "paid")
    assert [code for _, code in alipay_emulator.webhooks_sent] == [recorded]
    assert alipay_emulator.notifications[0].acknowledged is (recorded == 200)


async def test_unreachable_notify_url_is_recorded(merchant: Merchant, alipay_emulator: AlipayEmulator) -> None:
    url, out_trade_no = merchant.page_url(Receiver(url="http://127.0.0.1:9"))
    await alipay_emulator.pay(url, "paid")
    assert alipay_emulator.webhooks_sent[0][1] is None
    assert alipay_emulator.trades[out_trade_no].status == "TRADE_SUCCESS"


async def test_leaving_keeps_the_trade_open(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                            alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    assert await alipay_emulator.pay(url, "cancel") == ""
    assert alipay_emulator.trades[out_trade_no].status == "WAIT_BUYER_PAY" and alipay_receiver.bodies == []
    assert (await merchant.query(out_trade_no))["trade_status"] == "WAIT_BUYER_PAY"
    assert (await alipay_emulator.pay(url, "paid")).startswith("https://shop.example/done?")


async def test_the_cashiers_pages_link_back_and_speak_both_languages(merchant: Merchant,
                                                                      alipay_emulator: AlipayEmulator,
                                                                      alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    async with httpx.AsyncClient(follow_redirects=True) as client:
        cashier = await client.get(url)
        left = await client.post(f"{cashier.url}/leave")
        assert '<a id="back" href="https://shop.example/done">' in left.text  # the return_url, unsigned
        assert "您已离开收银台 · You left the cashier" in left.text
        await merchant.close(out_trade_no)
        closed = await client.get(str(cashier.url))
        assert closed.status_code == 409 and "交易已关闭 · This transaction has been closed" in closed.text
        odd, _ = merchant.page_url(alipay_receiver, return_url="javascript:alert(1)")
        left = await client.post(f"{(await client.get(odd)).url}/leave")
    assert left.status_code == 200 and 'id="back"' not in left.text  # a link only to a web page
    for page in (cashier, left, closed):
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text


async def test_outcomes_alipay_does_not_have(alipay_emulator: AlipayEmulator) -> None:
    for outcome in ("processing", "failed"):
        with pytest.raises(ValueError, match="not an Alipay page-pay outcome"):
            await alipay_emulator.pay("http://127.0.0.1:9/never", outcome)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nothing to settle"):
        await alipay_emulator.settle("pr_1", "paid")


# -- close, time_expire, refund, outage -------------------------------------------------------------------


async def test_merchant_close(merchant: Merchant, alipay_emulator: AlipayEmulator, alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    await get(url)
    closed = await merchant.close(out_trade_no)
    assert closed == {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no,
                      "trade_no": alipay_emulator.trades[out_trade_no].trade_no}
    assert (await merchant.close(out_trade_no))["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    assert alipay_receiver.bodies == []  # no notification for a merchant's close
    assert (await get(url)).status_code == 409

    paid_url, paid = merchant.page_url(alipay_receiver)
    await alipay_emulator.pay(paid_url, "paid")
    assert (await merchant.close(paid))["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    assert alipay_emulator.trades[paid].status == "TRADE_SUCCESS"
    assert alipay_emulator.calls["close"] == 3


async def test_closing_a_never_opened_order_does_not_stop_payment(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                                  alipay_receiver: Receiver) -> None:
    """Faithful to Alipay: before the cashier is opened there is no trade to close, so the
    customer can still open the URL and pay until time_expire."""
    url, out_trade_no = merchant.page_url(alipay_receiver)
    assert (await merchant.close(out_trade_no))["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    await alipay_emulator.pay(url, "paid")
    assert alipay_emulator.trades[out_trade_no].status == "TRADE_SUCCESS"


async def test_time_expire_closes_the_trade_with_a_notification(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                                alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver, time_expire=china(600))
    await get(url)
    alipay_emulator.advance(601)
    answer = await merchant.query(out_trade_no)
    assert answer["trade_status"] == "TRADE_CLOSED"
    form = dict(parse_qsl(alipay_receiver.bodies[0].decode()))
    assert form["trade_status"] == "TRADE_CLOSED" and form["gmt_close"] and "gmt_payment" not in form
    assert merchant.sdk.verify({k: v for k, v in form.items() if k != "sign"}, form["sign"])
    with pytest.raises(CashierError) as refused:
        await alipay_emulator.pay(url, "paid")
    assert refused.value.code == "ACQ.TRADE_HAS_CLOSE" and refused.value.status_code == 409
    assert len(alipay_receiver.bodies) == 1  # closed once, notified once


async def test_sweep_and_late_opening(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                      alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver, time_expire=china(600))
    await get(url)
    assert await alipay_emulator.sweep() == 0
    alipay_emulator.advance(601)
    assert await alipay_emulator.sweep() == 1 and await alipay_emulator.sweep() == 0
    assert alipay_emulator.trades[out_trade_no].status == "TRADE_CLOSED" and len(alipay_receiver.bodies) == 1

    never_opened, never = merchant.page_url(alipay_receiver, time_expire=china(-60))
    refused = await get(never_opened)
    assert refused.status_code == 409 and "ACQ.TRADE_HAS_CLOSE" in refused.text
    assert never not in alipay_emulator.trades


async def test_refund_closes_a_paid_trade(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                          alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    await get(url)
    with pytest.raises(ValueError, match="not paid"):
        await alipay_emulator.refund(out_trade_no)
    await alipay_emulator.pay(url, "paid")
    form = await alipay_emulator.refund(out_trade_no)
    assert form["trade_status"] == "TRADE_CLOSED" and form["refund_fee"] == "89.00" and form["gmt_payment"]
    assert dict(parse_qsl(alipay_receiver.bodies[-1].decode())) == form
    assert (await merchant.query(out_trade_no))["trade_status"] == "TRADE_CLOSED"


async def test_down_answers_503_and_changes_nothing(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                                    alipay_receiver: Receiver) -> None:
    url, out_trade_no = merchant.page_url(alipay_receiver)
    alipay_emulator.down = True
    assert (await get(url)).status_code == 503
    assert (await get(merchant.signed_url("alipay.trade.query", {"out_trade_no": out_trade_no}))).status_code == 503
    assert alipay_emulator.trades == {} and sum(alipay_emulator.calls.values()) == 0
    alipay_emulator.down = False
    assert (await get(url)).status_code == 303


# -- test helpers ---------------------------------------------------------------------------------------


async def test_signed_notification_and_notify(merchant: Merchant, alipay_emulator: AlipayEmulator,
                                              alipay_receiver: Receiver) -> None:
    with pytest.raises(KeyError, match="never opened"):
        alipay_emulator.signed_notification("pr_unknown", "TRADE_SUCCESS")
    url, out_trade_no = merchant.page_url(alipay_receiver)
    await get(url)
    form = alipay_emulator.signed_notification(out_trade_no, "TRADE_SUCCESS", total_amount="0.01",
                                               subject=None, out_trade_no="other")
    assert form["total_amount"] == "0.01" and "subject" not in form and form["out_trade_no"] == "other"
    assert merchant.sdk.verify({k: v for k, v in form.items() if k != "sign"}, form["sign"])
    assert alipay_emulator.trades[out_trade_no].status == "WAIT_BUYER_PAY"  # the trade is untouched

    form = alipay_emulator.signed_notification(out_trade_no, "TRADE_SUCCESS")
    assert await alipay_emulator.notify(form) == 200
    assert alipay_receiver.bodies == [urlencode(form).encode()]
    assert alipay_emulator.webhooks_sent == [(form["notify_id"], 200)]
