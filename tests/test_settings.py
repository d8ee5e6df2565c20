from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapters.config import Secret
from sandbox.keys import rsa_pair
from sandbox.runner import free_port
from sandbox.wechat import WechatKeys
from service.settings import Settings, SettingsError, read_env_file

STRIPE = {"PAYRELAY_STRIPE_SECRET_KEY": "sk_test_abc", "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_1,whsec_2"}
BASE = {"PAYRELAY_API_KEYS": "shop:key-one,shop:key-two,blog:key-three", **STRIPE}


def test_reads_clients_gateways_and_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert [(c.name, len(c.keys)) for c in settings.clients] == [("shop", 2), ("blog", 1)]
    assert list(settings.gateways) == ["stripe-connect"]
    assert len(settings.gateways["stripe-connect"].webhook_secrets) == 2
    assert (settings.payment_ttl, settings.amount_unit, settings.retention_days) == (1800, "major", 90)
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert Settings.from_env(BASE | {"PAYRELAY_LOG_FORMAT": "Text"}).log_format == "text"
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
    assert settings.gateways["stripe-connect"].secret_key.reveal() == "sk_from_file"
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
        (BASE | {"PAYRELAY_LOG_FORMAT": "xml"}, "PAYRELAY_LOG_FORMAT must be 'json' or 'text', not 'xml'"),
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
    assert settings.payment_ttl == 90 and "stripe-connect" in settings.gateways


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
    assert bad.returncode == 1 and "no gateway is configured" in bad.stderr


def test_check_builds_everything_and_reports_every_problem_at_once(tmp_path: Path) -> None:
    """Each of these passed `check` once ("configuration is usable") and then broke `serve`, or
    was reported one per run: now all of them at once, each with its variable, exit 1."""
    wechat = WechatKeys.generate()
    path = tmp_path / "payrelay.env"
    env = {
        "PAYRELAY_API_KEYS": "shop:k",
        "PAYRELAY_LOG_LEVEL": "LOUD",
        "PAYRELAY_PUBLIC_URL": "http://relay.example",  # WeChat Pay refuses a non-https notify_url
        "PAYRELAY_REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0",  # nothing listens
        "PAYRELAY_STRIPE_SECRET_KEY": "sk_live_not_for_a_sandbox",
        "PAYRELAY_STRIPE_WEBHOOK_SECRET": "whsec_x",
        "PAYRELAY_STRIPE_API_BASE": "http://127.0.0.1:12111",
        "PAYRELAY_ALIPAY_APP_ID": "2021000000000000",
        "PAYRELAY_ALIPAY_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----",
        "PAYRELAY_ALIPAY_PUBLIC_KEY": rsa_pair()[1],
        "PAYRELAY_WECHAT_MCHID": wechat.mchid,
        "PAYRELAY_WECHAT_APPID": wechat.appid,
        "PAYRELAY_WECHAT_PRIVATE_KEY": wechat.merchant_private_key,
        "PAYRELAY_WECHAT_CERT_SERIAL_NO": wechat.cert_serial_no,
        "PAYRELAY_WECHAT_APIV3_KEY": wechat.apiv3_key,
        "PAYRELAY_WECHAT_PUBLIC_KEY": wechat.platform_public_key,
        "PAYRELAY_WECHAT_PUBLIC_KEY_ID": wechat.public_key_id,
    }
    write_env(path, env)
    bad = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(path)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False, timeout=60)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr and "usable" not in bad.stdout
    reported = {line.split()[0].rstrip(":") for line in bad.stderr.splitlines()[1:]}
    assert reported == {"PAYRELAY_LOG_LEVEL", "PAYRELAY_PUBLIC_URL", "PAYRELAY_REDIS_URL",
                        "PAYRELAY_STRIPE_SECRET_KEY", "PAYRELAY_ALIPAY_PRIVATE_KEY"}, bad.stderr
    assert "6 configuration problems" not in bad.stderr and "5 configuration problems" in bad.stderr
    for secret in ("hunter2", "sk_live_not_for_a_sandbox", "garbage", wechat.apiv3_key):
        assert secret not in bad.stderr
    env.update(PAYRELAY_LOG_LEVEL="debug", PAYRELAY_PUBLIC_URL="https://relay.example",
               PAYRELAY_STRIPE_SECRET_KEY="sk_test_fine", PAYRELAY_ALIPAY_PRIVATE_KEY=rsa_pair()[0])
    del env["PAYRELAY_REDIS_URL"]
    write_env(path, env)
    ok = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(path)],
                        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "gateways: stripe-connect, alipay-page, wechat-pay-native" in ok.stdout


def test_serve_refuses_what_check_refuses(tmp_path: Path) -> None:
    """A key that does not load stops `serve` before uvicorn starts, with the same report."""
    path = tmp_path / "payrelay.env"
    write_env(path, {"PAYRELAY_API_KEYS": "shop:k", "PAYRELAY_ALIPAY_APP_ID": "2021",
                     "PAYRELAY_ALIPAY_PRIVATE_KEY": "nonsense", "PAYRELAY_ALIPAY_PUBLIC_KEY": rsa_pair()[1]})
    served = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--env-file", str(path), "--port", "9"],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False, timeout=60)
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert "  PAYRELAY_ALIPAY_PRIVATE_KEY is not an RSA private key" in served.stderr


def write_env(path: Path, env: dict[str, str]) -> None:
    """An env file of double-quoted values, PEM line breaks written as \\n."""
    lines = (f'{name}="{value}"'.replace("\n", "\\n") for name, value in env.items())
    path.write_text("\n".join(lines) + "\n")


def test_the_cloudreve_sites_are_a_client_whose_payments_are_listed_once_the_bridge_is_on() -> None:
    off = Settings.from_env(BASE)
    on = Settings.from_env(BASE | {"PAYRELAY_CLOUDREVE_KEY": "cr-secret-value"})
    assert [client.name for client in off.all_clients] == ["shop", "blog"]
    assert [client.name for client in on.all_clients] == ["shop", "blog", "cloudreve:any-site"]
