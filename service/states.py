"""A payment's states and the moves between them, as data: the one state machine.

``creating`` is a state like the others: a create holds the payment while it talks to the gateway
(``creatingUntil`` is its lease); should that create never finish, payrelay asks the gateway what
it made (``Payments.recover``). It reads as ``waiting`` to the storage app, which has no use for it.

Python reads these tables, and so does the Lua: ``lua_tables()`` renders them as the prelude of
every script that moves a payment (``service.store.load_script``), so there is no copy to drift.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping

from adapters.base import RefundStatus, Status


class PaymentState(enum.StrEnum):
    CREATING = "creating"
    WAITING = Status.WAITING.value
    PROCESSING = Status.PROCESSING.value
    SUCCEEDED = Status.SUCCEEDED.value
    FAILED = Status.FAILED.value
    CLOSED = Status.CLOSED.value


S = PaymentState
# Forward only; a final state is final, with one exception: verified evidence that a closed
# payment was paid after all (a late payment, flagged latePayment).
# Gateway evidence moves a payment by MOVES. The create's own completion, creating → waiting, is
# OPENED: only the create (finalize.lua) makes it, storing the order's URL with it.
MOVES: Mapping[PaymentState, frozenset[PaymentState]] = types.MappingProxyType({
    S.CREATING: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CLOSED}),
    S.WAITING: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CLOSED}),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED, S.CLOSED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CLOSED: frozenset({S.SUCCEEDED}),
})
OPENED = (S.CREATING, S.WAITING)
LATE = (S.CLOSED, S.SUCCEEDED)  # the one move out of a final state
FINAL = frozenset(state for state in PaymentState if state not in (S.CREATING, S.WAITING, S.PROCESSING))
OPEN = frozenset({S.WAITING, S.PROCESSING})  # an order a customer can still pay
# The latest payment of a transaction in one of these: the same transactionId gets a new payment.
REISSUE = frozenset({S.FAILED, S.CLOSED})
PUBLIC: Mapping[PaymentState, PaymentState] = types.MappingProxyType({S.CREATING: S.WAITING})

# Which moves tell the storage app, by the kind of its notification: every change for a generic
# notify URL; Cloudreve's protocol has one notification only, the payment's success.
NOTIFY: Mapping[str, frozenset[PaymentState]] = types.MappingProxyType({
    "generic": frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CLOSED}),
    "cloudreve": frozenset({S.SUCCEEDED}),
})
NOTIFY_DEFAULT = "generic"  # the kind of a payment whose record names none (every byte counts there)


# A refund's moves: processing ends succeeded or failed; a succeeded refund can still fail on
# verified evidence (Stripe: the customer's bank returned it), the one move back.
R = RefundStatus
REFUND_MOVES: Mapping[RefundStatus, frozenset[RefundStatus]] = types.MappingProxyType({
    R.PROCESSING: frozenset({R.SUCCEEDED, R.FAILED}),
    R.SUCCEEDED: frozenset({R.FAILED}),
    R.FAILED: frozenset(),
})
REFUND_FINAL = frozenset({R.SUCCEEDED, R.FAILED})  # nothing more to ask the gateway
# Which refund moves tell the storage app, by its notification kind (Cloudreve's protocol has none)
REFUND_NOTIFY: Mapping[str, frozenset[RefundStatus]] = types.MappingProxyType({
    "generic": frozenset({R.SUCCEEDED, R.FAILED}),
    "cloudreve": frozenset(),
})


def public(state: PaymentState) -> PaymentState:
    """The state as the storage app sees it."""
    return PUBLIC.get(state, state)


def _lua_set(states: frozenset[PaymentState] | frozenset[RefundStatus]) -> str:
    return "{" + ", ".join(f"[{state.value!r}] = true" for state in sorted(states)) + "}"


def lua_tables() -> str:
    """The tables above as Lua: the prelude of every script (``service.store.load_script``)."""
    moves = ", ".join(f"[{state.value!r}] = {_lua_set(targets)}" for state, targets in MOVES.items())
    notify = ", ".join(f"[{kind!r}] = {_lua_set(states)}" for kind, states in NOTIFY.items())
    refund_moves = ", ".join(f"[{state.value!r}] = {_lua_set(targets)}" for state, targets in REFUND_MOVES.items())
    refund_notify = ", ".join(f"[{kind!r}] = {_lua_set(states)}" for kind, states in REFUND_NOTIFY.items())
    return (
        "-- generated from service/states.py\n"
        f"local CREATING, WAITING = {OPENED[0].value!r}, {OPENED[1].value!r}\n"
        f"local SUCCEEDED, FAILED = {S.SUCCEEDED.value!r}, {S.FAILED.value!r}\n"
        f"local MOVES = {{{moves}}}\n"
        f"local FINAL = {_lua_set(FINAL)}\n"
        f"local REISSUE = {_lua_set(REISSUE)}\n"
        f"local NOTIFY, NOTIFY_DEFAULT = {{{notify}}}, {NOTIFY_DEFAULT!r}\n"
        f"local REFUND_PROCESSING, REFUND_SUCCEEDED = {R.PROCESSING.value!r}, {R.SUCCEEDED.value!r}\n"
        f"local REFUND_MOVES = {{{refund_moves}}}\n"
        f"local REFUND_NOTIFY = {{{refund_notify}}}\n"
    )
