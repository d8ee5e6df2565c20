"""Every Redis key payrelay uses, with its lifetime. All keys start with ``payrelay:``.

Payments are spread over ``BUCKETS`` hash-tagged buckets (``payrelay:{b07}:…``). Everything one
atomic script touches (a payment's record, its idempotency index entry, its due entry, its
outbox entries, its webhook dedupe marks) lives in the payment's bucket, i.e. in one hash slot,
so the same Lua runs on a single Redis and on Redis Cluster. Workers sweep bucket by bucket.
A payment's child records (its refunds) go in its bucket too, under their own name, not under
``payment:``, which sweeps and tests scan for payments: a refund's number (``rf_<bucket>…``)
carries the bucket as a payment id does, so a gateway's refund webhook finds it.

| key                                          | type   | lifetime                                  |
|----------------------------------------------|--------|-------------------------------------------|
| payrelay:{bNN}:payment:<paymentId>           | hash   | until final + PAYRELAY_RETENTION_DAYS     |
| payrelay:{bNN}:txn:<client>:<transactionId>  | string | the latest paymentId; same as its payment |
| payrelay:{bNN}:due                           | zset   | paymentId → when to look at it next (ms)  |
| payrelay:{bNN}:outbox                        | zset   | deliveryId → when to (re)send it (ms)     |
| payrelay:{bNN}:delivery:<deliveryId>         | hash   | retention, like its payment               |
| payrelay:{bNN}:deliveries:<paymentId>        | list   | the payment's deliveryIds; retention      |
| payrelay:{bNN}:dead                          | zset   | deliveryId → when it was given up (ms);   |
|                                              |        | trimmed after the retention               |
| payrelay:{bNN}:event:<gateway>:<eventId>     | string | webhook dedupe mark; EVENT_TTL            |
| payrelay:{bNN}:refund:<refundNo>             | hash   | retention, like its payment               |
| payrelay:{bNN}:refunds:<paymentId>           | hash   | refundId → refundNo; like its payment     |
| payrelay:{bNN}:refund-due                    | zset   | refundNo → when to ask the gateway (ms)   |
| payrelay:{bNN}:index:all:<client>            | zset   | paymentId → createdAt: the listing's;     |
| payrelay:{bNN}:index:status:<status>:<client>|        | entries of payments gone with their       |
| payrelay:{bNN}:index:flag:<flag>:<client>    |        | retention are dropped when met or trimmed |
| payrelay:{bNN}:ref:<gatewayReference>        | string | its paymentId (the console's search);     |
|                                              |        | like its payment                          |
| payrelay:{bNN}:events:<paymentId>            | list   | the timeline (JSON entries); like its     |
|                                              |        | payment, at most TIMELINE_MAX entries     |
| payrelay:{bNN}:stats:<hour>                  | hash   | counts of an hour (hours since the epoch) |
|                                              |        | for the console's charts; STATS_TTL       |
| payrelay:worker:<name>                       | string | a worker's heartbeat; HEARTBEAT_TTL       |
| payrelay:wake:<due|outbox|refund-due>        | channel| (pub/sub) the score of an entry due within|
|                                              |        | WAKE_HORIZON_MS: wakes idle workers       |
| payrelay:console:session:<sha256 of token>   | hash   | an operator's session; CONSOLE_SESSION_TTL|
|                                              |        | idle, renewed by each request             |
| payrelay:console:signins:<by>:<sha256>       | string | sign-ins by one name (or from one         |
|                                              |        | address); CONSOLE_SIGNIN_WINDOW           |
"""

from __future__ import annotations

import re
import secrets
import string
import zlib

PREFIX = "payrelay:"
BUCKETS = 64  # fixed forever: a payment's bucket is written into its id
EVENT_TTL = 4 * 86400  # gateways retry for up to 3 days (Stripe); remember events a day longer
CREATING_LEASE_MS = 30_000  # how long a create may hold a payment before a duplicate takes over
HEARTBEAT_TTL = 30
TIMELINE_MAX = 200  # a payment's timeline keeps its newest entries
STATS_TTL = 8 * 86400  # the console charts the last day; a week more for looking back
HOUR_MS = 3_600_000
# an idle worker looks at its schedule at least this often; entries due sooner wake it (``wake``)
WAKE_HORIZON_MS = 30_000
CONSOLE_SESSION_TTL = 30 * 60  # an operator's session ends after half an hour without a request
CONSOLE_SIGNIN_WINDOW = 15 * 60  # sign-in attempts are counted this long from the first

_ALPHABET = string.ascii_letters + string.digits
PAYMENT_ID = re.compile(r"pr_([0-9a-f]{2})[0-9A-Za-z]{24}")  # 29 chars: fits WeChat's 6–32
# a refund's id at the gateway (out_request_no, out_refund_no, Stripe's idempotency key), in its
# payment's bucket: 29 characters fit Alipay's 64 and WeChat's 64 of [0-9A-Za-z_-|*@]
REFUND_NO = re.compile(r"rf_([0-9a-f]{2})[0-9A-Za-z]{24}")


def bucket_for(client: str, transaction_id: str) -> int:
    return zlib.crc32(f"{client}\n{transaction_id}".encode()) % BUCKETS


def new_payment_id(bucket: int) -> str:
    return f"pr_{bucket:02x}" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def new_refund_no(bucket: int) -> str:
    return f"rf_{bucket:02x}" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def bucket_of(payment_id: str, pattern: re.Pattern[str] = PAYMENT_ID) -> int | None:
    """The bucket a payment id (or, with ``REFUND_NO``, a refund number) is in; None: not ours."""
    match = pattern.fullmatch(payment_id)
    if match is None:
        return None
    bucket = int(match.group(1), 16)
    return bucket if bucket < BUCKETS else None


def tag(bucket: int) -> str:
    return f"{PREFIX}{{b{bucket:02x}}}:"


def payment(bucket: int, payment_id: str) -> str:
    return f"{tag(bucket)}payment:{payment_id}"


def transaction(bucket: int, client: str, transaction_id: str) -> str:
    return f"{transaction_prefix(bucket)}{client}:{transaction_id}"


# A script that learns a key's id from a record (a payment's previous one, a transaction's index)
# gets the prefix of those keys in KEYS[] and appends the id: ``payment_prefix(b) .. id`` is
# ``payment(b, id)``, ``transaction_prefix(b) .. client .. ':' .. transactionId`` is
# ``transaction(b, client, transactionId)`` (tests/test_store.py holds them to it).
def payment_prefix(bucket: int) -> str:
    return payment(bucket, "")


def delivery_prefix(bucket: int) -> str:
    return delivery(bucket, "")


def transaction_prefix(bucket: int) -> str:
    return f"{tag(bucket)}txn:"


def due(bucket: int) -> str:
    return f"{tag(bucket)}due"


def outbox(bucket: int) -> str:
    return f"{tag(bucket)}outbox"


def delivery(bucket: int, delivery_id: str) -> str:
    return f"{tag(bucket)}delivery:{delivery_id}"


def deliveries(bucket: int, payment_id: str) -> str:
    return f"{tag(bucket)}deliveries:{payment_id}"


def refund(bucket: int, refund_no: str) -> str:
    """A refund: its own hash in its payment's bucket (``service.model.Refund``)."""
    return f"{refund_prefix(bucket)}{refund_no}"


def refund_prefix(bucket: int) -> str:
    return f"{tag(bucket)}refund:"


def refunds(bucket: int, payment_id: str) -> str:
    """A payment's refunds: a hash of the storage app's refundId → refund number."""
    return f"{tag(bucket)}refunds:{payment_id}"


def refund_due(bucket: int) -> str:
    """Refunds whose outcome payrelay still has to learn (zset of refund numbers)."""
    return f"{tag(bucket)}refund-due"


def index(bucket: int, client: str, dimension: str = "all") -> str:
    """A client's payments in the bucket, scored by createdAt: all of them (``all``), or those of
    one status (``status:<status>``) or one flag (``flag:<flag>``)."""
    return f"{index_prefix(bucket)}{dimension}:{client}"


def index_prefix(bucket: int) -> str:
    """Scripts append ``all:`` / ``status:<s>:`` / ``flag:<f>:`` and the client (``index``)."""
    return f"{tag(bucket)}index:"


def reference_prefix(bucket: int) -> str:
    """+ a gateway's reference for a payment (a session, trade or transaction id): the payment's id."""
    return f"{tag(bucket)}ref:"


def events(bucket: int, payment_id: str) -> str:
    """A payment's timeline: a list of JSON entries, oldest first (``service.timeline``)."""
    return f"{tag(bucket)}events:{payment_id}"


def stats(bucket: int, now_ms: int) -> str:
    """The bucket's counts of the hour ``now_ms`` falls in (``service.stats``)."""
    return f"{tag(bucket)}stats:{now_ms // HOUR_MS}"


def dead(bucket: int) -> str:
    return f"{tag(bucket)}dead"


def event(bucket: int, gateway: str, event_id: str) -> str:
    return f"{tag(bucket)}event:{gateway}:{event_id}"


def wake(schedule: str) -> str:
    """The channel on which the scripts announce an entry due within ``WAKE_HORIZON_MS`` in a
    schedule (``due``, ``outbox``, ``refund-due``: the last part of its zset's key), by its score."""
    return f"{PREFIX}wake:{schedule}"


def worker(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def console_session(token_digest: str) -> str:
    """An operator's session, under the digest of its cookie's token (Redis never holds the token)."""
    return f"{PREFIX}console:session:{token_digest}"


def console_signins(by: str, digest: str) -> str:
    """Sign-in attempts by one name (``by`` = "name") or from one address ("address")."""
    return f"{PREFIX}console:signins:{by}:{digest}"
