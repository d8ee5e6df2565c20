"""service/model.py: the stored records, typed. What the scripts store reads back whole (no field
unknown to the model), what the model writes is what create.lua stores, and the Lua scripts name
no hash field the model does not have."""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import keys
from service.delivery_store import DeliveryStore
from service.model import CorruptHash, Delivery, DeliveryState, Payment, Refund, name_of, names
from service.outbox import snapshot_of
from service.schedule import Schedule
from service.states import PaymentState
from service.stats import Stats
from service.store import Store
from service.timeline import Timeline
from tests.helpers import NOW, apply, record

TEXT = st.text()
SOME_TEXT = st.none() | st.text(min_size=1)  # an empty optional reads as none: not a value of its own
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)

payments = st.builds(
    Payment, payment_id=TEXT, client=TEXT, transaction_id=TEXT, gateway=TEXT, amount=INTS, currency=TEXT,
    date=TEXT, description=TEXT, customer_identifier=SOME_TEXT, complete_url=TEXT, cancel_url=TEXT,
    online=st.booleans(), save_method=st.booleans(), notify_url=SOME_TEXT, notify_kind=TEXT,
    created_at=INTS, updated_at=INTS, expires_at=INTS, status=st.sampled_from(PaymentState), version=INTS,
    previous=SOME_TEXT, fingerprint=TEXT, creating_until=st.none() | INTS, payment_url=SOME_TEXT,
    gateway_reference=SOME_TEXT, gateway_state=SOME_TEXT, paid_at=st.none() | INTS, failure_reason=SOME_TEXT,
    late_payment=st.booleans(), integrity_error=st.booleans(), sweep_attempts=st.integers(0, 2**31),
    claim=SOME_TEXT,
)
deliveries = st.builds(
    Delivery, delivery_id=TEXT, payment_id=TEXT, kind=TEXT, url=TEXT, type=TEXT, version=INTS, created_at=INTS,
    snapshot=TEXT, state=st.sampled_from(DeliveryState), next_at=st.none() | INTS, attempts=INTS,
    window_start=st.none() | INTS, window_attempts=st.none() | INTS, last_attempt_at=st.none() | INTS,
    last_status_code=st.none() | INTS, last_error=SOME_TEXT, claim=SOME_TEXT,
)


@given(payments)
def test_a_payment_round_trips(payment: Payment) -> None:
    spelled = payment.to_hash()
    assert all(isinstance(value, str) for value in spelled.values())
    assert Payment.from_hash(spelled) == payment


@given(deliveries)
def test_a_delivery_round_trips(delivery: Delivery) -> None:
    assert Delivery.from_hash(delivery.to_hash()) == delivery


def test_every_field_has_its_own_hash_name() -> None:
    for kind in (Payment, Delivery):
        fields = dataclasses.fields(kind)
        assert len(names(kind)) == len(fields)
        assert all(field.metadata["name"] for field in fields)


def stored(**fields: str) -> dict[str, str]:
    """A payment's hash as a create stores it."""
    return record("pr_00" + "a" * 24, creatingUntil=str(NOW + keys.CREATING_LEASE_MS), **fields).to_hash()


@pytest.mark.parametrize(("field", "value", "says"), [
    ("amount", None, "'amount' is missing"),
    ("status", None, "'status' is missing"),
    ("fingerprint", None, "'fingerprint' is missing"),
    ("amount", "25.00", "'amount' is not an integer"),
    ("amount", "", "'amount' is not an integer"),
    ("createdAt", " 1", "'createdAt' is not an integer"),
    ("status", "paid", "'status' is not a PaymentState"),
    ("online", "true", "'online' is not 0 or 1"),
    ("latePayment", "0", "'latePayment' is neither absent nor 1"),
    ("sweepAttempts", "x", "'sweepAttempts' is not an integer"),
])
def test_a_corrupt_payment_names_its_field(field: str, value: str | None, says: str) -> None:
    found = stored()
    if value is None:
        del found[field]
    else:
        found[field] = value
    with pytest.raises(CorruptHash, match=f"^payment pr_00a+: field {says}"):
        Payment.from_hash(found)


def test_a_corrupt_delivery_names_its_field() -> None:
    found = {"id": "dlv_1", "paymentId": "pr_1", "kind": "generic", "url": "u", "type": "transaction.failed",
             "version": "1", "createdAt": str(NOW), "snapshot": "{}", "state": "lost", "nextAt": "", "attempts": "0"}
    with pytest.raises(CorruptHash, match=r"^delivery dlv_1: field 'state' is not a DeliveryState: 'lost'"):
        Delivery.from_hash(found)
    assert Delivery.from_hash({**found, "state": "dead"}).next_at is None
    with pytest.raises(CorruptHash, match="not list"):
        Payment.from_hash([])  # type: ignore[arg-type]
    with pytest.raises(CorruptHash, match="'amount' is not a string: int"):  # a snapshot's JSON, say
        Payment.from_hash({**stored(), "amount": 2500})  # type: ignore[dict-item]


def test_absent_and_empty_values_read_as_none() -> None:
    found = {**stored(), "gatewayReference": "", "paymentUrl": ""}  # finalize of a gateway that gave none
    payment = Payment.from_hash(found)
    assert (payment.customer_identifier, payment.notify_url, payment.previous) == (None, "https://shop.example/hook",
                                                                                   None)
    assert (payment.gateway_reference, payment.payment_url, payment.paid_at) == (None, None, None)
    assert (payment.late_payment, payment.integrity_error, payment.sweep_attempts) == (False, False, 0)
    assert Payment.from_hash({**found, "unknownToThisVersion": "1"}) == payment  # a newer payrelay's field


def test_a_record_of_before_reads_the_same() -> None:
    """Values everyone has are left out now; records of before that wrote them read the same."""
    now = stored()
    before = {**now, "notifyKind": "generic", "saveMethod": "0", "version": "0"}
    assert set(before) - set(now) == {"notifyKind", "saveMethod", "version"}
    assert Payment.from_hash(before) == Payment.from_hash(now)
    assert Payment.from_hash({**now, "notifyKind": "cloudreve"}).notify_kind == "cloudreve"
    assert Payment.from_hash({**now, "saveMethod": "1"}).save_method is True
    with pytest.raises(CorruptHash, match="'saveMethod' is not 0 or 1"):
        Payment.from_hash({**now, "saveMethod": "yes"})


# -- what the scripts store --------------------------------------------------------------------------


async def read_whole(store: Store, pid: str) -> Payment:
    """The payment's hash: every field known to the model, and written back the same."""
    found: dict[str, str] = await store.redis.hgetall(keys.payment(keys.bucket_of(pid) or 0, pid))
    assert set(found) - names(Payment) == set()
    payment = Payment.from_hash(found)
    assert payment.to_hash() == found
    assert await store.get(pid) == payment
    return payment


async def test_create_stores_what_the_model_writes(store: Store) -> None:
    pid = keys.new_payment_id(keys.bucket_for("shop", "t1"))
    new = dataclasses.replace(record(pid), creating_until=NOW + keys.CREATING_LEASE_MS)
    assert (await store.reserve(new, now_ms=NOW)).outcome == "new"
    assert await read_whole(store, pid) == new
    await apply(store, pid, now_ms=NOW, status="closed", gateway_state="expired")
    again = dataclasses.replace(new, payment_id=keys.new_payment_id(keys.bucket_for("shop", "t1")))
    assert (await store.reserve(again, now_ms=NOW)).outcome == "new"
    assert await read_whole(store, again.payment_id) == dataclasses.replace(again, previous=pid)


async def test_every_script_leaves_a_payment_the_model_reads_whole(store: Store) -> None:
    pid = keys.new_payment_id(keys.bucket_for("shop", "t1"))
    bucket = keys.bucket_of(pid) or 0
    await store.reserve(record(pid), now_ms=NOW)
    assert (await read_whole(store, pid)).creating_until == NOW + keys.CREATING_LEASE_MS
    await store.release(pid, NOW + 5_000, now_ms=NOW, why="timed out")
    assert (await read_whole(store, pid)).creating_until == 0
    assert await store.take_over(pid, NOW + 1) == "taken"
    await read_whole(store, pid)
    await store.finalize(pid, "https://pay.example/x", "cs_1", NOW + 2)
    opened = await read_whole(store, pid)
    assert (opened.status, opened.payment_url, opened.gateway_reference, opened.creating_until) == (
        PaymentState.WAITING, "https://pay.example/x", "cs_1", None)
    schedule = Schedule(store.redis, keys.due, keys.payment_prefix, name_of(Payment, "status"), (), 60_000)
    assert [claim.id for claim in await schedule.claim(bucket, NOW + 1_800_000, 10)] == [pid]
    assert await store.count_sweep_attempt(pid) == 1
    swept = await read_whole(store, pid)
    assert (swept.claim, swept.sweep_attempts) == (schedule.token, 1)
    await apply(store, pid, now_ms=NOW + 3, status="succeeded", gateway_state="paid", amount=(1, "USD"))
    assert (await read_whole(store, pid)).integrity_error is True
    await apply(store, pid, now_ms=NOW + 4, status="closed", gateway_state="expired", delivery_id="dlv_c")
    await apply(store, pid, now_ms=NOW + 5, status="succeeded", gateway_state="paid", delivery_id="dlv_l")
    late = await read_whole(store, pid)
    assert (late.status, late.version, late.paid_at, late.late_payment, late.gateway_state) == (
        PaymentState.SUCCEEDED, 2, NOW + 5, True, "paid")
    await store.clear_sweep_attempts(pid)
    assert (await read_whole(store, pid)).sweep_attempts == 0

    failed = keys.new_payment_id(keys.bucket_for("shop", "t2"))
    await store.reserve(record(failed, transactionId="t2"), now_ms=NOW)
    await apply(store, failed, now_ms=NOW, status="failed", gateway_state="x", failure_reason="card_declined")
    assert (await read_whole(store, failed)).failure_reason == "card_declined"


async def test_every_write_leaves_a_delivery_the_model_reads_whole(store: Store) -> None:
    pid = keys.new_payment_id(keys.bucket_for("shop", "t1"))
    bucket = keys.bucket_of(pid) or 0
    await store.reserve(record(pid), now_ms=NOW)
    await store.finalize(pid, "https://pay.example/x", "cs_1", NOW)
    await apply(store, pid, now_ms=NOW + 1, status="processing", gateway_state="unpaid", delivery_id="dlv_1")
    deliveries = DeliveryStore(store.redis)

    async def whole() -> Delivery:
        found: dict[str, str] = await store.redis.hgetall(keys.delivery(bucket, "dlv_1"))
        assert set(found) - names(Delivery) == set()
        delivery = Delivery.from_hash(found)
        assert delivery.to_hash() == found
        return delivery

    enqueued = await whole()
    assert (enqueued.state, enqueued.next_at, enqueued.version, enqueued.attempts) == (
        DeliveryState.PENDING, NOW + 1, 1, 0)
    assert snapshot_of(enqueued) == await store.get(pid)  # the payment as of the change
    schedule = Schedule(store.redis, keys.outbox, keys.delivery_prefix, name_of(Delivery, "state"), (), 60_000)
    await schedule.claim(bucket, NOW + 1, 10)
    failed = dataclasses.replace(await whole(), attempts=1, window_attempts=1, last_attempt_at=NOW + 2,
                                 next_at=NOW + 10_000, last_status_code=500, last_error="boom")
    assert failed.claim == schedule.token
    assert await deliveries.record_attempt(bucket, failed, "failed", "HTTP 500", NOW + 2, claim=schedule.token)
    failed = dataclasses.replace(failed, claim=None)  # the attempt ended the claim: due at its next try
    assert await whole() == failed and await store.redis.zscore(keys.outbox(bucket), "dlv_1") == NOW + 10_000
    dead = dataclasses.replace(failed, state=DeliveryState.DEAD, next_at=None, last_error=None)
    assert not await deliveries.record_attempt(bucket, dead, "dead", "HTTP 500", NOW + 3, claim=schedule.token)
    assert await whole() == dead  # recorded, though the claim was not the sender's any more
    (hour,) = await Stats(store.redis).hours(NOW + 3, hours=1)
    assert {n: c for n, c in hour.counts.items() if n.startswith("delivery:")} == {"delivery:failed": 1,
                                                                                  "delivery:dead": 1}
    told = [(e.type, e.fields["outcome"], e.fields["answer"]) for e in await Timeline(store.redis).of_payment(pid)
            if e.type == "delivery"]
    assert told == [("delivery", "failed", "HTTP 500"), ("delivery", "dead", "HTTP 500")]
    later = NOW + 100_000  # the claim's lease has run out
    resent = await deliveries.resend(bucket, pid, "dlv_1", later)
    assert resent == dataclasses.replace(dead, state=DeliveryState.PENDING, next_at=later, window_start=later,
                                         window_attempts=0) == await whole()
    assert await deliveries.of_payment(bucket, pid) == [resent]


# -- the names the Lua scripts use --------------------------------------------------------------------

# Per script, which hash each key expression of a hash command is: a payment's, a delivery's, or
# either (the schedules' entries). Scripts or keys not named here use no hash.
HASHES: dict[str, dict[str, tuple[type, ...]]] = {
    "create": {"KEYS[2]": (Payment,), "key": (Payment,)},
    "finalize": {"KEYS[1]": (Payment,)},
    "abort": {"KEYS[1]": (Payment,)},
    "release": {"KEYS[1]": (Payment,)},
    "takeover": {"KEYS[1]": (Payment,)},
    "transition": {"KEYS[1]": (Payment,), "key": (Delivery,)},
    "claim": {"key": (Payment, Delivery, Refund)},
    "reschedule": {"KEYS[2]": (Payment, Delivery, Refund)},
    "refund": {"KEYS[1]": (Payment,), "KEYS[2]": (), "KEYS[3]": (Refund,), "KEYS[5] .. known": (Refund,)},
    "refund_apply": {"KEYS[1]": (Refund,), "KEYS[2]": (Payment,)},
    # queue_delivery writes a delivery (read_record reads any hash whole); tally counts in the hour's
    # stats; opened marks the payment
    "lib": {"key": (Delivery,), "stats": (), "k.payment": (Payment,)},
    "delivery_attempt": {"KEYS[1]": (Delivery,)},
    "list": {"KEYS[2] .. id": (Payment,)},
    "event": {},
    "trim": {},
}
WHOLE = {"transition": Payment, "refund_apply": Refund}  # scripts that read a hash whole into rec
NAMED_FIELDS = {"HSET": slice(2, None, 2), "HMGET": slice(2, None), "HDEL": slice(2, None), "HGET": slice(2, 3),
                "HINCRBY": slice(2, 3)}
LITERAL = re.compile(r"'([^']*)'")


def calls(source: str) -> list[list[str]]:
    """Every ``redis.call(...)`` of a script, as its top-level arguments."""
    found = []
    for start in (m.end() for m in re.finditer(r"redis\.call\(", source)):
        depth, quoted, args, current = 0, False, [], ""
        for char in source[start:]:
            if char == "'":
                quoted = not quoted
            elif not quoted and char == "(":
                depth += 1
            elif not quoted and char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif not quoted and depth == 0 and char == ",":
                args.append(current.strip())
                current = ""
                continue
            current += char
        found.append([*args, current.strip()])
    return found


def test_the_scripts_name_only_fields_of_the_model() -> None:
    seen: dict[type, set[str]] = {Payment: set(), Delivery: set(), Refund: set()}
    lua = resources.files("service").joinpath("lua")
    assert {path.name.removesuffix(".lua") for path in lua.iterdir()} == set(HASHES)
    for script, hashes in HASHES.items():
        source = lua.joinpath(f"{script}.lua").read_text(encoding="utf-8")
        source = "\n".join(line.split("--")[0] for line in source.splitlines())
        for args in calls(source):
            command = LITERAL.fullmatch(args[0])
            assert command is not None
            if command.group(1) not in NAMED_FIELDS:
                continue
            kinds = hashes[args[1]]  # a hash command on a key this table does not know: add it
            for arg in args[NAMED_FIELDS[command.group(1)]]:
                if literal := LITERAL.fullmatch(arg):
                    for kind in kinds:
                        assert literal.group(1) in names(kind), (script, kind.__name__, literal.group(1))
                        seen[kind].add(literal.group(1))
        if script in WHOLE:  # a hash read whole into rec
            for name in re.findall(r"\brec\.(\w+)", source):
                assert name in names(WHOLE[script]), (script, name)
                seen[WHOLE[script]].add(name)
    # the parse found the names it should (so the loop above is not vacuous)
    assert {"status", "version", "previous", "fingerprint", "creatingUntil", "paymentUrl", "gatewayReference",
            "integrityError", "latePayment", "paidAt", "failureReason", "gatewayState", "claim",
            "notifyUrl", "notifyKind", "amount", "currency", "paymentId", "client", "transactionId"} <= seen[Payment]
    assert {"id", "paymentId", "kind", "url", "type", "version", "createdAt", "snapshot", "attempts", "state",
            "nextAt", "claim"} <= seen[Delivery]
    assert {"refundNo", "refundId", "paymentId", "amount", "status", "version", "fingerprint", "callingUntil",
            "gatewayReference", "failureReason", "gatewayState", "integrityError", "claim"} <= seen[Refund]
    assert {"refundedAmount", "refundingAmount"} <= seen[Payment]


def test_the_snapshot_is_a_payment_hash() -> None:
    """transition.lua stores the payment's hash as JSON: the same names, so it reads as a Payment."""
    payment = Payment.from_hash(stored())
    delivery = Delivery(delivery_id="dlv_1", payment_id=payment.payment_id, kind="generic", url="u",
                        type="transaction.processing", version=1, created_at=NOW,
                        snapshot=json.dumps(payment.to_hash()), state=DeliveryState.PENDING, next_at=NOW,
                        attempts=0)
    assert snapshot_of(delivery) == payment
