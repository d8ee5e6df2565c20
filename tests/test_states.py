"""The payment state machine: every state named, its moves as data, the Lua reading the same
tables (generated, not copied), and no script spelling a state of its own."""

from __future__ import annotations

import json
import re
from importlib import resources

import redis

from adapters.base import Status
from service import states
from service.states import FINAL, MOVES, NOTIFY, OPEN, PaymentState


def test_every_state_has_its_moves_and_gateway_statuses_are_states() -> None:
    assert set(MOVES) == set(PaymentState)
    assert {status.value for status in Status} == {s.value for s in PaymentState} - {"creating"}
    assert FINAL | OPEN | {PaymentState.CREATING} == set(PaymentState)


def test_forward_only_and_final_is_final_but_for_a_late_payment() -> None:
    order = [PaymentState.CREATING, PaymentState.WAITING, PaymentState.PROCESSING]
    for state, targets in MOVES.items():
        for target in targets:
            assert (state, target) == states.LATE or target in FINAL or order.index(target) > order.index(state)
    assert {(s, t) for s in FINAL for t in MOVES[s]} == {states.LATE}
    assert PaymentState.WAITING not in MOVES[PaymentState.CREATING]  # only the create opens it (OPENED)
    assert states.public(PaymentState.CREATING) is PaymentState.WAITING
    assert NOTIFY["cloudreve"] == {PaymentState.SUCCEEDED}
    assert NOTIFY["generic"] == FINAL | {PaymentState.PROCESSING}


def test_the_lua_reads_the_same_tables(redis_url: str) -> None:
    script = states.lua_tables() + """
local function names(set)
  local list = {}
  for name in pairs(set) do list[#list + 1] = name end
  table.sort(list)
  return list
end
local out = {moves = {}, final = names(FINAL), notify = {}}
for state, targets in pairs(MOVES) do out.moves[state] = names(targets) end
for kind, set in pairs(NOTIFY) do out.notify[kind] = names(set) end
return cjson.encode(out)
"""
    with redis.Redis.from_url(redis_url) as client:
        seen = json.loads(client.eval(script, 0))
    # cjson writes an empty table as {}
    assert {k: (v or []) for k, v in seen["moves"].items()} == {
        s.value: sorted(t.value for t in targets) for s, targets in MOVES.items()}
    assert seen["final"] == sorted(s.value for s in FINAL)
    assert seen["notify"] == {kind: sorted(s.value for s in set_) for kind, set_ in NOTIFY.items()}


def test_no_script_spells_a_state_or_a_notify_kind() -> None:
    spelled = re.compile(r"'(" + "|".join([*(s.value for s in PaymentState), *NOTIFY]) + r")'")
    for path in resources.files("service").joinpath("lua").iterdir():
        if path.name.endswith(".lua"):
            assert not spelled.findall(path.read_text(encoding="utf-8")), path.name
