"""service/refund_store.py and its scripts (refund.lua, refund_apply.lua) on a real Redis and the
embedded store: what remains is never over-refunded, whatever the order or the concurrency."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import RefundLimits
from service import keys
from service.model import Payment, Refund
from service.refund_store import RefundStore
from service.store import Store
from tests.conftest import RETENTION_S
from tests.helpers import NOW, apply, opened, record

GATEWAY = "stripe-connect"  # the records of tests.helpers are stripe-connect's
ANY = RefundLimits(window_days=None, minimum_minor=1, partial=True, max_per_payment=None)


async def paid(store: Store, transaction_id: str = "t1", **fields: str) -> str:
    """A succeeded stripe-connect payment of 2500 USD cents."""
    bucket = keys.bucket_for("shop", transaction_id)
    pid = keys.new_payment_id(bucket)
    await store.reserve(record(pid, transactionId=transaction_id, **fields), now_ms=NOW)
    await store.finalize(pid, "https://pay.example/x", "cs_1", NOW)
    await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid")
    return pid


def refunds_of(store: Store) -> RefundStore:
    return RefundStore(store.redis, RETENTION_S)


async def reserve(refunds: RefundStore, pid: str, refund_id: str, amount: int | None, *,
                  limits: RefundLimits = ANY, fingerprint: str | None = None, client: str = "shop") -> Any:
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    return await refunds.reserve(client=client, payment_id=pid, refund_id=refund_id,
                                 refund_no=keys.new_refund_no(bucket), amount=amount, reason=None,
                                 fingerprint=fingerprint or f"f-{amount}", limits=limits, now_ms=NOW,
                                 lease_ms=30_000)


async def settle(refunds: RefundStore, refund_no: str, status: str, **changes: Any) -> Any:
    return await refunds.apply(refund_no, gateway=GATEWAY, now_ms=NOW + 1, status=status,
                               gateway_state=f"gw-{status}", **{"source": "webhook", **changes})


async def sums(store: Store, pid: str) -> tuple[int, int]:
    payment = await store.get(pid)
    assert payment is not None
    return payment.refunded, payment.refunding


async def test_a_refund_is_reserved_against_what_remains_and_settles_into_the_sums(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    first = await reserve(refunds, pid, "r1", 1000)
    assert (first.outcome, first.number) == ("new", 1000) and keys.REFUND_NO.fullmatch(first.refund_no)
    assert await sums(store, pid) == (0, 1000)
    over = await reserve(refunds, pid, "r2", 1501)  # 2500 paid, 1000 in flight
    assert (over.outcome, over.number) == ("over", 1500)
    rest = await reserve(refunds, pid, "r2", None)  # no amount: what remains
    assert (rest.outcome, rest.number) == ("new", 1500)
    assert (await reserve(refunds, pid, "r3", 1)).outcome == "exhausted"
    assert (await settle(refunds, first.refund_no, "succeeded", reference="re_1")).outcome == "transitioned"
    assert (await settle(refunds, rest.refund_no, "failed", failure_reason="bank said no")).changed
    assert await sums(store, pid) == (1000, 0)
    again = await reserve(refunds, pid, "r4", None)  # the failed one's money remains
    assert (again.outcome, again.number) == ("new", 1500)
    refund = await refunds.get(first.refund_no)
    assert refund is not None and (refund.status, refund.gateway_reference, refund.version) == \
        ("succeeded", "re_1", 1)
    assert (refund.gateway_state, refund.calling_until, refund.failure_reason) == ("gw-succeeded", None, None)
    assert [r.refund_id for r in await refunds.of_payment(pid)] == ["r1", "r2", "r4"]
    assert await refunds.number_of(pid, "r2") == rest.refund_no


async def test_refusals_keep_nothing(store: Store) -> None:
    refunds = refunds_of(store)
    pid = await opened(store)  # waiting: nothing to refund yet
    assert (await reserve(refunds, pid, "r1", 100)).status == "waiting"
    paid_pid = await paid(store, "t2")
    assert (await reserve(refunds, paid_pid, "r1", 100, client="blog")).outcome == "missing"
    limits = RefundLimits(window_days=None, minimum_minor=100, partial=False, max_per_payment=1)
    below = await reserve(refunds, paid_pid, "r1", 99, limits=limits)
    assert (below.outcome, below.number) == ("below_minimum", 100)
    assert (await reserve(refunds, paid_pid, "r1", 100, limits=limits)).outcome == "partial_refused"
    assert await refunds.of_payment(paid_pid) == [] and await sums(store, paid_pid) == (0, 0)
    assert await store.redis.zcard(keys.refund_due(keys.bucket_of(paid_pid))) == 0
    whole = await reserve(refunds, paid_pid, "r1", None, limits=limits)
    assert whole.outcome == "new"
    await settle(refunds, whole.refund_no, "failed")
    too_many = await reserve(refunds, paid_pid, "r2", None, limits=limits)
    assert (too_many.outcome, too_many.number) == ("too_many", 1)


async def test_the_same_refund_id_answers_the_same_refund_or_a_conflict(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    first = await reserve(refunds, pid, "r1", 500)
    replay = await reserve(refunds, pid, "r1", 500)
    assert (replay.outcome, replay.refund_no) == ("existing", first.refund_no)
    assert (await reserve(refunds, pid, "r1", 600)).outcome == "conflict"
    assert await sums(store, pid) == (0, 500)


async def test_fifty_concurrent_refunds_accept_exactly_what_fits(store: Store) -> None:
    pid = await paid(store)  # 2500
    refunds = refunds_of(store)
    answers = await asyncio.gather(*(reserve(refunds, pid, f"r{i}", 100) for i in range(50)))
    assert sorted(a.outcome for a in answers) == ["exhausted"] * 25 + ["new"] * 25
    assert await sums(store, pid) == (0, 2500)
    same = await asyncio.gather(*(reserve(refunds, pid, "r0", 100) for _ in range(50)))
    assert {(a.outcome, a.refund_no) for a in same} == {("existing", answers[0].refund_no)}


async def test_moves_follow_the_refund_table(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    one = await reserve(refunds, pid, "r1", 1000)
    assert (await settle(refunds, one.refund_no, "processing", next_look_ms=NOW + 60_000)).outcome == "unchanged"
    bucket = keys.bucket_of(pid)
    assert await store.redis.zscore(keys.refund_due(bucket), one.refund_no) == NOW + 60_000
    assert (await settle(refunds, one.refund_no, "succeeded")).outcome == "transitioned"
    assert await store.redis.zscore(keys.refund_due(bucket), one.refund_no) is None
    assert (await settle(refunds, one.refund_no, "processing")).outcome == "stale"  # never back to processing
    assert await sums(store, pid) == (1000, 0)
    returned = await settle(refunds, one.refund_no, "failed", failure_reason="the bank returned it")
    assert returned.outcome == "transitioned"  # the one move back: a refund returned later
    assert await sums(store, pid) == (0, 0)
    assert (await settle(refunds, one.refund_no, "succeeded")).outcome == "stale"  # failed is final
    other_gateway = await refunds.apply(one.refund_no, gateway="alipay-page", now_ms=NOW, status="succeeded",
                                        gateway_state="x", source="webhook")
    assert other_gateway.outcome == "foreign"
    assert (await settle(refunds, keys.new_refund_no(bucket), "succeeded")).outcome == "missing"


async def test_a_gateway_amount_that_differs_flags_and_moves_nothing(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    one = await reserve(refunds, pid, "r1", 1000)
    assert (await settle(refunds, one.refund_no, "succeeded", amount=999)).outcome == "integrity"
    refund = await refunds.get(one.refund_no)
    assert refund is not None and refund.integrity_error and refund.status == "processing"
    assert await sums(store, pid) == (0, 1000)


async def test_a_webhook_delivered_twice_applies_once(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    one = await reserve(refunds, pid, "r1", 1000)
    event = (GATEWAY, "refund:evt_1")
    assert (await settle(refunds, one.refund_no, "succeeded", event=event)).outcome == "transitioned"
    assert (await settle(refunds, one.refund_no, "failed", event=event)).outcome == "duplicate"
    assert await sums(store, pid) == (1000, 0)


async def test_a_settled_refund_queues_its_notification(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    one = await reserve(refunds, pid, "r1", 1000)
    await settle(refunds, one.refund_no, "succeeded", delivery_id="dlv_r1")
    bucket = keys.bucket_of(pid)
    delivery = await store.redis.hgetall(keys.delivery(bucket, "dlv_r1"))
    assert delivery["type"] == "refund.succeeded" and delivery["paymentId"] == pid
    snapshot = Refund.from_hash(json.loads(delivery["snapshot"]))
    assert (snapshot.refund_id, snapshot.status, snapshot.version) == ("r1", "succeeded", 1)
    assert "dlv_r1" in await store.redis.lrange(keys.deliveries(bucket, pid), 0, -1)
    assert await store.redis.zscore(keys.outbox(bucket), "dlv_r1") is not None


Step = tuple[str, int, int]  # (reserve | succeed | fail, refund index, amount)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["reserve", "succeed", "fail"]), st.integers(0, 7),
                                st.integers(1, 1200)), max_size=25))
async def test_no_sequence_of_requests_and_outcomes_refunds_more_than_was_paid(store: Store,
                                                                               steps: list[Step]) -> None:
    await store.redis.flushdb()
    pid = await paid(store)
    refunds = refunds_of(store)
    numbers: dict[int, str] = {}
    for action, index, amount in steps:
        if action == "reserve":
            reservation = await reserve(refunds, pid, f"r{index}", amount)
            if reservation.outcome in ("new", "existing"):
                numbers[index] = reservation.refund_no
        elif index in numbers:
            await settle(refunds, numbers[index], "succeeded" if action == "succeed" else "failed")
        payment: Payment | None = await store.get(pid)
        assert payment is not None
        stored = await refunds.of_payment(pid)
        assert payment.refunded == sum(r.amount for r in stored if r.status == "succeeded")
        assert payment.refunding == sum(r.amount for r in stored if r.status == "processing")
        assert 0 <= payment.refunded + payment.refunding <= payment.amount


async def test_a_reserved_refund_is_stored_whole_due_at_its_call_lease_and_kept_the_retention(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    bucket = keys.bucket_of(pid)
    await store.redis.pexpire(keys.payment(bucket, pid), 60_000)  # near the end of its retention…
    first = await reserve(refunds, pid, "r1", 1)  # … a refund keeps it the whole retention again
    second = await reserve(refunds, pid, "r2", 2498)  # what remains is exactly 1 now
    last = await reserve(refunds, pid, "r3", 1)
    assert [first.outcome, second.outcome, last.outcome] == ["new", "new", "new"]
    stored = await refunds.of_payment(pid)
    assert [(r.refund_id, r.sequence, r.client, r.currency, r.gateway, r.payment_id) for r in stored] == [
        ("r1", 1, "shop", "USD", GATEWAY, pid), ("r2", 2, "shop", "USD", GATEWAY, pid),
        ("r3", 3, "shop", "USD", GATEWAY, pid)]
    assert all((r.reason, r.calling_until, r.status) == (None, NOW + 30_000, "processing") for r in stored)
    assert await store.redis.zscore(keys.refund_due(bucket), first.refund_no) == NOW + 30_000
    for key in (keys.payment(bucket, pid), keys.refunds(bucket, pid), keys.refund(bucket, first.refund_no)):
        assert RETENTION_S * 1000 - 5_000 <= await store.redis.pttl(key) <= RETENTION_S * 1000
    assert await store.redis.pttl(keys.refund_due(bucket)) == -1  # the schedule itself never expires
    other = await paid(store, "t2")
    explained = await refunds.reserve(client="shop", payment_id=other, refund_id="r1",
                                      refund_no=keys.new_refund_no(keys.bucket_of(other)), amount=None,
                                      reason="duplicate charge",
                                      fingerprint="f", limits=ANY, now_ms=NOW, lease_ms=30_000)
    refund = await refunds.get(explained.refund_no)
    assert refund is not None and refund.reason == "duplicate charge"


async def test_what_a_settlement_writes_and_tells(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    bucket = keys.bucket_of(pid)
    one = await reserve(refunds, pid, "r1", 1000)
    assert (await settle(refunds, one.refund_no, "succeeded", amount=1000, reference="re_1",
                         delivery_id="dlv_1")).outcome == "transitioned"  # the right amount: no integrity flag
    delivery = await store.redis.hgetall(keys.delivery(bucket, "dlv_1"))
    payment = await store.get(pid)
    assert payment is not None and delivery["url"] == payment.notify_url and delivery["kind"] == "generic"
    told = Refund.from_hash(json.loads(delivery["snapshot"]))
    assert (told.gateway_reference, told.gateway_state, told.failure_reason, told.calling_until) == \
        ("re_1", "gw-succeeded", None, None)
    two = await reserve(refunds, pid, "r2", 500)
    await settle(refunds, two.refund_no, "failed", failure_reason="the bank said no", delivery_id="dlv_2")
    failed = await refunds.get(two.refund_no)
    assert failed is not None and (failed.failure_reason, failed.gateway_state) == ("the bank said no", "gw-failed")
    told = Refund.from_hash(json.loads((await store.redis.hgetall(keys.delivery(bucket, "dlv_2")))["snapshot"]))
    assert told.failure_reason == "the bank said no"
    payment = await store.get(pid)
    assert payment is not None and payment.failure_reason is None  # the refund's reason, not the payment's
    three = await reserve(refunds, pid, "r3", 1)
    assert (await settle(refunds, three.refund_no, "processing", next_look_ms=NOW + 5)).outcome == "unchanged"
    waiting = await refunds.get(three.refund_no)
    assert waiting is not None and waiting.calling_until is None  # the call is over, the sweep looks next


async def test_no_notification_without_a_url_or_for_cloudreve(store: Store) -> None:
    refunds = refunds_of(store)
    for fields in ({"notifyUrl": ""}, {"notifyKind": "cloudreve"}):
        pid = await paid(store, f"t-{fields}", **fields)
        bucket = keys.bucket_of(pid)
        one = await reserve(refunds, pid, "r1", 100)
        await settle(refunds, one.refund_no, "succeeded", delivery_id=f"dlv_{bucket}")
        assert not await store.redis.exists(keys.delivery(bucket, f"dlv_{bucket}")), fields


async def test_every_applied_webhook_is_remembered_whatever_it_changed(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    one = await reserve(refunds, pid, "r1", 1000)
    cases = [("processing", {}, "unchanged"), ("succeeded", {"amount": 999}, "integrity"),
             ("succeeded", {}, "transitioned"), ("processing", {}, "stale")]
    for index, (status, changes, outcome) in enumerate(cases):
        event = (GATEWAY, f"refund:evt_{index}")
        assert (await settle(refunds, one.refund_no, status, event=event, **changes)).outcome == outcome
        assert (await settle(refunds, one.refund_no, "failed", event=event)).outcome == "duplicate", outcome


async def test_a_payment_is_flagged_refunded_while_money_is_back_with_the_customer(store: Store) -> None:
    pid = await paid(store)
    refunds = refunds_of(store)
    flagged = keys.index(keys.bucket_of(pid) or 0, "shop", "flag:refunded")
    one = await reserve(refunds, pid, "r1", 500)
    assert await store.redis.zscore(flagged, pid) is None  # in flight: nothing back yet
    await settle(refunds, one.refund_no, "succeeded")
    assert await store.redis.zscore(flagged, pid) == NOW  # by its createdAt, as the listing reads
    await settle(refunds, one.refund_no, "failed")  # the refund came back: nothing is refunded now
    assert await store.redis.zscore(flagged, pid) is None
