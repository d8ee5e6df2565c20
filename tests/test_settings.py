from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Secret, Settings, SettingsError, read_env_file

STRIPE = {"PAYRELAY_STRIPE_SECRET_KEY": "sk_test_abc", "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_1,whsec_2"}
BASE = {"PAYRELAY_API_KEYS": "shop:key-one,shop:key-two,blog:key-three", **STRIPE}


def test_reads_clients_gateways_and_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert [(c.name, len(c.keys)) for c in settings.clients] == [("shop", 2), ("blog", 1)]
    assert settings.stripe is not None and len(settings.stripe.webhook_secrets) == 2
    assert settings.alipay is None and settings.wechat is None
    assert (settings.payment_ttl, settings.amount_unit, settings.retention_days) == (1800, "major", 90)
    assert settings.redis_url is None and any("in memory" in note for note in settings.notes)


def test_secrets_are_masked_everywhere() -> None:
    settings = Settings.from_env(BASE | {"PAYRELAY_CLOUDREVE_KEY": "cr-secret-value"})
    text = repr(settings) + str(settings)
    for secret in ("sk_test_abc", "whsec_1", "whsec_2", "key-one", "key-two", "cr-secret-value"):
        assert secret not in text
    assert repr(Secret("x")) == "Secret('***')" and Secret("x").reveal() == "x"


def test_file_variables(tmp_path: Path) -> None:
    key = tmp_path / "stripe.key"
    key.write_text("sk_from_file\n")
    settings = Settings.from_env({"PAYRELAY_API_KEYS": "a:b", "PAYRELAY_STRIPE_SECRET_KEY_FILE": str(key),
                                  "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_x"})
    assert settings.stripe is not None and settings.stripe.secret_key.reveal() == "sk_from_file"
    with pytest.raises(SettingsError, match="PAYRELAY_STRIPE_SECRET_KEY_FILE: cannot read"):
        Settings.from_env({"PAYRELAY_API_KEYS": "a:b", "PAYRELAY_STRIPE_WEBHOOK_SECRET": "w",
                           "PAYRELAY_STRIPE_SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_clients_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text('[{"name": "shop", "keys": ["k1"], "notifyUrl": "https://shop.example/hook",'
                    ' "notifySecrets": ["s1"]}]')
    settings = Settings.from_env({"PAYRELAY_CLIENTS_FILE": str(path), **STRIPE})
    (client,) = settings.clients
    assert client.notify_url == "https://shop.example/hook" and client.notify_secrets == (Secret("s1"),)
    path.write_text('[{"name": "shop"}]')
    with pytest.raises(SettingsError, match="entry 0"):
        Settings.from_env({"PAYRELAY_CLIENTS_FILE": str(path), **STRIPE})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (STRIPE, "no API client"),
        ({"PAYRELAY_API_KEYS": "a:b"}, "no gateway"),
        (BASE | {"PAYRELAY_API_KEYS": "justakey"}, "client:key"),
        (BASE | {"PAYRELAY_PAYMENT_TTL": "soon"}, "PAYRELAY_PAYMENT_TTL must be a whole number"),
        (BASE | {"PAYRELAY_PAYMENT_TTL": "0"}, "at least 1"),
        (BASE | {"PAYRELAY_AMOUNT_UNIT": "cents"}, "major' or 'minor"),
        ({"PAYRELAY_API_KEYS": "a:b", "PAYRELAY_STRIPE_SECRET_KEY": "sk"},
         "also set PAYRELAY_STRIPE_WEBHOOK_SECRET"),
        (BASE | {"PAYRELAY_ALIPAY_APP_ID": "2021"}, "Alipay is partly configured"),
    ],
)
def test_plain_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        Settings.from_env(env)
    assert "sk_test_abc" not in str(caught.value)


def test_env_file_and_environment_precedence(tmp_path: Path) -> None:
    path = tmp_path / "payrelay.env"
    path.write_text('# comment\nPAYRELAY_API_KEYS=a:b\nexport PAYRELAY_PAYMENT_TTL=60\n'
                    'PAYRELAY_STRIPE_SECRET_KEY="sk_x"\nPAYRELAY_STRIPE_WEBHOOK_SECRET=\'w\'\n'
                    'PAYRELAY_NOTIFY_SECRET="-----BEGIN-----\\nabc\\n-----END-----"\n')
    values = read_env_file(path)
    assert values["PAYRELAY_NOTIFY_SECRET"] == "-----BEGIN-----\nabc\n-----END-----"
    settings = Settings.from_env({"PAYRELAY_PAYMENT_TTL": "90"}, env_file=path)
    assert settings.payment_ttl == 90 and settings.stripe is not None


def test_check_command(tmp_path: Path) -> None:
    path = tmp_path / "payrelay.env"
    path.write_text("PAYRELAY_API_KEYS=shop:supersecretkey\nPAYRELAY_STRIPE_SECRET_KEY=sk_hidden\n"
                    "PAYRELAY_STRIPE_WEBHOOK_SECRET=whsec_hidden\n")
    clean_env = {"PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(path)],
                        capture_output=True, text=True, env=clean_env, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "stripe-connect" in ok.stdout and "embedded" in ok.stdout
    assert "supersecretkey" not in ok.stdout + ok.stderr and "sk_hidden" not in ok.stdout
    path.write_text("PAYRELAY_API_KEYS=shop:k\n")
    bad = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(path)],
                         capture_output=True, text=True, env=clean_env, check=False)
    assert bad.returncode == 2 and "no gateway is configured" in bad.stderr
