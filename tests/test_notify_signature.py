"""Payrelay-Signature: sign and verify, as a receiver would use them."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from service.notify_signature import SignatureError, sign, verify

BODY = b'{"id":"evt_1","type":"transaction.succeeded"}'
NOW = 1_800_000_000


def test_header_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"whsec_a", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign("whsec_a", NOW, BODY) == f"t={NOW},v1={expected}"


def test_verify_answers_the_timestamp() -> None:
    assert verify(["whsec_a"], sign("whsec_a", NOW, BODY), BODY, now=NOW + 10) == NOW


def test_any_current_secret_verifies_during_rotation() -> None:
    header = sign("whsec_old", NOW, BODY)
    assert verify(["whsec_new", "whsec_old"], header, BODY, now=NOW) == NOW


def test_any_v1_entry_may_match() -> None:
    header = f"v1={'0' * 64},{sign('whsec_a', NOW, BODY)}"
    assert verify(["whsec_a"], header, BODY, now=NOW) == NOW


@pytest.mark.parametrize(("header", "body", "now", "message"), [
    (None, BODY, NOW, "missing"),
    ("", BODY, NOW, "missing"),
    ("garbage", BODY, NOW, "must look like"),
    (f"t={NOW}", BODY, NOW, "must carry"),
    ("v1=abc", BODY, NOW, "must carry"),
    (f"t=-{NOW},v1=abc", BODY, NOW, "not a Unix time"),
    (sign("whsec_a", NOW, BODY), BODY + b" ", NOW, "no signature matches"),
    (sign("whsec_other", NOW, BODY), BODY, NOW, "no signature matches"),
    (sign("whsec_a", NOW, BODY), BODY, NOW + 301, "more than 300 s"),
    (sign("whsec_a", NOW, BODY), BODY, NOW - 301, "more than 300 s"),  # from the future
])
def test_refused(header: str | None, body: bytes, now: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(["whsec_a"], header, body, now=now)


def test_tolerance_is_adjustable() -> None:
    header = sign("whsec_a", NOW, BODY)
    assert verify(["whsec_a"], header, BODY, tolerance=3600, now=NOW + 3000) == NOW
    with pytest.raises(SignatureError):
        verify(["whsec_a"], header, BODY, tolerance=5, now=NOW + 6)


def test_no_secret_is_an_error_not_a_pass() -> None:
    with pytest.raises(SignatureError, match="no secret"):
        verify(["", ""], sign("", NOW, BODY), BODY, now=NOW)


def test_without_now_the_clock_is_used() -> None:
    import time

    stamp = int(time.time())
    assert verify(["whsec_a"], sign("whsec_a", stamp, BODY), BODY) == stamp
    with pytest.raises(SignatureError, match="more than 300 s"):
        verify(["whsec_a"], sign("whsec_a", stamp - 400, BODY), BODY)


def test_tolerance_is_inclusive() -> None:
    header = sign("whsec_a", NOW, BODY)
    assert verify(["whsec_a"], header, BODY, now=NOW + 300) == NOW
    assert verify(["whsec_a"], header, BODY, now=NOW - 300) == NOW


@pytest.mark.parametrize(("stamp", "message"), [
    ("100000000000", "more than 300 s"),  # 12 digits: a Unix time (year 5138), just not now
    ("1000000000000", "not a Unix time"),  # 13 digits: milliseconds, refused as such
    (f"{NOW}=1", "not a Unix time"),  # the first "=" separates name and value
])
def test_timestamp_format(stamp: str, message: str) -> None:
    header = f"t={stamp},v1={'0' * 64}"
    with pytest.raises(SignatureError, match=message):
        verify(["whsec_a"], header, BODY, now=NOW)


def test_a_non_ascii_signature_is_no_match_not_a_crash() -> None:
    header = f"t={NOW},v1={'ü' * 64}"
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(["whsec_a"], header, BODY, now=NOW)


@pytest.mark.parametrize(("secrets", "header", "message"), [
    ([""], sign("whsec_a", NOW, BODY), "no secret to verify with"),
    (["whsec_b"], sign("whsec_a", NOW, BODY), "no signature matches: a different secret, or the body was changed"),
    (["whsec_a"], f"t={NOW}", "the Payrelay-Signature header must carry t= and v1="),
    (["whsec_a"], "t", "the Payrelay-Signature header must look like t=<unix>,v1=<hex>"),
    (["whsec_a"], f"t={NOW - 301},v1=0", f"the signature's timestamp {NOW - 301} is more than 300 s from now ({NOW})"),
])
def test_refusals_say_exactly_why(secrets: list[str], header: str, message: str) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(secrets, header, BODY, now=NOW)
    assert str(refused.value) == message
