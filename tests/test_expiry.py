"""service/expiry.py: when the sweeper looks at a payment again (the sweep itself runs end to end
in tests/test_contract.py and tests/test_expiry_scale.py)."""

from __future__ import annotations

from service import expiry, states

NOW = 1_900_000_000_000


def test_processing_is_synced_every_5_minutes_for_an_hour_then_hourly() -> None:
    young = {"createdAt": str(NOW - 60_000)}
    assert expiry.next_sync_ms(young, NOW) == NOW + 5 * 60_000
    old = {"createdAt": str(NOW - 2 * 3_600_000)}
    assert expiry.next_sync_ms(old, NOW) == NOW + 3_600_000
    moved = {"createdAt": str(NOW - 2 * 3_600_000), "updatedAt": str(NOW - 60_000)}
    assert expiry.next_sync_ms(moved, NOW) == NOW + 5 * 60_000  # counted from its last change
    assert expiry.next_sync_ms({"createdAt": str(NOW - 3_600_000)}, NOW) == NOW + 3_600_000


def test_the_sweeper_drops_exactly_the_final_states() -> None:
    assert set(expiry.FINAL) == {state.value for state in states.FINAL}
    assert list(expiry.FINAL) == sorted(expiry.FINAL)
