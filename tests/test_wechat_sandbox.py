"""The WeChat Pay emulator on its own, over raw HTTP: request auth, validation, signed answers,
error codes, the payment page. (tests/test_wechat_adapter.py drives it through the SDK.)"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.wechat import PaymentRefused, WechatEmulator, WechatKeys
from tests.fixtures_wechat import CallbackReceiver, official_sdk, stranger_key, wechat_config

NATIVE = "/v3/pay/transactions/native"


def authorization(
    keys: WechatKeys,
    method: str,
    target: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    serial: str | None = None,
    key: str | None = None,
    mchid: str | None = None,
) -> str:
    """WeChat's request signature, written out here independently of the SDK and the emulator."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_hex(16).upper()
    private = serialization.load_pem_private_key((key or keys.merchant_private_key).encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    message = f"{method}\n{target}\n{ts}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(private.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{mchid or keys.mchid}",nonce_str="{nonce}",'
        f'signature="{signature}",timestamp="{ts}",serial_no="{serial or keys.cert_serial_no}"'
    )


class Api:
    def __init__(self, emulator: WechatEmulator, client: httpx.AsyncClient) -> None:
        self.emulator, self.client = emulator, client

    async def call(self, method: str, target: str, payload: Any = None, **forge: Any) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {
            "Authorization": authorization(self.emulator.keys, method, target, body, **forge),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        return await self.client.request(method, target, content=body, headers=headers)

    def order(self, no: str = "order_0001", **changes: Any) -> dict[str, Any]:
        keys = self.emulator.keys
        body = {
            "appid": keys.appid,
            "mchid": keys.mchid,
            "description": "10 GB 容量包",
            "out_trade_no": no,
            "notify_url": "http://127.0.0.1:9/webhooks/wechat",
            "time_expire": "2099-11-21T10:34:56+08:00",
            "amount": {"total": 100, "currency": "CNY"},
        }
        body.update(changes)
        return body

    def query_path(self, no: str) -> str:
        return f"/v3/pay/transactions/out-trade-no/{no}?mchid={self.emulator.keys.mchid}"

    def close_path(self, no: str) -> str:
        return f"/v3/pay/transactions/out-trade-no/{no}/close"


@pytest.fixture
async def api(wechat_emulator: WechatEmulator) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=wechat_emulator.base_url, timeout=10) as client:
        yield Api(wechat_emulator, client)


def assert_signed_by_platform(emulator: WechatEmulator, answer: httpx.Response) -> None:
    key = serialization.load_pem_public_key(emulator.keys.platform_public_key.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    headers = answer.headers
    assert headers["Wechatpay-Serial"] == emulator.keys.public_key_id
    assert headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert abs(int(headers["Wechatpay-Timestamp"]) - time.time()) < 5
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + answer.content + b"\n"
    key.verify(base64.b64decode(headers["Wechatpay-Signature"]), message, padding.PKCS1v15(), hashes.SHA256())


def error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["code"]


# ---- request authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("forgery", ["stale", "future", "serial", "key", "mchid", "body", "none"])
async def test_requests_without_a_valid_signature_are_sign_errors(api: Api, forgery: str) -> None:
    payload = api.order()
    body = json.dumps(payload).encode()
    forge: dict[str, Any] = {
        "stale": {"timestamp": int(time.time()) - 305},
        "future": {"timestamp": int(time.time()) + 305},
        "serial": {"serial": "0123456789ABCDEF"},
        "key": {"key": stranger_key()},
        "mchid": {"mchid": "1900000109"},
        "body": {},
        "none": {},
    }[forgery]
    headers = {
        "Content-Type": "application/json",
        "Authorization": authorization(api.emulator.keys, "POST", NATIVE, body, **forge),
    }
    if forgery == "body":
        body = body.replace(b"100", b"1")
    if forgery == "none":
        del headers["Authorization"]
    answer = await api.client.post(NATIVE, content=body, headers=headers)
    assert error(answer) == (401, "SIGN_ERROR")
    assert "Wechatpay-Signature" not in answer.headers
    assert api.emulator.orders == {}


async def test_the_query_string_is_part_of_the_signed_target(api: Api) -> None:
    await api.call("POST", NATIVE, api.order())
    target = api.query_path("order_0001")
    headers = {"Authorization": authorization(api.emulator.keys, "GET", target.split("?")[0], b"")}
    assert error(await api.client.get(target, headers=headers)) == (401, "SIGN_ERROR")
    assert (await api.call("GET", target)).status_code == 200


# ---- create ---------------------------------------------------------------------------------------


async def test_create_answers_a_signed_code_url(api: Api) -> None:
    answer = await api.call("POST", NATIVE, api.order())
    assert answer.status_code == 200
    code_url = answer.json()["code_url"]
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    assert_signed_by_platform(api.emulator, answer)
    assert api.emulator.orders["order_0001"].code_url == code_url
    assert api.emulator.calls["create"] == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"out_trade_no": "12345"}, "out_trade_no"),
        ({"out_trade_no": "x" * 33}, "out_trade_no"),
        ({"out_trade_no": "order 0001"}, "out_trade_no"),
        ({"description": "包" * 128}, "description"),
        ({"description": "包" * 43}, "description"),  # 43 characters, but 129 bytes
        ({"description": "a" * 126 + "é"}, "description"),  # 128 bytes
        ({"description": ""}, "description"),
        ({"notify_url": "/webhooks/wechat"}, "notify_url"),
        ({"notify_url": "ftp://relay.example/hook"}, "notify_url"),
        ({"notify_url": "https://relay.example/hook?x=1"}, "notify_url"),
        ({"time_expire": "2099-11-21 10:34:56"}, "time_expire"),
        ({"time_expire": "2099-11-21T10:34:56"}, "time_expire"),
        ({"amount": {"total": 0, "currency": "CNY"}}, "amount/total"),
        ({"amount": {"total": 1.5, "currency": "CNY"}}, "amount/total"),
        ({"amount": {"total": "100", "currency": "CNY"}}, "amount/total"),
        ({"amount": {"total": 100, "currency": "USD"}}, "amount/currency"),
        ({"appid": "wx0000000000000000"}, ""),
        ({"mchid": "1900000109"}, ""),
    ],
)
async def test_create_validates_like_wechat(api: Api, changes: dict[str, Any], field: str) -> None:
    answer = await api.call("POST", NATIVE, api.order(**changes))
    assert error(answer) == (400, "PARAM_ERROR")
    assert f"/body/{field}" in answer.json()["message"] or not field
    assert api.emulator.orders == {}


async def test_description_of_127_bytes_and_the_longest_order_number_pass(api: Api) -> None:
    answer = await api.call("POST", NATIVE, api.order("a-Z_0|9*" * 4, description="包" * 42 + "a"))
    assert answer.status_code == 200


async def test_the_same_order_number(api: Api, wechat_receiver: CallbackReceiver) -> None:
    order = api.order(notify_url=f"{wechat_receiver.url}/webhooks/wechat")
    first = await api.call("POST", NATIVE, order)
    again = await api.call("POST", NATIVE, order)
    assert again.json() == first.json()
    changed = await api.call("POST", NATIVE, {**order, "amount": {"total": 101, "currency": "CNY"}})
    assert error(changed) == (400, "INVALID_REQUEST")
    await api.emulator.pay(first.json()["code_url"])
    assert error(await api.call("POST", NATIVE, order)) == (400, "ORDERPAID")

    await api.call("POST", NATIVE, api.order("order_0002"))
    await api.call("POST", api.close_path("order_0002"), {"mchid": api.emulator.keys.mchid})
    assert error(await api.call("POST", NATIVE, api.order("order_0002"))) == (400, "ORDER_CLOSED")


# ---- query and close ------------------------------------------------------------------------------


async def test_query_answers_the_transaction(api: Api) -> None:
    await api.call("POST", NATIVE, api.order())
    answer = await api.call("GET", api.query_path("order_0001"))
    assert answer.status_code == 200
    assert_signed_by_platform(api.emulator, answer)
    keys = api.emulator.keys
    assert answer.json() == {
        "appid": keys.appid,
        "mchid": keys.mchid,
        "out_trade_no": "order_0001",
        "trade_type": "NATIVE",
        "trade_state": "NOTPAY",
        "trade_state_desc": "订单未支付",
        "attach": "",
        "amount": {"total": 100, "currency": "CNY", "payer_currency": "CNY"},
    }


async def test_query_unknown_and_other_merchant(api: Api) -> None:
    missing = await api.call("GET", api.query_path("order_9999"))
    assert missing.status_code == 404 and missing.json() == {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
    await api.call("POST", NATIVE, api.order())
    other = await api.call("GET", "/v3/pay/transactions/out-trade-no/order_0001?mchid=1900000109")
    assert error(other) == (400, "PARAM_ERROR")
    assert error(await api.call("GET", "/v3/pay/transactions/out-trade-no/order_0001")) == (400, "PARAM_ERROR")


async def test_close_answers_a_signed_204(api: Api) -> None:
    await api.call("POST", NATIVE, api.order())
    answer = await api.call("POST", api.close_path("order_0001"), {"mchid": api.emulator.keys.mchid})
    assert answer.status_code == 204 and answer.content == b""
    assert_signed_by_platform(api.emulator, answer)
    assert api.emulator.transaction("order_0001")["trade_state"] == "CLOSED"
    missing = await api.call("POST", api.close_path("order_9999"), {"mchid": api.emulator.keys.mchid})
    assert error(missing) == (404, "ORDER_NOT_EXIST")
    assert error(await api.call("POST", api.close_path("order_0001"), {"mchid": "1"})) == (400, "PARAM_ERROR")


async def test_close_after_paid_is_orderpaid(api: Api, wechat_receiver: CallbackReceiver) -> None:
    code_url = (await api.call("POST", NATIVE, api.order(notify_url=f"{wechat_receiver.url}/webhooks/wechat"))).json()[
        "code_url"
    ]
    await api.emulator.pay(code_url)
    answer = await api.call("POST", api.close_path("order_0001"), {"mchid": api.emulator.keys.mchid})
    assert error(answer) == (400, "ORDERPAID")
    assert api.emulator.transaction("order_0001")["trade_state"] == "SUCCESS"


async def test_down_answers_an_unsigned_503_and_changes_nothing(api: Api) -> None:
    await api.call("POST", NATIVE, api.order())
    api.emulator.down = True
    answers = [
        await api.call("POST", NATIVE, api.order("order_0002")),
        await api.call("GET", api.query_path("order_0001")),
        await api.call("POST", api.close_path("order_0001"), {"mchid": api.emulator.keys.mchid}),
    ]
    assert [error(a) for a in answers] == [(503, "SYSTEM_ERROR")] * 3
    assert not any("Wechatpay-Signature" in a.headers for a in answers)
    assert list(api.emulator.orders) == ["order_0001"]
    assert api.emulator.transaction("order_0001")["trade_state"] == "NOTPAY"
    assert api.emulator.calls == {"create": 2, "query": 1, "close": 1}


async def test_answer_signature_knobs(api: Api) -> None:
    api.emulator.unsigned_responses = True
    unsigned = await api.call("POST", NATIVE, api.order())
    assert unsigned.status_code == 200 and "Wechatpay-Signature" not in unsigned.headers
    api.emulator.unsigned_responses = False
    api.emulator.sign_responses_with_wrong_key = True
    wrong = await api.call("GET", api.query_path("order_0001"))
    with pytest.raises(InvalidSignature):
        assert_signed_by_platform(api.emulator, wrong)


# ---- the page, the customer, callbacks ------------------------------------------------------------


async def test_the_page_shows_the_qr_code_and_the_choices(api: Api) -> None:
    code_url = (await api.call("POST", NATIVE, api.order())).json()["code_url"]
    page = await api.client.get("/pay", params={"code_url": code_url})
    assert page.status_code == 200 and "<svg" in page.text and "¥1.00" in page.text
    for outcome in ("paid", "processing", "failed", "cancel"):
        assert f'value="{outcome}"' in page.text
    assert (await api.client.get(api.emulator.page_url(code_url))).text == page.text
    assert (await api.client.get("/qr/nonexistent")).status_code == 404


async def test_scan_and_pay_sends_a_callback_the_official_sdk_verifies(
    api: Api, wechat_receiver: CallbackReceiver
) -> None:
    notify_url = f"{wechat_receiver.url}/webhooks/wechat"
    code_url = (await api.call("POST", NATIVE, api.order(notify_url=notify_url))).json()["code_url"]
    await api.emulator.pay(code_url, "paid")
    [callback] = wechat_receiver.received
    keys = api.emulator.keys
    sdk = official_sdk(keys)
    notice = sdk.callback(callback.headers, callback.body)
    assert notice is not None and notice["event_type"] == "TRANSACTION.SUCCESS"
    assert notice["resource_type"] == "encrypt-resource" and notice["summary"] == "支付成功"
    tx = notice["resource"]
    assert tx == (await api.call("GET", api.query_path("order_0001"))).json()
    assert tx["trade_state"] == "SUCCESS" and tx["transaction_id"].startswith("4200")
    assert tx["amount"] == {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"}
    assert tx["payer"]["openid"] and tx["success_time"].endswith("+08:00")
    assert api.emulator.webhooks_sent == [(notice["id"], 204)]
    with pytest.raises(PaymentRefused):
        await api.emulator.pay(code_url)


async def test_a_callback_nobody_takes_is_recorded(api: Api) -> None:
    code_url = (await api.call("POST", NATIVE, api.order())).json()["code_url"]  # notify to port 9
    await api.emulator.pay(code_url)
    assert api.emulator.webhooks_sent[0][1] is None
    assert api.emulator.transaction("order_0001")["trade_state"] == "SUCCESS"


async def test_settle_needs_a_payment_in_flight(api: Api) -> None:
    await api.call("POST", NATIVE, api.order())
    with pytest.raises(ValueError, match="not USERPAYING"):
        await api.emulator.settle("order_0001", "paid")


async def test_pay_wants_a_code_url_this_emulator_issued(api: Api) -> None:
    with pytest.raises(ValueError):
        await api.emulator.pay("https://example.com/pay")
    with pytest.raises(KeyError):
        await api.emulator.pay("weixin://wxpay/bizpayurl?pr=unknown")


def test_env_configures_payrelay(wechat_emulator: WechatEmulator) -> None:
    env = wechat_emulator.env()
    assert set(env) == {
        f"PAYRELAY_WECHAT_{name}"
        for name in (
            "MCHID",
            "APPID",
            "PRIVATE_KEY",
            "CERT_SERIAL_NO",
            "APIV3_KEY",
            "PUBLIC_KEY",
            "PUBLIC_KEY_ID",
            "API_BASE",
        )
    }
    assert len(env["PAYRELAY_WECHAT_APIV3_KEY"].encode()) == 32
    assert env["PAYRELAY_WECHAT_PUBLIC_KEY_ID"].startswith("PUB_KEY_ID_")
    assert env["PAYRELAY_WECHAT_API_BASE"] == wechat_emulator.base_url
    config = wechat_config(wechat_emulator)
    assert (config.mchid, config.api_base) == (wechat_emulator.keys.mchid, wechat_emulator.base_url)
    assert WechatEmulator.gateway_type == "wechat-pay-native"


# ---- refunds --------------------------------------------------------------------------------------

REFUNDS = "/v3/refund/domestic/refunds"


async def paid_order(api: Api, no: str = "order_0001", total: int = 100) -> dict[str, Any]:
    code_url = (await api.call("POST", NATIVE, api.order(no, amount={"total": total, "currency": "CNY"}))).json()[
        "code_url"
    ]
    await api.emulator.pay(code_url)
    return api.emulator.transaction(no)


def refund_body(no: str = "rf_0001", refund: int = 100, total: int = 100, **changes: Any) -> dict[str, Any]:
    body = {"out_trade_no": "order_0001", "out_refund_no": no, "notify_url": "http://127.0.0.1:9/webhooks/wechat",
            "amount": {"refund": refund, "total": total, "currency": "CNY"}}
    body.update(changes)
    return body


async def test_a_refund_answers_a_signed_refund_object_and_the_query_the_same(api: Api) -> None:
    tx = await paid_order(api)
    answer = await api.call("POST", REFUNDS, refund_body(refund=40, reason="尺码不合适"))
    assert answer.status_code == 200
    assert_signed_by_platform(api.emulator, answer)
    refund = answer.json()
    assert (refund["out_refund_no"], refund["out_trade_no"], refund["status"]) == ("rf_0001", "order_0001", "SUCCESS")
    assert refund["transaction_id"] == tx["transaction_id"] and refund["refund_id"].startswith("5030")
    assert refund["amount"]["refund"] == 40 and refund["amount"]["total"] == 100
    assert refund["amount"]["currency"] == "CNY" and refund["success_time"].endswith("+08:00")
    queried = await api.call("GET", f"{REFUNDS}/rf_0001")
    assert_signed_by_platform(api.emulator, queried)
    assert queried.json() == refund == api.emulator.refund("rf_0001")
    assert api.emulator.transaction("order_0001")["trade_state"] == "REFUND"
    missing = await api.call("GET", f"{REFUNDS}/rf_9999")
    assert missing.status_code == 404 and error(missing) == (404, "RESOURCE_NOT_EXISTS")
    await api.emulator.notified()


async def test_a_refund_by_transaction_id(api: Api) -> None:
    tx = await paid_order(api)
    body = refund_body(transaction_id=tx["transaction_id"])
    del body["out_trade_no"]
    assert (await api.call("POST", REFUNDS, body)).json()["out_trade_no"] == "order_0001"
    await api.emulator.notified()


@pytest.mark.parametrize(("changes", "field"), [
    ({"out_refund_no": "rf 0001"}, "out_refund_no"),
    ({"out_refund_no": "r" * 65}, "out_refund_no"),
    ({"out_trade_no": None}, "out_trade_no"),
    ({"amount": None}, "amount"),
    ({"amount": {"refund": 0, "total": 100, "currency": "CNY"}}, "amount/refund"),
    ({"amount": {"refund": 10, "total": 100}}, "amount/currency"),
    ({"reason": "包" * 27}, "reason"),  # 27 characters, 81 bytes
    ({"reason": ""}, "reason"),
    ({"notify_url": "https://relay.example/hook?x=1"}, "notify_url"),
])
async def test_refund_validates_like_wechat(api: Api, changes: dict[str, Any], field: str) -> None:
    await paid_order(api)
    answer = await api.call("POST", REFUNDS, refund_body(**changes))
    assert error(answer) == (400, "PARAM_ERROR") and f"/body/{field}" in answer.json()["message"]
    assert api.emulator.refunds == {}


async def test_refund_rules(api: Api) -> None:
    await api.call("POST", NATIVE, api.order())
    assert error(await api.call("POST", REFUNDS, refund_body())) == (404, "RESOURCE_NOT_EXISTS")  # unpaid
    await paid_order(api, "order_0002")
    wrong_total = refund_body(out_trade_no="order_0002", total=99)
    assert error(await api.call("POST", REFUNDS, wrong_total)) == (400, "INVALID_REQUEST")
    assert (await api.call("POST", REFUNDS, refund_body(out_trade_no="order_0002", refund=60))).status_code == 200
    assert error(await api.call("POST", REFUNDS, refund_body("rf_0002", 41, out_trade_no="order_0002"))) == (
        400, "INVALID_REQUEST")
    # the same out_refund_no: the same refund; with another amount or order, refused
    again = await api.call("POST", REFUNDS, refund_body(out_trade_no="order_0002", refund=60, reason="again"))
    assert again.json() == api.emulator.refund("rf_0001")
    assert error(await api.call("POST", REFUNDS, refund_body(out_trade_no="order_0002", refund=61))) == (
        400, "INVALID_REQUEST")
    assert len(api.emulator.refunds) == 1 and len(api.emulator.refund_requests) == 1
    await api.emulator.notified()


async def test_a_closed_refund_gives_the_amount_back_an_abnormal_one_does_not(api: Api) -> None:
    await paid_order(api)
    api.emulator.refund_outcome = "closed_later"
    assert (await api.call("POST", REFUNDS, refund_body("rf_0001", 100))).json()["status"] == "PROCESSING"
    await api.emulator.settle_refund("rf_0001")
    assert api.emulator.refund("rf_0001")["status"] == "CLOSED"
    api.emulator.refund_outcome = "abnormal_later"
    assert (await api.call("POST", REFUNDS, refund_body("rf_0002", 100))).status_code == 200
    await api.emulator.settle_refund("rf_0002")
    abnormal = api.emulator.refund("rf_0002")
    assert abnormal["status"] == "ABNORMAL" and "success_time" not in abnormal
    assert error(await api.call("POST", REFUNDS, refund_body("rf_0003", 1))) == (400, "INVALID_REQUEST")
    assert [sent for _, sent in api.emulator.webhooks_sent[-2:]] == [None, None]  # nobody listens on port 9


@pytest.mark.slow  # 51 refunds, signed and verified one by one
async def test_at_most_50_refunds_and_within_a_year(api: Api) -> None:
    await paid_order(api, total=1000)
    for n in range(50):
        assert (await api.call("POST", REFUNDS, refund_body(f"rf_{n:04d}", 1, 1000))).status_code == 200
    answer = await api.call("POST", REFUNDS, refund_body("rf_0050", 1, 1000))
    assert error(answer) == (400, "INVALID_REQUEST") and "50" in answer.json()["message"]
    await paid_order(api, "order_0002")
    api.emulator.advance(366 * 86400)
    late = await api.call("POST", REFUNDS, refund_body("rf_late", out_trade_no="order_0002"))
    assert error(late) == (400, "INVALID_REQUEST") and "一年" in late.json()["message"]
    await api.emulator.notified()


async def test_refund_fault_knobs(api: Api) -> None:
    await paid_order(api)
    api.emulator.refund_error = "NOT_ENOUGH"
    assert error(await api.call("POST", REFUNDS, refund_body())) == (403, "NOT_ENOUGH")
    api.emulator.refund_error = None
    api.emulator.down = True
    assert error(await api.call("POST", REFUNDS, refund_body())) == (503, "SYSTEM_ERROR")
    assert api.emulator.refunds == {}
    with pytest.raises(ValueError):
        api.emulator.refund_error = "NOTENOUGH"
    with pytest.raises(ValueError):
        api.emulator.refund_outcome = "later"  # type: ignore[assignment]
    api.emulator.down = False
    api.emulator.refund_delay = 0.3
    started = time.monotonic()
    assert (await api.call("POST", REFUNDS, refund_body())).status_code == 200
    assert time.monotonic() - started >= 0.3
    await api.emulator.notified()


async def test_the_refunds_page_chooses_outcomes_and_settles(api: Api, wechat_receiver: CallbackReceiver) -> None:
    await paid_order(api)
    page = await api.client.get("/refunds")
    assert page.status_code == 200 and 'data-refund-outcome="succeed"' in page.text
    for outcome in ("succeed", "succeed_later", "abnormal_later", "closed_later"):
        assert f'value="{outcome}"' in page.text
    assert (await api.client.post("/refunds", data={"outcome": "abnormal_later"})).status_code == 200
    assert api.emulator.refund_outcome == "abnormal_later"
    notify_url = f"{wechat_receiver.url}/webhooks/wechat"
    await api.call("POST", REFUNDS, refund_body(notify_url=notify_url))
    shown = (await api.client.get("/refunds")).text
    assert 'data-refund-status="PROCESSING"' in shown and 'value="abnormal"' in shown
    settled = await api.client.post("/refunds", data={"out_refund_no": "rf_0001", "settle": "abnormal"})
    assert settled.status_code == 200 and 'data-refund-status="ABNORMAL"' in settled.text
    [notice] = [r for r in wechat_receiver.received if b"REFUND." in r.body]
    decrypted = official_sdk(api.emulator.keys).callback(notice.headers, notice.body)
    assert decrypted is not None and decrypted["event_type"] == "REFUND.ABNORMAL"
    assert decrypted["resource"]["refund_status"] == "ABNORMAL" and decrypted["summary"] == "退款异常"
    again = await api.client.post("/refunds", data={"out_refund_no": "rf_0001", "settle": "succeed"})
    assert again.status_code == 409
    unknown = await api.client.post("/refunds", data={"out_refund_no": "rf_none", "settle": "succeed"})
    assert unknown.status_code == 404
    assert (await api.client.post("/refunds", data={"outcome": "later"})).status_code == 400
