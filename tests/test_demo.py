"""`payrelay demo` as a newcomer runs it: a real process, the README's flow over real HTTP, what it
prints and what it logs."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters import registry
from sandbox.runner import free_port
from service.settings import Settings, read_env_file
from tests import log_capture
from tests.helpers import csrf_of, free_ports, order, pay_on_page
from tests.relay_process import ROOT

TIME = r"\d\d:\d\d:\d\d"


@dataclass
class Demo:
    url: str
    sandbox_port: int
    notify_port: int
    state_dir: Path
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def env_path(self) -> Path:
        return self.state_dir / "payrelay.env"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {read_env_file(self.env_path)['PAYRELAY_API_KEYS'].partition(':')[2]}"}

    def printed(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def logged(self) -> list[str]:
        return self.err.read_text(encoding="utf-8").splitlines()

    def create(self, gateway: str) -> dict[str, str]:
        answer = httpx.post(f"{self.url}/api/transactions", headers=self.headers, json=order(gateway))
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers)


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, check=False)


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def start(*args: str) -> Demo:
        port, notify_port, sandbox_port = free_port(), free_port(), free_ports(len(registry.GATEWAYS))
        out, err = tmp_path / f"demo-{len(started)}.out", tmp_path / f"demo-{len(started)}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:  # the child holds its own copies
            process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "demo", "--port", str(port), "--sandbox-port",
                 str(sandbox_port), "--notify-port", str(notify_port), "--state-dir", str(tmp_path / "state"), *args],
                stdout=stdout, stderr=stderr, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        demo = Demo(f"http://127.0.0.1:{port}", sandbox_port, notify_port, tmp_path / "state", process, out, err)
        started.append(demo)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{demo.url}/healthz").status_code == 200:
                    Settings.from_env(read_env_file(demo.env_path))  # its secrets: searched for in the logs
                    log_capture.extra_logs.append(err)  # its log, not what it prints (the API key, for curl)
                    return demo
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, err.read_text()
            time.sleep(0.1)

    yield start
    for demo in started:
        demo.process.terminate()
        demo.process.wait(20)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_demo_prints_its_fixed_ports_and_the_receiver(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    printed = demo.printed()
    for offset, label in enumerate(("Stripe", "Alipay", "WeChat Pay")):
        assert re.search(rf"{label} sandbox +http://127\.0\.0\.1:{demo.sandbox_port + offset}\n", printed), printed
    assert re.search(rf"notification receiver +http://127\.0\.0\.1:{demo.notify_port}/notify ", printed), printed
    env = read_env_file(demo.env_path)
    assert env["PAYRELAY_STRIPE_API_BASE"] == f"http://127.0.0.1:{demo.sandbox_port}"
    assert env["PAYRELAY_ALIPAY_GATEWAY_URL"] == f"http://127.0.0.1:{demo.sandbox_port + 1}/gateway.do"
    assert env["PAYRELAY_WECHAT_API_BASE"] == f"http://127.0.0.1:{demo.sandbox_port + 2}"
    assert env["PAYRELAY_NOTIFY_URL"] == f"http://127.0.0.1:{demo.notify_port}/notify"
    assert httpx.get(f"http://127.0.0.1:{demo.notify_port}/notify").status_code == 405  # it listens there


def test_demo_from_create_to_succeeded_notified_and_refunded(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    settings = Settings.from_env(read_env_file(demo.env_path))  # the written configuration is a usable one
    assert list(settings.gateways) == list(registry.GATEWAY_TYPES) and settings.redis_url is None
    created = demo.create("stripe-connect")
    paid = pay_on_page(created["paymentUrl"])
    assert paid.status_code == 303 and paid.headers["location"].startswith("https://shop.example/done")
    payment_id = created["paymentId"]
    assert demo.get(f"/api/transactions/{payment_id}").json()["status"] == "succeeded"

    def delivered() -> bool:
        return [d["state"] for d in demo.get(f"/api/transactions/{payment_id}/deliveries").json()["data"]] == [
            "delivered"]

    eventually(delivered)
    [delivery] = demo.get(f"/api/transactions/{payment_id}/deliveries").json()["data"]
    assert (delivery["lastStatusCode"], delivery["url"]) == (204, f"http://127.0.0.1:{demo.notify_port}/notify")
    refunds = f"{demo.url}/api/transactions/{payment_id}/refunds"  # as the demo prints it
    part = httpx.post(refunds, headers=demo.headers, json={"refundId": "refund-1", "amount": "10.00"}).json()
    rest = httpx.post(refunds, headers=demo.headers, json={"refundId": "refund-2"}).json()
    assert [(r["status"], r["amount"]) for r in (part, rest)] == [("succeeded", "10.00"), ("succeeded", "15.00")]
    assert httpx.get(refunds, headers=demo.headers).json()["data"] == [part, rest]
    after = demo.get(f"/api/transactions/{payment_id}").json()
    assert (after["refundedAmount"], after["refundingAmount"]) == ("25.00", "0.00")

    receiver = f"http://127.0.0.1:{demo.notify_port}/notify"
    expected = [
        rf"{TIME} POST /api/transactions 200",
        rf"{TIME} {payment_id} waiting → succeeded \(webhook, stripe-connect\)",
        rf"{TIME} {payment_id} notification received: transaction\.succeeded, version 1, signature valid",
        rf"{TIME} {payment_id} delivery dlv_\S+ → {receiver} 204 delivered",
        rf"{TIME} {payment_id} notification received: refund\.succeeded, refund refund-1, version \d+, signature valid",
        rf"{TIME} refund rf_\S+ processing → succeeded \(refund, stripe-connect\)",
    ]

    def all_logged() -> bool:
        lines = demo.logged()
        return all(any(re.fullmatch(pattern, line) for line in lines) for pattern in expected)

    eventually(all_logged)
    assert not [line for line in demo.logged() if line.startswith("{")]  # text, not JSON


def test_the_console_the_demo_prints_shows_the_payment_and_refunds_it(start_demo: Callable[..., Demo]) -> None:
    """As the README walks a newcomer through it: sign in with the printed login, see the payment
    that was just paid with its delivered notification in its timeline, refund it from there."""
    demo = start_demo()
    found = re.search(rf"{re.escape(demo.url)}/console +\(sign in as (\w+), password (\S+)\)", demo.printed())
    assert found, demo.printed()
    name, password = found.groups()
    created = demo.create("alipay-page")
    pay_on_page(created["paymentUrl"])
    payment_id = created["paymentId"]
    with httpx.Client(base_url=demo.url, follow_redirects=False) as browser:
        form = browser.get("/console/signin").text
        signed = browser.post("/console/signin", data={"csrf": csrf_of(form), "name": name, "password": password})
        assert signed.status_code == 303, signed.text
        assert payment_id in browser.get("/console/payments").text

        def delivery_in_timeline() -> bool:
            return "transaction.succeeded" in browser.get(f"/console/payments/{payment_id}").text

        eventually(delivery_in_timeline)
        confirm = browser.get(f"/console/payments/{payment_id}/confirm", params={"action": "refund"}).text
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', confirm))
        done = browser.post(f"/console/payments/{payment_id}/refund", data=fields)
        assert done.status_code == 303, done.text
    [refund] = demo.get(f"/api/transactions/{payment_id}/refunds").json()["data"]
    assert (refund["status"], refund["amount"]) == ("succeeded", demo.get(f"/api/transactions/{payment_id}").json()[
        "refundedAmount"])
    events = demo.get(f"/api/transactions/{payment_id}/events").json()["data"]
    assert {"type": "operator", "actor": name, "action": "refund"}.items() <= next(
        e for e in events if e["type"] == "operator").items()


def test_the_wechat_page_the_demo_prints_shows_the_code_and_pays(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    printed = re.search(r"(http://\S+/pay\?code_url=)<paymentUrl>", demo.printed())
    assert printed is not None, demo.printed()
    created = demo.create("wechat-pay-native")
    assert created["paymentUrl"].startswith("weixin://")
    page_url = printed.group(1) + created["paymentUrl"]  # pasted as it is, as the demo says
    page = httpx.get(page_url)
    assert page.status_code == 200 and "<svg" in page.text and "text/html" in page.headers["content-type"]
    assert pay_on_page(page_url).status_code == 200
    assert demo.get(f"/api/transactions/{created['paymentId']}").json()["status"] == "succeeded"
    image = demo.get(f"/api/transactions/{created['paymentId']}/qrcode.svg")  # the curl it prints
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/svg+xml")


def test_ttl_sets_how_far_away_expiry_is(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo("--ttl", "60")
    assert "payments expire after 60 s" in demo.printed()
    for gateway in registry.GATEWAY_TYPES:  # Stripe too: its session expiry is clamped, not ours
        created = demo.create(gateway)
        assert 58 <= int(created["expireTime"]) <= 60, created
        payment = demo.get(f"/api/transactions/{created['paymentId']}").json()
        expires, made = (dt.datetime.fromisoformat(payment[f]) for f in ("expiresAt", "createdAt"))
        assert expires - made == dt.timedelta(seconds=60), payment


@pytest.mark.slow
def test_a_short_ttl_closes_the_payment_at_the_gateway_too(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo("--ttl", "2")
    created = demo.create("stripe-connect")
    eventually(lambda: demo.get(f"/api/transactions/{created['paymentId']}").json()["status"] == "closed", 20)
    page = httpx.get(created["paymentUrl"])
    assert "expired" in page.text.lower()  # Stripe's session was expired by payrelay, not left open 30 min
    assert any(re.fullmatch(rf"{TIME} {created['paymentId']} waiting → closed \(sweep, stripe-connect\)", line)
               for line in demo.logged()), demo.logged()


def test_demo_env_file_passes_check(start_demo: Callable[..., Demo]) -> None:
    demo = start_demo()
    check = subprocess.run([sys.executable, "-m", "service.cli", "check", "--env-file", str(demo.env_path)],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False, cwd=ROOT)
    assert check.returncode == 0, check.stderr
    assert "stripe-connect, alipay-page, wechat-pay-native" in check.stdout
    assert oct(demo.env_path.stat().st_mode & 0o777) == "0o600"
    assert oct((demo.state_dir / "sandbox-keys.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(("args", "said"), [
    (["--ttl", "0"], "argument --ttl: 0 is less than 1"),
    (["--ttl", "soon"], "argument --ttl: not a whole number: 'soon'"),
    (["--port", "70000"], "argument --port: 70000 is not between 1 and 65535"),
    (["--sandbox-port", "65534"], "argument --sandbox-port: 65534 is not between 1 and 65533"),
])
def test_bad_arguments_are_refused_and_change_nothing(tmp_path: Path, args: list[str], said: str) -> None:
    refused = run("demo", "--state-dir", str(tmp_path / "state"), *args)
    assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    assert not (tmp_path / "state").exists()


def test_a_port_in_use_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run("demo", "--state-dir", str(tmp_path / "state"), "--port", str(free_port()),
                      "--sandbox-port", str(free_ports(len(registry.GATEWAYS))), "--notify-port", str(port))
    assert refused.returncode == 2, refused.stderr
    assert f"cannot listen for the notification receiver on 127.0.0.1:{port}" in refused.stderr
    assert not (tmp_path / "state").exists()
