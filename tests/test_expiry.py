"""service/expiry.py: when the sweeper looks at a payment again (the sweep itself runs end to end
in tests/test_contract.py and tests/test_expiry_scale.py)."""

from __future__ import annotations

from service import expiry, states
from service.model import Payment
from tests.helpers import NOW, record


def test_processing_is_synced_every_5_minutes_for_an_hour_then_hourly() -> None:
    def changed(ago_ms: int, created_ago_ms: int | None = None) -> Payment:
        created = NOW - (ago_ms if created_ago_ms is None else created_ago_ms)
        return record("pr_00x", status="processing", createdAt=str(created), updatedAt=str(NOW - ago_ms))

    assert expiry.next_sync_ms(changed(60_000), NOW) == NOW + 5 * 60_000
    assert expiry.next_sync_ms(changed(2 * 3_600_000), NOW) == NOW + 3_600_000
    moved = changed(60_000, created_ago_ms=2 * 3_600_000)
    assert expiry.next_sync_ms(moved, NOW) == NOW + 5 * 60_000  # counted from its last change
    assert expiry.next_sync_ms(changed(3_600_000), NOW) == NOW + 3_600_000


def test_the_sweeper_drops_exactly_the_final_states() -> None:
    assert set(expiry.FINAL) == {state.value for state in states.FINAL}
    assert list(expiry.FINAL) == sorted(expiry.FINAL)
