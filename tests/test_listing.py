"""The listing (service.listing) on the real scripts: cursor pages in both directions, per client,
stable while payments are written, its filters, its search; and a payment's timeline and the
hour's counts (service.timeline, service.stats), written by the same scripts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from service import errors, keys
from service.listing import Listing, ListQuery, Position, decode_token, encode_token
from service.stats import Stats
from service.store import Store
from service.timeline import Timeline
from tests.helpers import NOW, apply, record

CLIENTS = ("shop", "other")


async def make(store: Store, txn: str, *, client: str = "shop", at: int = NOW, gateway: str = "stripe-connect",
               opened: bool = True) -> str:
    bucket = keys.bucket_for(client, txn)
    pid = keys.new_payment_id(bucket)
    payment = record(pid, client=client, transactionId=txn, createdAt=str(at), updatedAt=str(at), gateway=gateway)
    assert (await store.reserve(payment, now_ms=at)).outcome == "new"
    if opened:
        await store.finalize(pid, f"https://pay.example/{pid}", f"ref-{txn}", at)
    return pid


async def walk(listing: Listing, size: int = 10, between: Any = None, **query: Any) -> list[str]:
    """Every page of a query, in order; ``between(n)`` runs after page n (concurrent writes)."""
    seen, token, pages = [], "", 0
    while True:
        page = await listing.page(ListQuery(page_size=size, token=token, **query))
        assert len(page.payments) <= size
        seen += [payment.payment_id for payment in page.payments]
        pages += 1
        if between is not None:
            await between(pages)
        token = page.next_token
        if not token:
            return seen
        assert pages < 1000


@pytest.fixture
def listing(store: Store) -> Listing:
    return Listing(store, CLIENTS)


async def test_pages_walk_a_clients_payments_newest_or_oldest_first(store: Store, listing: Listing) -> None:
    made = {}
    for n in range(57):  # several a millisecond, so ties of createdAt are ordered by id
        made[await make(store, f"t{n}", at=NOW + n // 3)] = NOW + n // 3
    for n in range(9):
        await make(store, f"o{n}", client="other", at=NOW + n)
    newest = [pid for pid, _ in sorted(made.items(), key=lambda item: (item[1], item[0]), reverse=True)]
    assert await walk(listing, client="shop") == newest
    assert await walk(listing, client="shop", size=25, descending=False) == newest[::-1]
    assert len(await walk(listing, client="other")) == 9
    assert len(await walk(listing)) == 66  # every client's: the console


async def test_no_payment_is_skipped_or_repeated_while_payments_are_written(store: Store, listing: Listing) -> None:
    for n in range(40):
        await make(store, f"t{n}", at=NOW + n)
    before = await walk(listing, client="shop")
    rng = random.Random(7)
    written = iter(range(10_000))

    async def writes(page: int) -> None:  # new payments, and moves of listed ones, between the pages
        for _ in range(3):
            n = next(written)
            await make(store, f"new{n}", at=NOW + 1000 + n)
        await apply(store, rng.choice(before), now_ms=NOW + 2000, status="succeeded", gateway_state="paid")

    assert await walk(listing, client="shop", between=writes) == before
    oldest_first = await walk(listing, client="shop", descending=False, between=writes)
    assert oldest_first[:40] == before[::-1]  # and the new ones after them, each once
    assert len(oldest_first) == len(set(oldest_first)) > 40


async def test_filters(store: Store, listing: Listing) -> None:
    paid = await make(store, "paid", at=NOW + 1)
    await apply(store, paid, now_ms=NOW + 5, status="succeeded", gateway_state="paid")
    creating = await make(store, "creating", at=NOW + 2, opened=False)
    waiting = await make(store, "waiting", at=NOW + 3, gateway="alipay-page")
    odd = await make(store, "odd", at=NOW + 4)
    await apply(store, odd, now_ms=NOW + 6, status="succeeded", gateway_state="paid", amount=(1, "USD"))

    async def ids(**query: Any) -> set[str]:
        return set(await walk(listing, client="shop", **query))

    assert await ids(status="waiting") == {creating, waiting, odd}  # creating reads as waiting
    assert await ids(status="succeeded") == {paid}
    assert await ids(gateway="alipay-page") == {waiting}
    assert await ids(status="waiting", gateway="stripe-connect") == {creating, odd}
    assert await ids(created_from=NOW + 2, created_to=NOW + 4) == {creating, waiting}
    assert await ids(flag="integrityError") == {odd}
    assert await ids(flag="integrityError", status="succeeded") == set()
    assert await ids(flag="latePayment") == set()


async def test_a_rare_match_is_found_across_short_pages(store: Store, listing: Listing) -> None:
    """A filter the index cannot answer looks at a bounded number of entries a call: pages may be
    short (even empty) with a next token, and the walk still finds every match."""
    wanted = set()
    for n in range(300):
        pid = await make(store, f"t{n}", at=NOW + n, gateway="alipay-page" if n % 97 == 0 else "stripe-connect")
        if n % 97 == 0:
            wanted.add(pid)
    assert set(await walk(listing, client="shop", gateway="alipay-page")) == wanted


async def test_records_gone_with_their_retention_leave_the_index(store: Store, listing: Listing) -> None:
    keep, gone = await make(store, "keep"), await make(store, "gone")
    bucket = keys.bucket_of(gone)
    assert bucket is not None
    await store.redis.delete(keys.payment(bucket, gone))
    assert await walk(listing, client="shop") == [keep]
    assert await store.redis.zscore(keys.index(bucket, "shop"), gone) is None


async def test_the_hourly_trim_drops_entries_of_payments_gone(store: Store, listing: Listing) -> None:
    old, kept, recent = await make(store, "old"), await make(store, "kept"), await make(store, "recent", at=NOW + 5)
    for pid in (old, recent):  # their retention ran out (the recent one's too, as after a refusal)
        await store.redis.delete(keys.payment(keys.bucket_of(pid) or 0, pid))
    after_retention = NOW + store.retention_ms + 86_400_000 + 1
    assert await listing.trim(after_retention) == 2  # old: from its index of all and of waiting
    assert await listing.trim(after_retention + 1) == 0  # once an hour
    remaining = [member for bucket in range(keys.BUCKETS) for member in
                 await store.redis.zrange(keys.index(bucket, "shop"), 0, -1)]
    assert sorted(remaining) == sorted([kept, recent])  # created after the cut: left to the listing


def test_tokens_are_checked() -> None:
    position = Position(NOW, keys.new_payment_id(5))
    token = encode_token(position, True)
    assert decode_token(token, True) == position and decode_token("", True) is None
    foreign = encode_token(Position(NOW, "pr_zz"), True)
    for bad in ("nonsense", "!!", token + "x", encode_token(position, False), foreign):
        with pytest.raises(errors.InvalidRequest) as refused:
            decode_token(bad, True)
        assert refused.value.param == "next_page_token"


async def test_search_by_any_id(store: Store, listing: Listing) -> None:
    pid = await make(store, "order-7")
    other = await make(store, "order-7", client="other")
    assert [p.payment_id for p in await listing.search(pid, CLIENTS)] == [pid]
    assert {p.payment_id for p in await listing.search("order-7", CLIENTS)} == {pid, other}
    assert [p.payment_id for p in await listing.search("order-7", ["other"])] == [other]
    assert [p.payment_id for p in await listing.search("ref-order-7", [])] != []
    assert await listing.search("nothing-like-it", CLIENTS) == []


async def test_overdue_lists_open_payments_long_past_their_expiry(store: Store, listing: Listing) -> None:
    stuck = await make(store, "stuck", at=NOW)  # expires NOW + 30 min
    creating = await make(store, "creating", at=NOW + 1, opened=False)  # its create never ended
    await make(store, "fresh", at=NOW + 3_600_000)
    paid = await make(store, "paid", at=NOW)
    await apply(store, paid, now_ms=NOW + 5, status="succeeded", gateway_state="paid")
    later = NOW + 1_800_000 + 10 * 60_000
    assert [p.payment_id for p in await listing.overdue(later)] == [stuck, creating]  # each once


# -- the timeline -----------------------------------------------------------------------------

async def test_the_timeline_tells_what_happened_oldest_first(store: Store) -> None:
    timeline = Timeline(store.redis)
    pid = await make(store, "t1")
    await apply(store, pid, now_ms=NOW + 1, status="processing", gateway_state="pending", event=("stripe", "e1"))
    await apply(store, pid, now_ms=NOW + 2, status="processing", gateway_state="pending", event=("stripe", "e1"))
    await apply(store, pid, now_ms=NOW + 3, status="waiting", gateway_state="open", source="sync")
    await apply(store, pid, now_ms=NOW + 4, status="succeeded", gateway_state="paid", amount=(999, "USD"))
    await apply(store, pid, now_ms=NOW + 5, status="succeeded", gateway_state="paid", amount=(2500, "USD"),
                source="sweep")
    await timeline.record(pid, "operator", actor="alice", action="sync")
    events = await timeline.of_payment(pid)
    assert [(e.type, e.fields.get("outcome") or e.fields.get("to", "")) for e in events] == [
        ("created", ""), ("opened", ""), ("transition", "processing"), ("ignored", "duplicate"),
        ("ignored", "stale"), ("integrity", ""), ("transition", "succeeded"), ("operator", "")]
    moved = events[2].fields
    assert (moved["from"], moved["source"], moved["gatewayState"]) == ("waiting", "webhook", "pending")
    assert events[5].fields["amount"] == "999" and events[6].fields["source"] == "sweep"
    assert events[7].fields == {"actor": "alice", "action": "sync"}
    assert events[0].fields == {}  # the transaction's first payment: no previous one
    assert (events[2].at, events[6].at) == (NOW + 1, NOW + 5)


async def test_a_timeline_is_bounded_and_kept_as_long_as_its_payment(store: Store) -> None:
    timeline = Timeline(store.redis)
    pid = await make(store, "t1")
    for n in range(keys.TIMELINE_MAX + 20):  # words that change nothing, each another
        await apply(store, pid, now_ms=NOW + n, status="waiting", gateway_state=f"open-{n}")
    bucket = keys.bucket_of(pid)
    assert bucket is not None
    assert await store.redis.llen(keys.events(bucket, pid)) == keys.TIMELINE_MAX  # the newest kept
    events = await timeline.of_payment(pid)  # and created and opened, read from the record
    assert [e.type for e in events[:3]] == ["created", "opened", "ignored"] and len(events) == keys.TIMELINE_MAX + 2
    assert events[-1].fields["gatewayState"] == f"open-{keys.TIMELINE_MAX + 19}"
    assert await store.redis.pttl(keys.events(bucket, pid)) == -1  # open: no end yet
    fresh = await make(store, "t2")  # a payment nothing more has happened to has no timeline key
    assert await store.redis.exists(keys.events(keys.bucket_of(fresh) or 0, fresh)) == 0
    assert [e.type for e in await timeline.of_payment(fresh)] == ["created", "opened"]
    await apply(store, pid, now_ms=NOW + 500, status="closed", gateway_state="expired")
    payment_ttl = await store.redis.pttl(keys.payment(bucket, pid))
    assert payment_ttl - 1000 < await store.redis.pttl(keys.events(bucket, pid)) <= payment_ttl


async def test_repeated_words_count_in_one_entry(store: Store) -> None:
    timeline = Timeline(store.redis)
    pid = await make(store, "t1")
    for n in range(5):
        await apply(store, pid, now_ms=NOW + n, status="waiting", gateway_state="open", source="sweep")
    last = (await timeline.of_payment(pid))[-1]
    assert (last.type, last.fields["count"], last.at) == ("ignored", "5", NOW + 4)


async def test_a_create_without_a_clear_answer_is_noted(store: Store) -> None:
    pid = await make(store, "t1", opened=False)
    await store.release(pid, NOW + 5_000, now_ms=NOW + 1, why="the gateway timed out")
    last = (await Timeline(store.redis).of_payment(pid))[-1]
    assert (last.type, last.fields["detail"], last.at) == ("unclear", "the gateway timed out", NOW + 1)


# -- the hour's counts ------------------------------------------------------------------------

async def test_the_scripts_count_what_the_console_charts(store: Store) -> None:
    hour = NOW // keys.HOUR_MS * keys.HOUR_MS
    for n, took in enumerate((5, 40, 3000)):
        pid = await make(store, f"t{n}", at=hour + 10)
        await apply(store, pid, now_ms=hour + 5000, status="succeeded", gateway_state="paid",
                    received_ms=hour + 5000 - took)
    other = await make(store, "alipay", at=hour + 20, gateway="alipay-page")
    await store.apply(other, gateway="alipay-page", now_ms=hour + keys.HOUR_MS, status="closed",
                      gateway_state="expired", source="sweep")
    earlier, now = await Stats(store.redis).hours(hour + keys.HOUR_MS + 1, hours=2)
    assert (earlier.start, now.start) == (hour, hour + keys.HOUR_MS)
    assert earlier.counts == {
        "opened:stripe-connect": 3, "opened:alipay-page": 1, "status:succeeded:stripe-connect": 3,
        "applied:n": 3, "applied:ms": 3045, "applied:le:10": 1, "applied:le:50": 2, "applied:le:250": 2,
        "applied:le:1000": 2}
    assert now.counts == {"status:closed:alipay-page": 1}  # not a webhook: no latency
    assert 0 < await store.redis.ttl(keys.stats(keys.bucket_of(other) or 0, hour)) <= keys.STATS_TTL
