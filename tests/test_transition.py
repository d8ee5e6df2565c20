"""service/lua/transition.lua, rule by rule: what each branch writes, and what it leaves alone.

Written to kill the mutants of the script that tests/test_store.py let through (tests/README.md,
mutation testing): each assertion here is a line of the script that could be wrong unnoticed.
"""

from __future__ import annotations

import json

from service import keys
from service.model import Payment, names
from service.store import Store
from tests.conftest import RETENTION_S
from tests.helpers import NOW, apply, opened, record, reserve


def _bucket(pid: str) -> int:
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    return bucket


async def _saved(store: Store, pid: str) -> dict[str, str]:
    """The payment's hash as the script left it (what it wrote, field by field), which the model
    reads whole."""
    saved: dict[str, str] = await store.redis.hgetall(keys.payment(_bucket(pid), pid))
    assert saved and set(saved) <= names(Payment)
    assert await store.get(pid) == Payment.from_hash(saved)
    return saved


async def test_unknown_payment_is_version_0(store: Store) -> None:
    applied = await apply(store, keys.new_payment_id(3), now_ms=NOW, status="succeeded", gateway_state="paid")
    assert (applied.outcome, applied.previous, applied.version) == ("missing", "", 0)


async def test_integrity_error_stamps_updated_at_and_marks_the_event(store: Store) -> None:
    pid = await opened(store)
    before = await _saved(store, pid)
    wrong = await apply(store, pid, now_ms=NOW + 7, status="succeeded", gateway_state="paid", amount=(250, "USD"),
                        event=("stripe", "evt_bad"))
    assert (wrong.outcome, wrong.previous, wrong.version) == ("integrity", "waiting", 0)
    saved = await _saved(store, pid)
    assert saved["updatedAt"] == str(NOW + 7) and saved["integrityError"] == "1"
    assert {k: v for k, v in saved.items() if k not in ("updatedAt", "integrityError")} == \
        {k: v for k, v in before.items() if k != "updatedAt"}
    again = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", amount=(250, "USD"),
                        event=("stripe", "evt_bad"))
    assert again.outcome == "duplicate"
    # the amount is compared only when one is seen: a word without amount moves the payment
    moved = await apply(store, pid, now_ms=NOW, status="processing", gateway_state="unpaid")
    assert moved.outcome == "transitioned"


async def test_integrity_compares_the_currency_too(store: Store) -> None:
    pid = await opened(store)
    assert (await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid",
                        amount=(2500, "usd"))).outcome == "integrity"
    assert (await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid",
                        amount=(2500, "USD"))).outcome == "transitioned"


async def test_evidence_about_another_gateway_object_changes_nothing(store: Store) -> None:
    pid = await opened(store)  # finalized with cs_1
    other = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", reference="cs_2",
                        amount=(1, "USD"), event=("stripe", "e-other"), delivery_id="dlv_o")
    assert (other.outcome, other.version) == ("mismatch", 0)
    saved = await _saved(store, pid)
    assert (saved["status"], saved["gatewayReference"], saved.get("integrityError")) == ("waiting", "cs_1", None)
    assert await store.redis.exists(keys.delivery(_bucket(pid), "dlv_o")) == 0
    again = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", reference="cs_2",
                        event=("stripe", "e-other"))
    assert again.outcome == "duplicate"  # marked: a resent copy is not looked at again
    await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", reference="cs_1",
                delivery_id="dlv_r")
    delivery = await store.redis.hgetall(keys.delivery(_bucket(pid), "dlv_r"))
    assert json.loads(delivery["snapshot"])["gatewayReference"] == "cs_1"  # the record as written
    await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid")  # no reference: kept
    assert (await _saved(store, pid))["gatewayReference"] == "cs_1"


async def test_the_first_reference_is_taken_even_without_a_move(store: Store) -> None:
    reservation = await reserve(store, txn="t-ref")
    await store.finalize(reservation.payment_id, "u", "", NOW)  # Alipay, WeChat: known once paid
    same = await apply(store, reservation.payment_id, now_ms=NOW, status="waiting", gateway_state="WAIT_BUYER_PAY",
                       reference="2026112122001400000000000001")
    assert same.outcome == "unchanged"
    saved = await _saved(store, reservation.payment_id)
    assert saved["gatewayReference"] == "2026112122001400000000000001"
    # … and with a move, the notification's snapshot carries it
    paid = await reserve(store, txn="t-ref-paid")
    await store.finalize(paid.payment_id, "u", "", NOW)
    await apply(store, paid.payment_id, now_ms=NOW, status="succeeded", gateway_state="TRADE_SUCCESS",
                reference="2026112122001400000000000002", amount=(2500, "USD"), delivery_id="dlv_first")
    delivery = await store.redis.hgetall(keys.delivery(_bucket(paid.payment_id), "dlv_first"))
    assert json.loads(delivery["snapshot"])["gatewayReference"] == "2026112122001400000000000002"


async def test_unchanged_and_stale_words_mark_their_event(store: Store) -> None:
    pid = await opened(store)
    unchanged = await apply(store, pid, now_ms=NOW, status="waiting", gateway_state="open", event=("stripe", "e1"))
    assert (unchanged.outcome, unchanged.version) == ("unchanged", 0)
    assert (await apply(store, pid, now_ms=NOW, status="", gateway_state="open",
                        event=("stripe", "e0"))).outcome == "unchanged"  # no status: nothing to move
    await apply(store, pid, now_ms=NOW, status="processing", gateway_state="unpaid", event=("stripe", "e2"))
    stale = await apply(store, pid, now_ms=NOW, status="waiting", gateway_state="open", event=("stripe", "e3"))
    assert (stale.outcome, stale.previous, stale.version) == ("stale", "processing", 1)
    for event in ("e0", "e1", "e2", "e3"):
        assert (await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid",
                            event=("stripe", event))).outcome == "duplicate"
        ttl = await store.redis.ttl(keys.event(_bucket(pid), "stripe", event))
        assert keys.EVENT_TTL - 5 <= ttl <= keys.EVENT_TTL


async def test_a_word_without_event_marks_nothing(store: Store) -> None:
    pid = await opened(store)
    await apply(store, pid, now_ms=NOW, status="processing", gateway_state="unpaid")
    assert [key async for key in store.redis.scan_iter("*:event:*")] == []


async def test_a_payment_still_being_created_can_move(store: Store) -> None:
    """A webhook can come before the create's answer is stored: creating ranks with waiting."""
    reservation = await reserve(store)
    assert (await _saved(store, reservation.payment_id))["status"] == "creating"
    assert "creatingUntil" in await _saved(store, reservation.payment_id)
    applied = await apply(store, reservation.payment_id, now_ms=NOW, status="processing", gateway_state="unpaid",
                          next_sync_ms=NOW + 1)
    assert (applied.outcome, applied.previous, applied.version) == ("transitioned", "creating", 1)
    saved = await _saved(store, reservation.payment_id)
    assert saved["status"] == "processing" and "creatingUntil" not in saved


async def test_each_final_status_leaves_the_due_set_and_gets_the_retention(store: Store) -> None:
    for n, final in enumerate(("succeeded", "failed", "closed")):
        txn = f"t-final-{n}"
        reservation = await reserve(store, txn=txn)
        pid = reservation.payment_id
        await store.finalize(pid, "https://pay.example/x", f"cs_{n}", NOW)
        bucket = _bucket(pid)
        assert await store.redis.zscore(keys.due(bucket), pid) is not None
        applied = await apply(store, pid, now_ms=NOW + n, status=final, gateway_state="x", failure_reason="declined",
                              delivery_id=f"dlv_{n}")
        assert (applied.outcome, applied.version) == ("transitioned", 1)
        assert await store.redis.zscore(keys.due(bucket), pid) is None
        assert RETENTION_S - 5 <= await store.redis.ttl(keys.payment(bucket, pid)) <= RETENTION_S
        assert RETENTION_S - 5 <= await store.redis.ttl(keys.transaction(bucket, "shop", txn)) <= RETENTION_S
        saved = await _saved(store, pid)
        assert (saved["status"], saved["updatedAt"], saved["gatewayState"]) == (final, str(NOW + n), "x")
        assert ("paidAt" in saved) == (final == "succeeded")
        assert saved.get("failureReason") == ("declined" if final == "failed" else None)  # only failed keeps it
        assert "latePayment" not in saved


async def test_a_failure_without_reason_writes_none(store: Store) -> None:
    pid = await opened(store)
    await apply(store, pid, now_ms=NOW, status="failed", gateway_state="x", failure_reason="")
    assert "failureReason" not in await _saved(store, pid)


async def test_a_moved_transaction_index_keeps_its_own_ttl(store: Store) -> None:
    """The transaction index is extended only while it still names this payment."""
    pid = await opened(store)
    bucket = _bucket(pid)
    index = keys.transaction(bucket, "shop", "t1")
    await store.redis.set(index, "pr_someone_else", px=60_000)
    await apply(store, pid, now_ms=NOW, status="closed", gateway_state="expired")
    assert await store.redis.pttl(index) <= 60_000


async def test_processing_is_due_again_at_the_next_sync(store: Store) -> None:
    pid = await opened(store)
    await apply(store, pid, now_ms=NOW, status="processing", gateway_state="unpaid", next_sync_ms=NOW + 42)
    assert await store.redis.zscore(keys.due(_bucket(pid)), pid) == NOW + 42
    assert await store.redis.ttl(keys.payment(_bucket(pid), pid)) == -1  # not final: no retention yet


async def test_the_delivery_is_written_whole(store: Store) -> None:
    pid = await opened(store)
    bucket = _bucket(pid)
    await apply(store, pid, now_ms=NOW + 3, status="processing", gateway_state="unpaid", delivery_id="dlv_w")
    delivery = await store.redis.hgetall(keys.delivery(bucket, "dlv_w"))
    snapshot = json.loads(delivery.pop("snapshot"))
    assert delivery == {"id": "dlv_w", "paymentId": pid, "kind": "generic", "url": "https://shop.example/hook",
                        "type": "transaction.processing", "version": "1", "createdAt": str(NOW + 3),
                        "attempts": "0", "state": "pending", "nextAt": str(NOW + 3)}
    assert (snapshot["status"], snapshot["version"], snapshot["updatedAt"], snapshot["gatewayState"]) == (
        "processing", "1", str(NOW + 3), "unpaid")
    assert "creatingUntil" not in snapshot
    assert await store.redis.zscore(keys.outbox(bucket), "dlv_w") == NOW + 3
    for key in (keys.delivery(bucket, "dlv_w"), keys.deliveries(bucket, pid)):
        assert RETENTION_S - 5 <= await store.redis.ttl(key) <= RETENTION_S


async def test_no_notify_url_no_delivery(store: Store) -> None:
    bucket = keys.bucket_for("shop", "t-quiet")
    pid = keys.new_payment_id(bucket)
    await store.reserve(record(pid, transactionId="t-quiet", notifyUrl=""), now_ms=NOW)
    await store.finalize(pid, "u", "cs", NOW)
    await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", delivery_id="dlv_q")
    assert await store.redis.zrange(keys.outbox(bucket), 0, -1) == []
    assert await store.redis.exists(keys.delivery(bucket, "dlv_q")) == 0


async def test_the_snapshot_is_the_record_as_written(store: Store) -> None:
    """The delivery's snapshot carries what this transition wrote: the failure reason, the late
    payment flag, and no creatingUntil (a payment still being created when its word came)."""
    reservation = await reserve(store, txn="t-snap-1")
    pid, bucket = reservation.payment_id, _bucket(reservation.payment_id)
    await apply(store, pid, now_ms=NOW, status="failed", gateway_state="x", failure_reason="card_declined",
                delivery_id="dlv_f")
    snapshot = json.loads((await store.redis.hgetall(keys.delivery(bucket, "dlv_f")))["snapshot"])
    assert snapshot["failureReason"] == "card_declined" and "creatingUntil" not in snapshot
    assert snapshot == await _saved(store, pid)

    late = await opened(store)
    await apply(store, late, now_ms=NOW, status="closed", gateway_state="expired", delivery_id="dlv_c")
    await apply(store, late, now_ms=NOW, status="succeeded", gateway_state="paid", delivery_id="dlv_l")
    snapshot = json.loads((await store.redis.hgetall(keys.delivery(_bucket(late), "dlv_l")))["snapshot"])
    assert snapshot["latePayment"] == "1" and snapshot == await _saved(store, late)
