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
