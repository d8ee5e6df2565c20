"""The stored records, typed: a payment (``Payment``) and a notification's delivery (``Delivery``).

Each record kind is a frozen dataclass whose fields carry their Redis hash name and how the
value is spelled there; that is the one table of field names (``names``, ``name_of``). The Lua
scripts write the same names (tests/test_model.py holds every name they use to a field here).

``from_hash`` reads a hash as Redis answers it and raises ``CorruptHash`` naming the field
when a required one is missing or a value is not what it should be; fields it does not know are
ignored (a record written by a newer payrelay stays readable during a rolling deploy).
``to_hash`` spells a record back: for a new payment, exactly what ``service/lua/create.lua``
stores (the script sets ``previous`` from the transaction index).

How absent values read: an optional field that is absent (or empty) is ``None``; a flag set
only when true (``latePayment``, ``integrityError``) is absent when false; a delivery's
``nextAt`` is always present and empty once it is done: ``None`` too. A payment leaves out
what it does not have (every byte of a waiting payment counts: tests/test_memory.py); records of
before that wrote ``customerIdentifier``, ``notifyUrl`` and ``previous`` empty read the same.
Nor does it keep a value everyone has: ``notifyKind`` is there only when it is not
``states.NOTIFY_DEFAULT``, ``saveMethod`` only when true, ``version`` only once it moved (records
of before that wrote them read the same).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from adapters.base import Money, PaymentRef, RefundStatus
from service.states import NOTIFY_DEFAULT, PaymentState


class CorruptHash(ValueError):
    """A stored hash that does not read as its record kind (a bug, or a hand-edited key)."""


@dataclass(frozen=True)
class _Spelling:
    """How one field's value is written in the hash. ``read`` gets None for an absent field (and
    raises ValueError saying what is wrong); ``write`` answers None to leave the field out."""

    read: Callable[[str | None], Any]
    write: Callable[[Any], str | None]


def _required(raw: str | None) -> str:
    if raw is None:
        raise ValueError("is missing")
    return raw


def _int(raw: str) -> int:
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit()):  # int() would also take " 1", "+1", "1_0"
        raise ValueError(f"is not an integer: {raw[:40]!r}")
    return int(raw)


def _flag(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError(f"is not 0 or 1: {raw[:40]!r}")
    return raw == "1"


def _mark(raw: str | None) -> bool:
    if raw not in (None, "1"):
        raise ValueError(f"is neither absent nor 1: {raw[:40]!r}")
    return raw == "1"


TEXT = _Spelling(_required, str)
OPTIONAL = _Spelling(lambda raw: raw or None, lambda value: value or None)
INT = _Spelling(lambda raw: _int(_required(raw)), str)
OPTIONAL_INT = _Spelling(lambda raw: None if raw is None else _int(raw),
                         lambda value: None if value is None else str(value))
BLANK_INT = _Spelling(lambda raw: _int(value) if (value := _required(raw)) else None,
                      lambda value: "" if value is None else str(value))
FLAG = _Spelling(lambda raw: _flag(_required(raw)), lambda value: "1" if value else "0")  # always there
MARK = _Spelling(_mark, lambda value: "1" if value else None)  # there only when true
# there only when true, and records of before wrote 0 for false
LEFT_OUT_FLAG = _Spelling(lambda raw: raw is not None and _flag(raw), MARK.write)
COUNT = _Spelling(lambda raw: 0 if raw is None else _int(raw), lambda value: str(value) if value else None)


def _default(value: str) -> _Spelling:
    """A text there only when it is not ``value`` (records of before wrote it: they read the same)."""
    return _Spelling(lambda raw: value if raw is None else raw, lambda given: None if given == value else given)


def _enum(kind: type[enum.StrEnum]) -> _Spelling:
    def read(raw: str | None) -> Any:
        value = _required(raw)
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"is not a {kind.__name__}: {value[:40]!r}") from None
    return _Spelling(read, str)


PAYMENT_STATE = _enum(PaymentState)


def _field(name: str, spelling: _Spelling, **default: Any) -> Any:
    return dataclasses.field(metadata={"name": name, "spelling": spelling}, **default)


class _HashModel:
    """``from_hash``/``to_hash`` for a dataclass whose fields are declared with ``_field``."""

    KIND: ClassVar[str]
    ID: ClassVar[str]  # the attribute that names a record in errors

    @classmethod
    def from_hash(cls, found: Mapping[str, str]) -> Self:
        if not isinstance(found, Mapping):
            raise CorruptHash(f"a {cls.KIND} is a hash of strings, not {type(found).__name__}")
        values: dict[str, Any] = {}
        for attr, name, read in _readers(cls):
            raw = found.get(name)
            try:
                if raw is not None and not isinstance(raw, str):
                    raise ValueError(f"is not a string: {type(raw).__name__}")
                values[attr] = read(raw)
            except ValueError as exc:
                ident = found.get(name_of(cls, cls.ID)) or "?"
                raise CorruptHash(f"{cls.KIND} {ident[:64]}: field {name!r} {exc}") from None
        return cls(**values)

    def to_hash(self) -> dict[str, str]:
        spelled = {name: self._spell(attr) for attr, name in _names(type(self)).items()}
        return {name: value for name, value in spelled.items() if value is not None}

    def spelled(self, *attrs: str) -> tuple[dict[str, str], list[str]]:
        """These fields as a partial write: the names to set, and those to delete (absent)."""
        names = _names(type(self))
        written = {names[attr]: self._spell(attr) for attr in attrs}
        return ({n: v for n, v in written.items() if v is not None},
                [n for n, v in written.items() if v is None])

    def _spell(self, attr: str) -> str | None:
        field = _fields(type(self))[attr]
        spelling: _Spelling = field.metadata["spelling"]
        return spelling.write(getattr(self, attr))


_FIELDS: dict[type, dict[str, dataclasses.Field[Any]]] = {}
_NAMES: dict[type, dict[str, str]] = {}


def _fields(kind: type) -> dict[str, dataclasses.Field[Any]]:
    if kind not in _FIELDS:
        _FIELDS[kind] = {field.name: field for field in dataclasses.fields(kind)}
    return _FIELDS[kind]


_READERS: dict[type, list[tuple[str, str, Callable[[str | None], Any]]]] = {}


def _readers(kind: type) -> list[tuple[str, str, Callable[[str | None], Any]]]:
    """(attribute, hash field name, how its value reads) of every field: what ``from_hash`` walks."""
    if kind not in _READERS:
        _READERS[kind] = [(attr, field.metadata["name"], field.metadata["spelling"].read)
                          for attr, field in _fields(kind).items()]
    return _READERS[kind]


def _names(kind: type) -> dict[str, str]:
    if kind not in _NAMES:
        _NAMES[kind] = {attr: field.metadata["name"] for attr, field in _fields(kind).items()}
    return _NAMES[kind]


def names(kind: type) -> frozenset[str]:
    """Every hash field name of a record kind."""
    return frozenset(_names(kind).values())


def name_of(kind: type, attr: str) -> str:
    """The hash field name of one attribute (for the few writes that are not a whole record)."""
    return _names(kind)[attr]


@dataclass(frozen=True, kw_only=True)
class Payment(_HashModel):
    """A payment: ``payrelay:{bNN}:payment:<paymentId>`` (``service.keys.payment``).

    Its fields are what the storage app asked for (set at create and never changed), what the
    gateway said (``status`` through ``failureReason``), and payrelay's own bookkeeping (the
    create's lease, the sweeper's claim and failed looks), so nothing in the hash is unknown.
    ``status`` moves only by ``service.states``' tables, in the Lua scripts.

    Its refunds are records of their own (``Refund``), each its own hash in the payment's bucket
    (one hash slot, so a script changes a payment and its refund atomically); what the payment
    shows of them, the sums ``refunded`` and ``refunding``, is kept here by the same scripts.
    """

    KIND: ClassVar[str] = "payment"
    ID: ClassVar[str] = "payment_id"

    payment_id: str = _field("paymentId", TEXT)
    client: str = _field("client", TEXT)  # the API client that owns it
    transaction_id: str = _field("transactionId", TEXT)
    gateway: str = _field("gateway", TEXT)  # paymentGatewayType
    amount: int = _field("amount", INT)  # minor units of currency
    currency: str = _field("currency", TEXT)
    date: str = _field("date", TEXT)  # the business transaction's, as sent
    description: str = _field("description", TEXT)
    customer_identifier: str | None = _field("customerIdentifier", OPTIONAL, default=None)
    complete_url: str = _field("completeUrl", TEXT)
    cancel_url: str = _field("cancelUrl", TEXT)
    online: bool = _field("online", FLAG)
    save_method: bool = _field("saveMethod", LEFT_OUT_FLAG)  # supportOfflineScenario
    notify_url: str | None = _field("notifyUrl", OPTIONAL, default=None)
    notify_kind: str = _field("notifyKind", _default(NOTIFY_DEFAULT))  # a key of states.NOTIFY
    created_at: int = _field("createdAt", INT)  # epoch ms, like every time here
    updated_at: int = _field("updatedAt", INT)
    expires_at: int = _field("expiresAt", INT)
    # the state machine's, and the create's
    status: PaymentState = _field("status", PAYMENT_STATE)  # noqa: RUF009 (a dataclasses.field)
    version: int = _field("version", COUNT)  # transitions so far
    previous: str | None = _field("previous", OPTIONAL, default=None)  # the transaction's payment before
    fingerprint: str = _field("fingerprint", TEXT)  # of the create request (same request or 409)
    creating_until: int | None = _field("creatingUntil", OPTIONAL_INT, default=None)  # the create's lease
    # what the gateway said
    payment_url: str | None = _field("paymentUrl", OPTIONAL, default=None)
    gateway_reference: str | None = _field("gatewayReference", OPTIONAL, default=None)
    gateway_state: str | None = _field("gatewayState", OPTIONAL, default=None)  # its raw state, last move
    opened_at: int | None = _field("openedAt", OPTIONAL_INT, default=None)  # the gateway took the order
    paid_at: int | None = _field("paidAt", OPTIONAL_INT, default=None)
    failure_reason: str | None = _field("failureReason", OPTIONAL, default=None)
    late_payment: bool = _field("latePayment", MARK, default=False)
    integrity_error: bool = _field("integrityError", MARK, default=False)
    # the sweeper's
    sweep_attempts: int = _field("sweepAttempts", COUNT, default=0)  # failed looks in a row
    claim: str | None = _field("claim", OPTIONAL, default=None)  # the token of the sweeper holding it
    # its refunds' sums, kept by the refund scripts in the same writes as the refunds
    refunded: int = _field("refundedAmount", COUNT, default=0)  # succeeded, minor units
    refunding: int = _field("refundingAmount", COUNT, default=0)  # in flight, minor units


def ref_of(payment: Payment) -> PaymentRef:
    """What its adapter needs to find the payment at its gateway again."""
    return PaymentRef(payment_id=payment.payment_id, gateway_reference=payment.gateway_reference,
                      amount=Money(payment.amount, payment.currency))


REFUND_STATUS = _enum(RefundStatus)


@dataclass(frozen=True, kw_only=True)
class Refund(_HashModel):
    """A refund of a payment: ``payrelay:{bNN}:refund:<refundNo>`` in its payment's bucket, found
    from the payment by ``keys.refunds`` (refundId → refundNo). ``refund_no`` is payrelay's id
    for it at the gateway; ``refund_id`` the storage app's. Written by ``refund.lua`` (reserved,
    processing) and ``refund_apply.lua`` (the gateway's word), by ``states.REFUND_MOVES``."""

    KIND: ClassVar[str] = "refund"
    ID: ClassVar[str] = "refund_no"

    refund_no: str = _field("refundNo", TEXT)
    refund_id: str = _field("refundId", TEXT)
    payment_id: str = _field("paymentId", TEXT)
    sequence: int = _field("sequence", INT)  # the payment's first refund is 1, its next 2…
    client: str = _field("client", TEXT)
    gateway: str = _field("gateway", TEXT)
    amount: int = _field("amount", INT)  # minor units of currency
    currency: str = _field("currency", TEXT)
    reason: str | None = _field("reason", OPTIONAL, default=None)
    fingerprint: str = _field("fingerprint", TEXT)  # of the request (same refundId, same request or 409)
    status: RefundStatus = _field("status", REFUND_STATUS)  # noqa: RUF009 (a dataclasses.field)
    version: int = _field("version", INT)
    created_at: int = _field("createdAt", INT)
    updated_at: int = _field("updatedAt", INT)
    calling_until: int | None = _field("callingUntil", OPTIONAL_INT, default=None)  # the first call's lease
    gateway_state: str | None = _field("gatewayState", OPTIONAL, default=None)
    gateway_reference: str | None = _field("gatewayReference", OPTIONAL, default=None)
    failure_reason: str | None = _field("failureReason", OPTIONAL, default=None)
    integrity_error: bool = _field("integrityError", MARK, default=False)  # the gateway said another amount
    sweep_attempts: int = _field("sweepAttempts", COUNT, default=0)  # failed looks in a row
    claim: str | None = _field("claim", OPTIONAL, default=None)  # the token of the sweep holding it


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


DELIVERY_STATE = _enum(DeliveryState)


@dataclass(frozen=True, kw_only=True)
class Delivery(_HashModel):
    """One notification of a payment's change: ``payrelay:{bNN}:delivery:<deliveryId>``, written
    by ``service/lua/transition.lua`` with the change it tells of, then by each attempt."""

    KIND: ClassVar[str] = "delivery"
    ID: ClassVar[str] = "delivery_id"

    delivery_id: str = _field("id", TEXT)
    payment_id: str = _field("paymentId", TEXT)
    kind: str = _field("kind", TEXT)  # generic | cloudreve (a key of states.NOTIFY)
    url: str = _field("url", TEXT)
    type: str = _field("type", TEXT)  # transaction.<status> | refund.<status>
    version: int = _field("version", INT)  # the payment's, as of the change
    created_at: int = _field("createdAt", INT)
    snapshot: str = _field("snapshot", TEXT)  # the payment's (refund's) hash as of the change, as JSON
    state: DeliveryState = _field("state", DELIVERY_STATE)  # noqa: RUF009 (a dataclasses.field)
    next_at: int | None = _field("nextAt", BLANK_INT, default=None)  # none once delivered or dead
    attempts: int = _field("attempts", INT)
    # a re-send opens a new retry window (``DeliveryStore.resend``)
    window_start: int | None = _field("windowStart", OPTIONAL_INT, default=None)
    window_attempts: int | None = _field("windowAttempts", OPTIONAL_INT, default=None)
    last_attempt_at: int | None = _field("lastAttemptAt", OPTIONAL_INT, default=None)
    last_status_code: int | None = _field("lastStatusCode", OPTIONAL_INT, default=None)
    last_error: str | None = _field("lastError", OPTIONAL, default=None)
    claim: str | None = _field("claim", OPTIONAL, default=None)  # the token of the sender holding it
