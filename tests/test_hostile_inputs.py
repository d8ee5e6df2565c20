"""Hostile inputs over real HTTP, against payrelay on real Redis in front of all three emulators:
deep nesting, lone surrogates, NUL and other control characters, huge numbers, arbitrary JSON and
arbitrary bytes in every field, query parameter, path parameter, header and webhook body.

Whatever comes in, the answer is never a 5xx; a refusal is an RFC 9457 problem with the request's
trace id (Cloudreve: HTTP 200 with ``{"code": <non-zero>, "error": …}``, its own format), and a
refusal changes nothing in Redis (the key set is compared before and after every request)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
import pytest
import redis
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.cloudreve_auth import sign_get, sign_post
from tests.conftest import API_KEY, Relay, StartRelay

CLOUDREVE_KEY = "hostile-communication-key-" + "h" * 16
SITE = {"X-Cr-Version": "4.0.0", "X-Cr-Site-Id": "b7de8bba-8f86-40fe-8171-c2625b6c4a61",
        "X-Cr-Site-Url": "https://cr.example.com"}
EXAMPLES = int(os.environ.get("PAYRELAY_FUZZ_EXAMPLES", "60"))
DERANDOMIZE = "PAYRELAY_FUZZ_EXAMPLES" not in os.environ  # CI: the same cases every run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                suppress_health_check=list(HealthCheck), print_blob=True)

# Characters that have broken services before: lone surrogates (valid JSON escapes, not text),
# NUL and other C0/C1 controls, separators JSON allows raw, a BOM, astral and CJK characters.
HOSTILE = ["\ud800", "\udfff", "\udc80", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029",
           "\ufeff", "\ufffd", "\U0001f600", "包", "\r\n", "\t", " ", "%00", "%ff", "\\", '"', "../"]
STRING_FIELDS = ["transactionId", "amount", "currency", "date", "paymentGatewayType", "completePayRedirectUrl",
                 "cancelPayRedirectUrl", "customerIdentifier", "description", "notifyUrl"]


def valid(gateway: str = "stripe-connect") -> dict[str, Any]:
    body: dict[str, Any] = {
        "transactionId": f"hostile-{uuid.uuid4().hex[:16]}",
        "amount": "25.00",
        "currency": "USD" if gateway == "stripe-connect" else "CNY",
        "date": "2026-11-21",
        "paymentGatewayType": gateway,
        "completePayRedirectUrl": "https://shop.example/done",
        "cancelPayRedirectUrl": "https://shop.example/cancel",
        "onlineScenario": True,
        "customerIdentifier": "buyer@example.com",
        "description": "10 GB storage pack",
        "notifyUrl": "https://shop.example/hooks/payrelay",
    }
    return body


def cloudreve_order() -> dict[str, Any]:
    number = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().int.__str__()[:12]
    return {"name": "10 GB 容量包", "order_no": number, "amount": 8900, "currency": "USD",
            "notify_url": f"https://cr.example.com/api/v4/callback/custom/{number}"}


def encode(body: Any, raw_utf8: bool = False) -> bytes:
    """JSON as a client would send it: escapes (``\\ud800`` stays an escape), or raw UTF-8 where a
    lone surrogate becomes the bytes no UTF-8 decoder accepts."""
    if raw_utf8:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


def nested(depth: int, field: str = "description") -> bytes:
    return b'{"' + field.encode() + b'":' + b"[" * depth + b"]" * depth + b"}"


class Keys:
    """The Redis key set, to show that a refusal changed nothing."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def snapshot(self) -> set[bytes]:
        return set(self.redis.keys("*"))


@pytest.fixture
def relay(start_relay: StartRelay, stripe_emulator: Any, alipay_emulator: Any, wechat_emulator: Any) -> Relay:
    # no workers: nothing but the requests themselves writes to Redis
    return start_relay(stripe_emulator, alipay_emulator, wechat_emulator, workers=False,
                       PAYRELAY_CLOUDREVE_KEY=CLOUDREVE_KEY)


@pytest.fixture
def http(relay: Relay) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        yield client


@pytest.fixture
def keys(relay: Relay) -> Keys:
    return Keys(relay.env["PAYRELAY_REDIS_URL"])


def assert_problem(response: httpx.Response) -> dict[str, Any]:
    """A 4xx RFC 9457 problem that carries the request's trace id, in the header and the body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.text[:500]
    problem = response.json()
    assert problem["status"] == response.status_code and isinstance(problem["code"], str)
    assert problem["traceId"] and problem["traceId"] == response.headers["trace-id"]
    return dict(problem)


def assert_cloudreve_refusal(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    assert response.headers["trace-id"]
    answer = response.json()
    assert isinstance(answer["code"], int) and answer["code"] != 0, answer
    assert isinstance(answer["error"], str) and answer["error"]
    return dict(answer)


def post_api(http: httpx.Client, keys: Keys, body: bytes, **headers: str) -> httpx.Response:
    """POST /api/transactions; when refused, nothing in Redis may have changed."""
    before = keys.snapshot()
    response = http.post("/api/transactions", content=body,
                         headers={"Content-Type": "application/json", **headers})
    assert response.status_code < 500, (response.status_code, response.text[:500], body[:300])
    if response.status_code != 200:
        assert_problem(response)
        assert keys.snapshot() == before, body[:300]
    return response


def post_cloudreve(http: httpx.Client, keys: Keys, body: bytes, gateway: str = "stripe-connect",
                   headers: dict[str, str] | None = None) -> httpx.Response:
    """A create signed with the right key, as Cloudreve signs it; refused → nothing changed."""
    path = f"/cloudreve/{gateway}"
    sent = SITE if headers is None else headers
    # Go signs url.Path, the decoded path
    authorization = sign_post(CLOUDREVE_KEY, unquote(path), sent, body, int(time.time()) + 60)
    before = keys.snapshot()
    response = http.post(path, content=body, headers={
        **{name: value.encode("latin-1") for name, value in sent.items()},  # type: ignore[misc]
        "Authorization": authorization, "User-Agent": "Cloudreve/4.0.0"})
    assert response.status_code == 200, (response.status_code, response.text[:500], body[:300])
    if response.json().get("code") != 0:
        assert_cloudreve_refusal(response)
        assert keys.snapshot() == before, body[:300]
    return response


# ---- the cases the hostile run found -------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_100, 5_000, 30_000])
def test_deep_nesting_is_a_400(http: httpx.Client, keys: Keys, depth: int) -> None:
    problem = assert_problem(post_api(http, keys, nested(depth)))
    assert problem["code"] == "invalid_json"
    answer = assert_cloudreve_refusal(post_cloudreve(http, keys, nested(depth, "name")))
    assert answer["code"] == 40001


def _poisoned(field: str, bad: str, at: int) -> dict[str, Any]:
    body = valid()
    value = str(body[field])
    body[field] = value[:at] + bad + value[at:]  # inside the value, where a prefix check would miss it
    return body


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_a_string_that_is_not_text_is_a_400_naming_its_field(http: httpx.Client, keys: Keys, field: str) -> None:
    for bad, at, raw_utf8 in itertools.product(["\ud800", "\udfff", "\x00", "\x1b", "\n"], [2, -2], [False, True]):
        problem = assert_problem(post_api(http, keys, encode(_poisoned(field, bad, at), raw_utf8)))
        if problem["code"] == "invalid_json":  # raw: not UTF-8, or a raw control character JSON forbids
            assert raw_utf8, (bad, at, problem)
        else:
            assert problem["param"] == field, (bad, at, raw_utf8, problem)


@pytest.mark.parametrize("field", ["completePayRedirectUrl", "cancelPayRedirectUrl", "notifyUrl", "customerIdentifier"])
@pytest.mark.parametrize("bad", ["\x7f", "\x85", "\x9b"])
def test_urls_and_emails_take_no_del_or_c1_controls(http: httpx.Client, keys: Keys, field: str, bad: str) -> None:
    problem = assert_problem(post_api(http, keys, encode(_poisoned(field, bad, -2 if "Url" in field else 2))))
    assert problem["param"] == field, problem


@pytest.mark.parametrize("name", ["\ud800", "a\x00b", "\udcff" * 3])
def test_an_unknown_field_that_is_not_text_is_named_safely(http: httpx.Client, keys: Keys, name: str) -> None:
    problem = assert_problem(post_api(http, keys, encode({**valid(), name: 1})))
    assert problem["code"] == "unknown_field" and problem["param"]


@pytest.mark.parametrize("body", [
    b'{"amount": 1' + b"0" * 5000 + b"}",  # past Python's int digit limit
    b'{"amount": 1e999999}',
    b'{"amount": NaN}',
    b'{"amount": -Infinity}',
    b"\xef\xbb\xbf{}",
    b'{"a":1,"a":2}',
    b"",
    b"\x00",
])
def test_odd_json_is_a_400(http: httpx.Client, keys: Keys, body: bytes) -> None:
    assert_problem(post_api(http, keys, body))


@pytest.mark.parametrize("field", ["name", "order_no", "notify_url", "currency"])
@pytest.mark.parametrize("bad", ["\ud800", "\x00"])
def test_cloudreve_refuses_strings_that_are_not_text(http: httpx.Client, keys: Keys, field: str, bad: str) -> None:
    order = cloudreve_order()
    order[field] = order[field][:6] + bad + order[field][6:]
    answer = assert_cloudreve_refusal(post_cloudreve(http, keys, encode(order)))
    assert answer["code"] == 40001


@pytest.mark.parametrize("site_url", ["https://cr.example.com/\x85", "https://cr.\xff.example/", "https://cr.example.com/\xa0x"])
def test_cloudreve_refuses_a_site_url_with_control_or_odd_bytes(http: httpx.Client, keys: Keys, site_url: str) -> None:
    answer = assert_cloudreve_refusal(post_cloudreve(http, keys, encode(cloudreve_order()),
                                                     headers={**SITE, "X-Cr-Site-Url": site_url}))
    assert answer["code"] in (40001, 40002)


@pytest.mark.parametrize("path", ["/api/transactions/%ED%A0%80", "/api/transactions/%00",
                                  "/api/transactions/pr_%FF%FE", "/api/transactions/x/close",
                                  "/api/transactions/%C0%AF/qrcode.svg", "/api/transactions?transactionId=%ED%A0%80",
                                  "/api/transactions?transactionId=%00", "/api/transactions/x?sync=%ED%A0%80"])
def test_odd_paths_and_queries_are_4xx_problems(http: httpx.Client, keys: Keys, path: str) -> None:
    before = keys.snapshot()
    response = http.request("POST" if path.endswith("/close") else "GET", path)
    assert_problem(response)
    assert keys.snapshot() == before


# ---- properties: anything at all, in every field ---------------------------------------------------

hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),  # every code point, surrogates too
    st.lists(st.sampled_from(HOSTILE) | st.text(max_size=4), max_size=6).map("".join),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
                        st.floats(), hostile_text)
# Any header value HTTP allows (RFC 9110 field-value: visible ASCII, obs-text, inner SP/HTAB); what
# it does not allow (NUL, CR, LF…) uvicorn refuses before payrelay sees it (README, Errors).
FIELD_VALUES = st.binary(max_size=60).map(
    lambda raw: bytes(b for b in raw if b in b" \t" or 0x21 <= b <= 0x7E or b >= 0x80).strip(b" \t"))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(hostile_text, inner, max_size=4), max_leaves=12)


@st.composite
def hostile_bodies(draw: st.DrawFn, base: Any) -> bytes:
    """A valid body as it is; or with some fields poisoned (a hostile piece inside the value) or replaced by any
    JSON at all, unknown fields added; or any JSON; or deep nesting; or any bytes."""
    kind = draw(st.sampled_from(["as-is", "poisoned", "poisoned", "replaced", "any", "nested", "bytes"]))
    if kind == "as-is":  # so that refusing everything would not pass
        return encode(base())
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "nested":
        return nested(draw(st.integers(min_value=900, max_value=30_000)), draw(st.sampled_from(sorted(base()))))
    if kind == "any":
        return encode(draw(json_values), draw(st.booleans()))
    body = base()
    for field in draw(st.lists(st.sampled_from(sorted(body)), min_size=1, max_size=3, unique=True)):
        if kind == "replaced":
            body[field] = draw(json_values)
        else:
            value = str(body[field])
            at = draw(st.integers(min_value=0, max_value=len(value)))
            body[field] = value[:at] + draw(hostile_text) + value[at:]
    body.update(draw(st.dictionaries(hostile_text, json_values, max_size=2)))
    return encode(body, draw(st.booleans()))


@pytest.mark.slow
def test_any_create_body_is_answered_without_5xx_and_refusals_change_nothing(
        http: httpx.Client, keys: Keys) -> None:
    gateways = st.sampled_from(["stripe-connect", "alipay-page", "wechat-pay-native"])

    statuses: Counter[int] = Counter()

    @FUZZ
    @given(body=gateways.flatmap(lambda g: hostile_bodies(lambda: valid(g))))
    def run(body: bytes) -> None:
        statuses[post_api(http, keys, body).status_code] += 1

    run()
    print(f"creates answered: {dict(sorted(statuses.items()))}")
    assert statuses[200] and statuses[400], statuses  # some hostile text is text: taken, not refused


@pytest.mark.slow
def test_any_cloudreve_order_is_answered_in_cloudreves_format(http: httpx.Client, keys: Keys) -> None:
    # what a client can put in a header at all (h11 refuses controls and outer whitespace)
    header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF).filter(lambda c: c != "\x7f"),
                          max_size=40).map(lambda text: text.strip(" "))

    codes: Counter[int] = Counter()

    @FUZZ
    @given(body=hostile_bodies(cloudreve_order), site_id=st.just(SITE["X-Cr-Site-Id"]) | header_text,
           site_url=st.just(SITE["X-Cr-Site-Url"]) | header_text,
           gateway=st.sampled_from(["stripe-connect", "alipay-page", "wechat-pay-native", "x\x85"]))
    def run(body: bytes, site_id: str, site_url: str, gateway: str) -> None:
        headers = {**SITE, "X-Cr-Site-Id": site_id, "X-Cr-Site-Url": site_url}
        codes[post_cloudreve(http, keys, body, quote(gateway), headers).json()["code"]] += 1

    run()
    print(f"Cloudreve creates answered: {dict(sorted(codes.items()))}")
    assert codes[0] and codes[40001], codes


@pytest.mark.slow
def test_any_query_path_and_header_is_a_4xx_problem(http: httpx.Client, keys: Keys) -> None:
    # "" would be another route (Starlette redirects the trailing slash)
    segment = hostile_text.filter(bool).map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe=""))

    @FUZZ
    @given(template=st.sampled_from(["/api/transactions/{}", "/api/transactions/{}/close",
                                     "/api/transactions/{}/qrcode.svg", "/api/transactions?transactionId={}",
                                     "/api/transactions/pr_00x?sync={}", "/api/transactions/{}?sync=true",
                                     "/api/transactions/{}/deliveries", "/api/transactions/{}/deliveries/d/retry",
                                     "/api/transactions/pr_00x/deliveries/{}/retry"]),
           value=segment, trace=FIELD_VALUES)
    def run(template: str, value: str, trace: bytes) -> None:
        before = keys.snapshot()
        method = "POST" if template.endswith(("/close", "/retry")) else "GET"
        response = http.request(method, template.format(value), headers={"trace-id": trace})
        assert response.status_code < 500, (response.status_code, response.text[:300])
        assert_problem(response)
        assert keys.snapshot() == before

    run()


@pytest.mark.slow
def test_any_cloudreve_query_is_answered_in_cloudreves_format(http: httpx.Client, keys: Keys) -> None:
    @FUZZ
    @given(order_no=hostile_text, gateway=st.sampled_from(["stripe-connect", "wechat-pay-native"]))
    def run(order_no: str, gateway: str) -> None:
        path = f"/cloudreve/{gateway}"
        query = urlencode({"order_no": order_no.encode("utf-8", "surrogatepass"),
                           "sign": sign_get(CLOUDREVE_KEY, path, int(time.time()) + 60)})
        before = keys.snapshot()
        assert_cloudreve_refusal(http.get(f"{path}?{query}"))
        assert keys.snapshot() == before

    run()


@pytest.mark.slow
def test_any_webhook_body_is_refused_without_5xx_and_changes_nothing(http: httpx.Client, keys: Keys) -> None:
    form = st.lists(st.tuples(hostile_text, hostile_text), max_size=6).map(
        lambda pairs: urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                                 for k, v in pairs]).encode())
    signed_looking = st.fixed_dictionaries({"sign_type": st.just("RSA2"), "sign": st.just("QUJD"),
                                            "out_trade_no": hostile_text, "trade_status": hostile_text}).map(
        lambda d: urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in d.items()}).encode())
    bodies = st.one_of(form, signed_looking, st.binary(max_size=300), json_values.map(encode),
                       st.integers(min_value=900, max_value=20_000).map(lambda n: b"[" * n + b"]" * n))

    @FUZZ
    @given(gateway=st.sampled_from(["stripe", "alipay", "wechat", "paypal", "%ED%A0%80"]), body=bodies,
           content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain"]),
           signature=FIELD_VALUES)
    def run(gateway: str, body: bytes, content_type: str, signature: bytes) -> None:
        before = keys.snapshot()
        response = http.post(f"/webhooks/{gateway}", content=body, headers={
            "Content-Type": content_type, "Stripe-Signature": signature, "Wechatpay-Signature": signature,
            "Wechatpay-Timestamp": signature, "Wechatpay-Serial": signature, "Wechatpay-Nonce": signature})
        assert response.status_code < 500, (response.status_code, response.text[:300])
        assert 400 <= response.status_code < 500 and response.headers["trace-id"]
        assert keys.snapshot() == before

    run()


def test_an_unexpected_error_is_a_500_problem_with_the_trace_id(relay: Relay, http: httpx.Client) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    relay.app.router.routes.append(Route("/broken", broken))  # a route with a bug, to reach the boundary
    response = http.get("/broken", headers={"trace-id": "hostile-trace-1"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["trace-id"] == "hostile-trace-1"
    assert response.json()["traceId"] == "hostile-trace-1" and response.json()["code"] == "internal_error"
    assert "a bug" not in response.text


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\ntrace-id: a\rb\r\n\r\n",  # a bare CR in a header
    b"GET /healthz HTTP/1.1\r\nHost: x\r\ntrace-id: a\x00b\r\n\r\n",  # NUL in a header
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A\nB: c\r\n\r\n",  # a bare LF inside a header line
    b"POST /api/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /api/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /api/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
], ids=["bare-cr", "nul", "bare-lf", "two-content-lengths", "length-and-chunked", "negative-length"])
def test_http_level_errors_are_uvicorns_plain_400(relay: Relay, keys: Keys, request_bytes: bytes) -> None:
    """What the HTTP parser refuses never reaches payrelay: uvicorn answers a plain-text 400 without
    a trace id and closes the connection (README, "API"). Nothing is stored."""
    before = keys.snapshot()
    host, port = relay.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request_bytes)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: text/plain" in head.lower() and b"trace-id" not in head.lower()
    assert body == b"Invalid HTTP request received."
    assert keys.snapshot() == before


# -- genuinely signed webhooks with hostile content: only a gateway (or a holder of its secret)
# can send one, and still the answer is the gateway's own refusal, never a 500 --------------------

DEEP = b'{"a":' * 5_000 + b"1" + b"}" * 5_000


async def test_signed_stripe_event_nested_too_deeply_is_refused(start_relay: StartRelay,
                                                                stripe_emulator: Any) -> None:
    relay = start_relay(stripe_emulator)
    header = stripe.WebhookSignature.generate_signature_header(DEEP.decode(), stripe_emulator.webhook_secret)
    async with httpx.AsyncClient(base_url=relay.url) as client:
        answer = await client.post("/webhooks/stripe", content=DEEP, headers={"Stripe-Signature": header})
    assert answer.status_code == 400, answer.text


async def test_signed_wechat_callback_nested_too_deeply_is_refused(start_relay: StartRelay,
                                                                   wechat_emulator: Any) -> None:
    relay = start_relay(wechat_emulator)
    headers = wechat_emulator._signature_headers(DEEP)  # signed by the platform key like WeChat's own
    async with httpx.AsyncClient(base_url=relay.url) as client:
        answer = await client.post("/webhooks/wechat", content=DEEP,
                                   headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["code"] == "FAIL", answer.text
