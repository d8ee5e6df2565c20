"""The console users' password hashes: what hash-password makes, and hashes made elsewhere."""

from __future__ import annotations

import base64

import pytest

from service import passwords

# phc-winner-argon2's README: echo -n "password" | ./argon2 somesalt -t 2 -m 16 -p 4 -l 24
ARGON2I_VECTOR = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


# RFC 7914 section 12, the second and third vectors
SCRYPT_NACL = "$scrypt$ln=10,r=8,p=16${}${}".format(_b64(b"NaCl"), _b64(bytes.fromhex(
    "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830da"
    "c727afb94a83ee6d8360cbdfa2cc0640")))
SCRYPT_SODIUM = "$scrypt$ln=14,r=8,p=1${}${}".format(_b64(b"SodiumChloride"), _b64(bytes.fromhex(
    "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9"
    "e61e85dc0d651e40dfcf017b45575887")).replace("+", "."))  # passlib's alphabet: "." for "+"


def test_hash_password_makes_argon2id_that_verifies_only_its_password() -> None:
    hashed = passwords.hash_password("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.hash_password("correct horse") != hashed  # a salt of its own each time
    assert passwords.verify_password(hashed, "correct horse")
    assert not passwords.verify_password(hashed, "correct horse ")
    assert not passwords.verify_password(hashed, "")
    passwords.check_hash(hashed)


@pytest.mark.parametrize(("hashed", "password"), [
    (ARGON2I_VECTOR, "password"), (SCRYPT_NACL, "password"), (SCRYPT_SODIUM, "pleaseletmein"),
])
def test_hashes_made_elsewhere_verify(hashed: str, password: str) -> None:
    passwords.check_hash(hashed)
    assert passwords.verify_password(hashed, password)
    assert not passwords.verify_password(hashed, password.upper())


@pytest.mark.parametrize(("hashed", "says"), [
    ("hunter2", "not an argon2 or scrypt hash (a password in plain text?)"),
    ("", "not an argon2 or scrypt hash"),
    ("$argon2id$v=19$m=65536,t=3,p=4$", "not a well-formed argon2 hash"),
    ("$argon2id$v=19$m=lots,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "not a well-formed argon2"),
    ("$scrypt$ln=10,r=8$TmFDbA$abcd", "not a well-formed scrypt hash"),
    ("$scrypt$ln=30,r=8,p=1$TmFDbA$" + "A" * 43, "out of range"),
    ("$scrypt$ln=20,r=8,p=1$TmFDbA$" + "A" * 43, "out of range"),  # 1 GiB
    ("$scrypt$ln=10,r=0,p=1$TmFDbA$" + "A" * 43, "out of range"),
    ("$scrypt$ln=10,r=8,p=1$TmFDbA$A", "not base64"),
    ("$scrypt$ln=10,r=8,p=1$TmFDbA$AAAA", "shorter than 16 bytes"),
])
def test_malformed_hashes_are_refused_without_quoting_them(hashed: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"^(is|has) ") as caught:
        passwords.check_hash(hashed)
    assert says in str(caught.value)
    if hashed:
        assert hashed not in str(caught.value)
    assert not passwords.verify_password(hashed, "hunter2")


def test_an_unknown_name_costs_what_a_user_costs() -> None:
    """An unknown name is checked against a hash made like every user's (the same algorithm and
    cost parameters), so a sign-in's time does not tell names apart."""
    assert passwords.verify_unknown("pw") is False
    dummy, user = passwords._dummy_hash(), passwords.hash_password("pw")
    assert dummy.rsplit("$", 2)[0] == user.rsplit("$", 2)[0]  # $argon2id$v=19$m=…,t=…,p=…
    assert passwords.verify_password(dummy, "pw") is False
