"""The Lua scripts' rules, on a real Redis and on the embedded store (same code, same scripts)."""

from __future__ import annotations

import json

from service import keys
from service.store import Store
from tests.conftest import RETENTION_S
from tests.helpers import NOW, apply, opened, record, reserve


async def test_reserve_then_duplicates(store: Store) -> None:
    first = await reserve(store)
    assert first.outcome == "new"
    assert (await reserve(store)).outcome == "wait"  # the first create still holds it
    resumed = await reserve(store, now=NOW + keys.CREATING_LEASE_MS + 1)
    assert (resumed.outcome, resumed.payment_id) == ("resume", first.payment_id)
    assert (await store.finalize(first.payment_id, "https://pay.example/x", "cs_1", NOW)).status == "waiting"
    existing = await reserve(store)
    assert (existing.outcome, existing.payment_id) == ("existing", first.payment_id)
    assert (await reserve(store, fingerprint="other")).outcome == "conflict"


async def test_abort_restores_previous_payment(store: Store) -> None:
    pid = await opened(store)
    await apply(store, pid, now_ms=NOW, status="closed", gateway_state="expired", delivery_id="d1")
    retry = await reserve(store)
    assert retry.outcome == "new" and retry.payment_id != pid
    await store.abort(retry.payment_id, "shop", "t1")
    assert await store.get(retry.payment_id) is None
    found = await store.find("shop", "t1")
    assert found is not None and found.payment_id == pid
    assert await store.redis.pttl(keys.transaction(keys.bucket_of(pid), "shop", "t1")) > 0


async def test_forward_only(store: Store) -> None:
    pid = await opened(store)
    applied = await apply(store, pid, now_ms=NOW, status="processing", gateway_state="unpaid",
                                next_sync_ms=NOW + 60_000, delivery_id="d1")
    assert (applied.outcome, applied.previous, applied.version) == ("transitioned", "waiting", 1)
    stale = await apply(store, pid, now_ms=NOW, status="waiting", gateway_state="open", delivery_id="d2")
    assert stale.outcome == "stale"
    done = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", delivery_id="d3")
    assert (done.outcome, done.version) == ("transitioned", 2)
    for status in ("failed", "closed", "processing", "waiting"):
        assert (await apply(store, pid, now_ms=NOW, status=status, gateway_state="x",
                                  delivery_id="d4")).outcome == "stale"
    saved = await store.get(pid)
    assert saved is not None
    assert (saved.status, saved.version, saved.paid_at) == ("succeeded", 2, NOW)


async def test_late_payment_once(store: Store) -> None:
    pid = await opened(store)
    await apply(store, pid, now_ms=NOW, status="closed", gateway_state="expired", delivery_id="d1")
    late = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", delivery_id="d2")
    assert late.outcome == "late"
    again = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", delivery_id="d3")
    assert again.outcome == "unchanged"
    saved = await store.get(pid)
    assert saved is not None and saved.late_payment is True and saved.version == 2


async def test_duplicate_event_and_integrity(store: Store) -> None:
    pid = await opened(store)
    wrong = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", amount=(250, "USD"),
                              event=("stripe", "evt_1"), delivery_id="d1")
    assert wrong.outcome == "integrity"
    saved = await store.get(pid)
    assert saved is not None and saved.status == "waiting" and saved.integrity_error is True
    other_currency = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid",
                                       amount=(2500, "EUR"), delivery_id="d2")
    assert other_currency.outcome == "integrity"
    right = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", amount=(2500, "USD"),
                              event=("stripe", "evt_2"), delivery_id="d3")
    assert right.outcome == "transitioned"
    dup = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", amount=(2500, "USD"),
                            event=("stripe", "evt_2"), delivery_id="d4")
    assert dup.outcome == "duplicate"
    ttl = await store.redis.ttl(keys.event(keys.bucket_of(pid), "stripe", "evt_2"))
    assert 3 * 86400 < ttl <= keys.EVENT_TTL


async def test_transition_writes_due_outbox_and_retention(store: Store) -> None:
    pid = await opened(store)
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    assert await store.redis.zscore(keys.due(bucket), pid) == NOW + 1_800_000
    await apply(store, pid, now_ms=NOW, status="processing", gateway_state="unpaid",
                      next_sync_ms=NOW + 60_000, delivery_id="dlv_a")
    assert await store.redis.zscore(keys.due(bucket), pid) == NOW + 60_000
    await apply(store, pid, now_ms=NOW + 5, status="succeeded", gateway_state="paid", delivery_id="dlv_b")
    assert await store.redis.zscore(keys.due(bucket), pid) is None
    assert await store.redis.zrange(keys.outbox(bucket), 0, -1) == ["dlv_a", "dlv_b"]
    assert await store.redis.lrange(keys.deliveries(bucket, pid), 0, -1) == ["dlv_a", "dlv_b"]
    delivery = await store.redis.hgetall(keys.delivery(bucket, "dlv_b"))
    assert (delivery["type"], delivery["version"], delivery["url"]) == (
        "transaction.succeeded", "2", "https://shop.example/hook")
    snapshot = json.loads(delivery["snapshot"])
    assert snapshot["status"] == "succeeded" and snapshot["version"] == "2"
    payment_ttl = await store.redis.ttl(keys.payment(bucket, pid))
    assert RETENTION_S - 5 <= payment_ttl <= RETENTION_S
    assert await store.redis.ttl(keys.transaction(bucket, "shop", "t1")) > RETENTION_S - 5


async def test_cloudreve_payments_notify_only_success(store: Store) -> None:
    bucket = keys.bucket_for("shop", "t1")
    pid = keys.new_payment_id(bucket)
    await store.reserve(record(pid, notifyKind="cloudreve"), now_ms=NOW)
    await store.finalize(pid, "u", "", NOW)
    await apply(store, pid, now_ms=NOW, status="processing", gateway_state="x", delivery_id="d1")
    await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="x", delivery_id="d2")
    assert await store.redis.zrange(keys.outbox(bucket), 0, -1) == ["d2"]


async def test_unknown_payment(store: Store) -> None:
    pid = keys.new_payment_id(3)
    applied = await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", delivery_id="d")
    assert applied.outcome == "missing"
    assert await store.get("not-an-id") is None


async def test_all_keys_share_the_bucket_slot(store: Store) -> None:
    pid = await opened(store)
    await apply(store, pid, now_ms=NOW, status="succeeded", gateway_state="paid", event=("stripe", "e"),
                      delivery_id="dlv_x")
    tags = {key.split("}")[0] async for key in store.redis.scan_iter("*")}  # all nodes of a cluster
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    assert tags == {keys.tag(bucket).removesuffix(":").removesuffix("}")}


async def test_another_gateways_word_changes_nothing(store: Store) -> None:
    pid = await opened(store)  # a stripe-connect payment
    foreign = await store.apply(pid, gateway="wechat-pay-native", now_ms=NOW, status="succeeded",
                                gateway_state="SUCCESS", event=("wechat", "e1"), delivery_id="d1", source="webhook")
    assert foreign.outcome == "foreign"
    saved = await store.get(pid)
    assert saved is not None and saved.status == "waiting" and saved.version == 0
    assert await store.redis.exists(keys.event(keys.bucket_of(pid), "wechat", "e1")) == 0


def test_the_prefixes_scripts_append_ids_to_name_the_same_keys() -> None:
    for bucket in (0, 7, keys.BUCKETS - 1):
        pid = keys.new_payment_id(bucket)
        assert keys.payment_prefix(bucket) + pid == keys.payment(bucket, pid)
        assert keys.transaction_prefix(bucket) + "shop" + ":" + "order:1" == keys.transaction(bucket, "shop", "order:1")
