"""Cloudreve v4 request signing: the GATEWAYS.md vector, our own vectors, and every refusal."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from service.cloudreve_auth import (
    CloudreveAuthError,
    canonical_header_name,
    post_content,
    sign_content,
    sign_get,
    sign_post,
    signed_headers,
    verify_get,
    verify_post,
)

# The vector in GATEWAYS.md (Cloudreve custom payment provider).
KEY = "test-communication-key"
PATH = "/cloudreve/order"
EXPIRES = 1893456000
HEADERS = {
    "X-Cr-Site-Url": "https://cr.example.com",
    "X-Cr-Site-Id": "b7de8bba-8f86-40fe-8171-c2625b6c4a61",
    "X-Cr-Version": "4.0.0",
}
BODY = (
    '{"name":"Pro <plan> & 10 GB 容量包","order_no":"20250612141601003370839825",'
    '"notify_url":"https://cr.example.com/api/v4/callback/custom/20250612141601003370839825",'
    '"amount":8900,"currency":"CNY"}'
)
AUTHORIZATION = "Bearer Cr fCXWBs1S8018tZIiWWaE4JikeWmFvnQYQUKHy-0ssfw=:1893456000"
GET_SIGN = "YN4UBeZ3hU2TUIryTm4S56KGRZ0npDnl6vO2qK2bBho=:1893456000"
NOW = EXPIRES - 60

# Our own vectors, computed by service.cloudreve_auth and confirmed byte for byte (content, POST
# Authorization and GET sign) by a separate throw-away Go program (go1.19, Debian's golang-go)
# written from Cloudreve v4's pkg/auth: net/http Header.Add for the headers (so Go canonicalises
# the names), the X-Cr-* filter without X-Cr-Filename, sort.Strings, encoding/json.Marshal of
# struct{Path, Header, Body string}, crypto/hmac + sha256, base64.URLEncoding. Vector 3 has no
# \b or \f: Go before 1.22 wrote those as \u0008/\u000c.
KEY2 = "k3y with ünïcode & <marks>"
PATH2 = "/cloudreve/alipay-page"
EXPIRES2 = 1900000000
HEADERS2 = {  # names in any case; a repeated name keeps its first value; two are not signed
    "x-cr-version": "4.1.2",
    "X-CR-SITE-ID": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "x-cr-site-url": "https://云盘.example.cn/a?b=1&c=<2>",
    "x-cr-filename": "ignored.txt",
    "user-agent": "Cloudreve/4.1.2",
    "x-cr-site-id": "second value is not signed",
}
BODY2 = (
    '{"name":"Fünf <Pläne> & “Ω” \u2028 10 GB 容量包 🚀 \u2029","order_no":"20250612141601003370839826",'
    '"notify_url":"https://云盘.example.cn/api/v4/callback/custom/20250612141601003370839826?a=1&b=2",'
    '"amount":100,"currency":"CNY"}'
)
CONTENT2 = (
    '{"Path":"/cloudreve/alipay-page","Header":"X-Cr-Site-Id=0f8fad5b-d9cb-469f-a165-70867728950e'
    '\\u0026X-Cr-Site-Url=https://云盘.example.cn/a?b=1\\u0026c=\\u003c2\\u003e\\u0026X-Cr-Version=4.1.2",'
    '"Body":"{\\"name\\":\\"Fünf \\u003cPläne\\u003e \\u0026 “Ω” \\u2028 10 GB 容量包 🚀 \\u2029\\",'
    '\\"order_no\\":\\"20250612141601003370839826\\",\\"notify_url\\":\\"https://云盘.example.cn/api/v4/'
    'callback/custom/20250612141601003370839826?a=1\\u0026b=2\\",\\"amount\\":100,\\"currency\\":\\"CNY\\"}"}'
)
AUTHORIZATION2 = "Bearer Cr TQLMbgPMPoU1NQHPaZFgQI9qW-bF6_FrIvyGYBR1Rv0=:1900000000"
GET_SIGN2 = "AGyAISbjSsEpiyvw07WxZ_jdgkeudyeA-CN4-VLzhgU=:1900000000"

PATH3 = "/cloudreve/wechat-pay-native"
BODY3 = b'tab\there\nnl\r\x01\x1f\x7f "q" \\ bad:\xff\xe2\x82A\xed\xa0\x80 ok:\xef\xbf\xbd'
CONTENT3 = (
    '{"Path":"/cloudreve/wechat-pay-native","Header":"X-Cr-Version=4.0.0","Body":"tab\\there\\nnl\\r'
    '\\u0001\\u001f\x7f \\"q\\" \\\\ bad:\\ufffd\\ufffd\\ufffdA\\ufffd\\ufffd\\ufffd ok:\ufffd"}'
)
AUTHORIZATION3 = "Bearer Cr PMicDiYkiV75EiSws9od5b_Z6MhqTYHc3-G2BUft4dc=:1893456000"


def test_gateways_md_post_vector() -> None:
    assert sign_post(KEY, PATH, HEADERS, BODY, EXPIRES) == AUTHORIZATION
    verify_post(KEY, PATH, HEADERS, BODY, AUTHORIZATION, now=NOW)


def test_gateways_md_get_vector() -> None:
    assert sign_get(KEY, PATH, EXPIRES) == GET_SIGN
    verify_get(KEY, PATH, GET_SIGN, now=NOW)


def test_post_vector_as_starlette_hands_it_over() -> None:
    """Lower-cased names, other headers around, the body as bytes, the key as bytes."""
    raw = [(b"host", b"payrelay.example.com"), (b"user-agent", b"Cloudreve/4.0.0")]
    raw += [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]
    verify_post(KEY.encode(), PATH, Headers(raw=raw), BODY.encode(), AUTHORIZATION, now=NOW)


def test_own_vector_non_ascii_html_characters_and_line_separators() -> None:
    assert post_content(PATH2, HEADERS2, BODY2) == CONTENT2
    assert sign_post(KEY2, PATH2, HEADERS2, BODY2, EXPIRES2) == AUTHORIZATION2
    assert sign_get(KEY2, PATH2, EXPIRES2) == GET_SIGN2
    verify_post(KEY2, PATH2, HEADERS2, BODY2, AUTHORIZATION2, now=EXPIRES2)
    verify_get(KEY2, PATH2, GET_SIGN2, now=EXPIRES2)


def test_own_vector_through_starlette_headers() -> None:
    """Starlette decodes header bytes as latin-1: the UTF-8 site URL arrives as mojibake."""
    raw = [(name.lower().encode(), value.encode()) for name, value in HEADERS2.items()]
    headers = Headers(raw=raw)
    assert "云盘" not in headers["x-cr-site-url"]
    assert post_content(PATH2, headers, BODY2.encode()) == CONTENT2
    verify_post(KEY2, PATH2, headers, BODY2.encode(), AUTHORIZATION2, now=EXPIRES2)


def test_own_vector_control_characters_and_invalid_utf8() -> None:
    headers = {"X-Cr-Version": "4.0.0"}
    assert post_content(PATH3, headers, BODY3) == CONTENT3
    assert sign_post(KEY, PATH3, headers, BODY3, EXPIRES) == AUTHORIZATION3


def test_backspace_and_form_feed_as_go_1_22_writes_them() -> None:
    assert post_content("/p", {}, "\b\f") == '{"Path":"/p","Header":"","Body":"\\b\\f"}'


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("x-cr-site-url", "X-Cr-Site-Url"),
        ("X-CR-SITE-ID", "X-Cr-Site-Id"),
        ("x-cr-version", "X-Cr-Version"),
        ("content-type", "Content-Type"),
        ("x-cr--double", "X-Cr--Double"),
        ("x-cr-a1b", "X-Cr-A1b"),
        ("x_cr_under", "X_cr_under"),
        ("x-cr-bad name", "x-cr-bad name"),  # a space: Go leaves it as it is
        ("x-cr-ünï", "x-cr-ünï"),  # not a token
        ("", ""),
    ],
)
def test_canonical_header_name(name: str, canonical: str) -> None:
    assert canonical_header_name(name) == canonical


def test_signed_headers_filter_and_order() -> None:
    assert signed_headers(HEADERS) == (
        "X-Cr-Site-Id=b7de8bba-8f86-40fe-8171-c2625b6c4a61&X-Cr-Site-Url=https://cr.example.com&X-Cr-Version=4.0.0"
    )
    assert signed_headers({"X-Cr-Filename": "a.txt", "Authorization": "x", "X-Crx": "y"}) == ""


def test_sign_content_is_padded_urlsafe_base64() -> None:
    sig = sign_content(KEY, "anything", 1)
    assert len(sig) == 44 and sig.endswith("=")
    assert "+" not in sig and "/" not in sig


def reason(excinfo: pytest.ExceptionInfo[CloudreveAuthError]) -> str:
    return excinfo.value.reason


def test_wrong_key_is_refused() -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post("another-key", PATH, HEADERS, BODY, AUTHORIZATION, now=NOW)
    assert reason(excinfo) == "bad_signature"
    assert "another-key" not in str(excinfo.value)
    with pytest.raises(CloudreveAuthError, match="does not match"):
        verify_get("another-key", PATH, GET_SIGN, now=NOW)


def test_expired_is_refused() -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post(KEY, PATH, HEADERS, BODY, AUTHORIZATION, now=EXPIRES + 1)
    assert reason(excinfo) == "expired"
    with pytest.raises(CloudreveAuthError, match="expired"):
        verify_get(KEY, PATH, GET_SIGN, now=EXPIRES + 1)
    verify_get(KEY, PATH, GET_SIGN, now=EXPIRES)  # the last second still counts, as in Cloudreve


def test_zero_expiry_is_refused() -> None:
    """Cloudreve's own checker takes 0 as 'never expires'; a payment provider must not."""
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_get(KEY, PATH, sign_get(KEY, PATH, 0), now=NOW)
    assert reason(excinfo) == "expired"


def test_changed_expiry_is_refused() -> None:
    sig = AUTHORIZATION.rpartition(":")[0]
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post(KEY, PATH, HEADERS, BODY, f"{sig}:{EXPIRES + 3600}", now=NOW)
    assert reason(excinfo) == "bad_signature"


def test_tampered_body_is_refused() -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post(KEY, PATH, HEADERS, BODY.replace("8900", "89"), AUTHORIZATION, now=NOW)
    assert reason(excinfo) == "bad_signature"


@pytest.mark.parametrize(
    "headers",
    [
        {**HEADERS, "X-Cr-Site-Url": "https://evil.example.com"},
        {k: v for k, v in HEADERS.items() if k != "X-Cr-Version"},
        {**HEADERS, "X-Cr-Extra": "1"},
    ],
    ids=["changed", "removed", "added"],
)
def test_tampered_header_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post(KEY, PATH, headers, BODY, AUTHORIZATION, now=NOW)
    assert reason(excinfo) == "bad_signature"


def test_unsigned_headers_may_change() -> None:
    headers = {**HEADERS, "User-Agent": "curl/8", "X-Cr-Filename": "x", "Content-Length": "1"}
    verify_post(KEY, PATH, headers, BODY, AUTHORIZATION, now=NOW)


def test_other_path_is_refused() -> None:
    with pytest.raises(CloudreveAuthError, match="does not match"):
        verify_post(KEY, "/cloudreve/other", HEADERS, BODY, AUTHORIZATION, now=NOW)
    with pytest.raises(CloudreveAuthError, match="does not match"):
        verify_get(KEY, "/cloudreve/other", GET_SIGN, now=NOW)


@pytest.mark.parametrize("authorization", [None, ""])
def test_missing_authorization(authorization: str | None) -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post(KEY, PATH, HEADERS, BODY, authorization, now=NOW)
    assert reason(excinfo) == "missing"


@pytest.mark.parametrize("sign", [None, ""])
def test_missing_sign(sign: str | None) -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_get(KEY, PATH, sign, now=NOW)
    assert reason(excinfo) == "missing"


SIG = GET_SIGN.rpartition(":")[0]


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {GET_SIGN}",  # Cloudreve v3's prefix
        f"Bearer Cr{GET_SIGN}",
        f"bearer cr {GET_SIGN}",
        GET_SIGN,
        "Bearer Cr ",
        f"Bearer Cr {SIG}",
        f"Bearer Cr {SIG}:",
        f"Bearer Cr :{EXPIRES}",
        f"Bearer Cr {SIG}:-1",
        f"Bearer Cr {SIG}:+{EXPIRES}",
        f"Bearer Cr {SIG}: {EXPIRES}",
        f"Bearer Cr {SIG}:{EXPIRES}.5",
        f"Bearer Cr {SIG}:{'9' * 20}",
        f"Bearer Cr {SIG.rstrip('=')}:{EXPIRES}",
        f"Bearer Cr +{SIG[1:]}:{EXPIRES}",  # standard, not URL-safe, base64
        f"Bearer Cr {SIG}x:{EXPIRES}",
        f"Bearer Cr {SIG[:-2]}é=:{EXPIRES}",
        f"Bearer Cr {SIG}:{EXPIRES}:{EXPIRES}",
    ],
)
def test_malformed_authorization(authorization: str) -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_post(KEY, PATH, HEADERS, BODY, authorization, now=NOW)
    assert reason(excinfo) == "malformed"


@pytest.mark.parametrize("sign", [SIG, f"{SIG}:", f"{SIG}:abc", "x:1", f"Bearer Cr {GET_SIGN}"])
def test_malformed_sign(sign: str) -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_get(KEY, PATH, sign, now=NOW)
    assert reason(excinfo) == "malformed"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: verify_post(KEY, PATH, HEADERS, BODY, None, now=NOW), "the Authorization header is missing"),
    (lambda: verify_post(KEY, PATH, HEADERS, BODY, "Cr x:1", now=NOW),
     "the Authorization header must be 'Bearer Cr <signature>:<expires>'"),
    (lambda: verify_post(KEY, PATH, HEADERS, BODY, "Bearer Cr x:1", now=NOW),
     "the Authorization header must be '<signature>:<expires>'"),
    (lambda: verify_post(KEY, PATH, HEADERS, BODY + " ", AUTHORIZATION, now=NOW),
     "the signature does not match: a different communication key, or the request was changed"),
    (lambda: verify_get(KEY, PATH, None, now=NOW), "the sign query parameter is missing"),
    (lambda: verify_get(KEY, PATH, "x:1", now=NOW), "the sign query parameter must be '<signature>:<expires>'"),
    (lambda: verify_get(KEY, PATH, GET_SIGN, now=EXPIRES + 1.5),
     f"the signature expired at {EXPIRES} (now {EXPIRES + 1})"),
])
def test_refusals_say_exactly_why(call: Any, message: str) -> None:
    with pytest.raises(CloudreveAuthError) as excinfo:
        call()
    assert str(excinfo.value) == message


def test_without_now_the_clock_is_used() -> None:
    far = 4102444800  # 2100-01-01
    verify_get(KEY, PATH, sign_get(KEY, PATH, far))
    with pytest.raises(CloudreveAuthError) as excinfo:
        verify_get(KEY, PATH, sign_get(KEY, PATH, 1700000000))
    assert reason(excinfo) == "expired"


def test_lone_surrogates_are_the_invalid_bytes_they_stand_for() -> None:
    """A str holding surrogate-escaped bytes (how Python keeps invalid UTF-8 from the wire) is
    those bytes again wherever it is turned into bytes: Go signs the bytes, as \\ufffd in JSON."""
    assert post_content("/p\udcff", {}, "b\udcfe") == '{"Path":"/p\\ufffd","Header":"","Body":"b\\ufffd"}'
    assert signed_headers({"X-Cr-A": "€\udcff"}) == "X-Cr-A=€\udcff"  # not latin-1: UTF-8 + the raw byte
    assert signed_headers({"X-Cr-A": "\xff"}) == "X-Cr-A=\udcff"  # latin-1 0xff: invalid UTF-8 on its own
    assert canonical_header_name("x-cr-\udcff") == "x-cr-\udcff"  # not a token character: left as is
    assert sign_content(KEY, "c\udcff", EXPIRES) == sign_content(KEY.encode(), b"c\xff", EXPIRES)
