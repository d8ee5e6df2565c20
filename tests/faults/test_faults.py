"""The fault suite: the hostile run's method, bounded, on loopback. Real `payrelay serve` and
`payrelay worker` processes on a Redis with AOF, the three sandbox gateways; SIGKILL of a payrelay
process under creates, during a sweep and during deliveries; Redis killed and restarted under
load; a gateway down and slow; the notification receiver down. Each scenario reports what the
README's fault table shows, and everything but the acknowledged and 503 counts must be 0.

The table of the last run is written to test-artifacts/faults.md.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    Answer,
    Report,
    Stack,
    audit,
    claims_held,
    count_answers,
    get_payment,
    notifications_missing,
    post_creates,
    stack,
    table,
    wait_resolved,
)
from tests.helpers import order
from tests.receiver import OK, Reply

pytestmark = pytest.mark.slow
GATEWAYS = ("stripe-connect", "alipay-page", "wechat-pay-native")
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults.md"
REPORTS: list[Report] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table() -> Iterator[None]:
    yield
    if REPORTS:
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.write_text(table(REPORTS) + "\n", encoding="utf-8")


@pytest.fixture
def faults() -> Iterator[Stack]:
    with stack() as built:
        yield built


def orders(count: int, gateways: tuple[str, ...] = GATEWAYS) -> list[dict[str, Any]]:
    return [order(gateway) for gateway, _ in zip(itertools.cycle(gateways), range(count), strict=False)]


def slow(faults: Stack, seconds: float) -> None:
    for name in ("stripe-connect", "wechat-pay-native"):
        faults.gateways[name].delay = seconds  # type: ignore[attr-defined]


async def storage_app_retries(url: str, answers: list[Answer], report: Report) -> list[Answer]:
    """What a storage app does with a create that got no answer or a 503: send the same request
    again (a few times, a little later), here to the process that is still up."""
    final = [a for a in answers if a.status not in (None, 503)]
    pending = [a.body for a in answers if a.status in (None, 503)]
    for _ in range(4):
        if not pending:
            break
        again = await post_creates(url, pending)
        count_answers(report, [a for a in again if a.status not in (200, None)])
        final += [a for a in again if a.status not in (None, 503)]
        pending = [a.body for a in again if a.status in (None, 503)]
        await asyncio.sleep(2)
    return final + [Answer(body, None) for body in pending]


async def finish(faults: Stack, report: Report, answers: list[Answer], url: str, started: float) -> None:
    """Wait for payrelay to resolve what is left, audit, and keep the scenario's figures."""
    report.unresolved += await wait_resolved(faults)
    await audit(faults, report, answers, url)
    report.seconds = time.monotonic() - started
    REPORTS.append(report)
    assert report.failures() == {}, table([report])


async def retried(report: Report, answers: list[Answer], url: str) -> list[Answer]:
    """The storage app sends again what got no answer; what was acknowledged in the end."""
    final = await storage_app_retries(url, answers, report)
    report.acknowledged = sum(1 for a in final if a.status == 200)
    return final


async def test_sigkill_of_a_payrelay_process_under_creates(faults: Stack) -> None:
    started, report = time.monotonic(), Report("SIGKILL of `serve` under creates")
    survivor = faults.start(port=faults.survivor_port)
    victim = faults.start()
    slow(faults, 1.0)  # so that creates are in flight at the gateways when the process dies
    load = asyncio.create_task(post_creates(victim.url, orders(90)))
    await asyncio.sleep(0.6)
    victim.process.kill()
    answers = await load
    slow(faults, 0)
    assert any(a.status is None for a in answers)  # it died with creates in flight
    count_answers(report, [a for a in answers if a.status is not None])
    await finish(faults, report, await retried(report, answers, survivor.url), survivor.url, started)


async def test_sigkill_of_a_worker_during_the_sweep(faults: Stack) -> None:
    started, report = time.monotonic(), Report("SIGKILL of `worker` during the expiry sweep")
    ttl = {"PAYRELAY_PAYMENT_TTL": "3"}
    victim = faults.start("worker", **ttl)
    creator = faults.start(port=faults.survivor_port, **ttl)
    answers = await post_creates(creator.url, orders(60))
    count_answers(report, answers)
    creator.stop()  # graceful: it hands back what it claimed; the worker sweeps alone
    slow(faults, 1.0)  # each query and close takes a while: the sweep is under way when it dies
    assert await claims_held(faults, "payment") > 0  # the worker (alone now) is sweeping
    victim.process.kill()
    slow(faults, 0)
    survivor = faults.start(port=faults.survivor_port, **ttl)
    # the dead worker's claims come back when their lease (120 s) runs out
    report.unresolved = await wait_resolved(faults, timeout=160, past_expiry_is_unresolved=True)
    stripe: Any = faults.gateways["stripe-connect"]
    wechat: Any = faults.gateways["wechat-pay-native"]
    report.unresolved += sum(1 for s in stripe.sessions.values() if s["status"] == "open")
    report.unresolved += sum(1 for o in wechat.orders.values() if o.trade_state == "NOTPAY")
    await finish(faults, report, answers, survivor.url, started)


async def paid_payments(faults: Stack, url: str, count: int) -> list[Answer]:
    answers = await post_creates(url, orders(count, ("wechat-pay-native", "alipay-page")))
    for answer in answers:
        if answer.status == 200 and answer.payment_id:
            payment = await get_payment(url, answer.payment_id)
            assert payment is not None
            await faults.gateways[answer.body["paymentGatewayType"]].pay(payment["paymentUrl"])
    return answers


async def test_sigkill_of_a_payrelay_process_during_deliveries(faults: Stack) -> None:
    started, report = time.monotonic(), Report("SIGKILL of `serve` during deliveries")
    victim = faults.start(port=faults.survivor_port)  # alone: it sends every notification
    # in flight when it dies, and not taken: the survivor must send them again
    faults.receiver.default = Reply(503, stall=2.0)
    answers = await paid_payments(faults, victim.url, 30)
    count_answers(report, answers)
    assert await claims_held(faults, "delivery") > 0
    victim.process.kill()
    faults.receiver.default = OK
    survivor = faults.start(port=faults.survivor_port)
    deadline = time.monotonic() + 60  # a dead process's delivery leases (15 s), then the retry
    while notifications_missing(faults) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    report.undelivered = notifications_missing(faults)
    await finish(faults, report, answers, survivor.url, started)


async def test_redis_killed_and_restarted_under_creates(faults: Stack) -> None:
    started, report = time.monotonic(), Report("Redis SIGKILL + restart (AOF) under creates")
    survivor = faults.start(port=faults.survivor_port)
    slow(faults, 0.2)
    load = asyncio.create_task(post_creates(survivor.url, orders(120), concurrency=8))
    await asyncio.sleep(1.0)
    faults.redis.kill()
    await asyncio.sleep(1.5)
    faults.redis.start()
    answers = await load
    slow(faults, 0)
    count_answers(report, answers)
    await finish(faults, report, await retried(report, answers, survivor.url), survivor.url, started)


async def test_a_gateway_down_then_slower_than_the_timeout(faults: Stack) -> None:
    started, report = time.monotonic(), Report("gateway down, then slower than the timeout")
    survivor = faults.start(port=faults.survivor_port)
    stripe: Any = faults.gateways["stripe-connect"]
    wechat: Any = faults.gateways["wechat-pay-native"]
    stripe.down = True
    down = await post_creates(survivor.url, orders(10, ("stripe-connect",)))
    stripe.down = False
    wechat.delay = 11  # payrelay gives up after 10 s; the gateway makes the order all the same
    duplicate = order("wechat-pay-native")
    behind = await post_creates(survivor.url, [duplicate] * 4 + orders(4, ("wechat-pay-native",)))
    wechat.delay = 0
    answers = down + behind
    count_answers(report, answers)  # the storage app does not retry: payrelay resolves them itself
    await finish(faults, report, answers, survivor.url, started)


async def test_the_receiver_down_then_back(faults: Stack) -> None:
    started, report = time.monotonic(), Report("notification receiver down, then back")
    survivor = faults.start(port=faults.survivor_port)
    faults.receiver.default = Reply(503)
    answers = await paid_payments(faults, survivor.url, 20)
    count_answers(report, answers)
    await asyncio.sleep(3)
    faults.receiver.default = OK
    deadline = time.monotonic() + 40  # the first retry comes 5–10 s after a failed delivery
    while notifications_missing(faults) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    report.undelivered = notifications_missing(faults)
    await finish(faults, report, answers, survivor.url, started)
