"""service/schedule.py: leased claims on a real Redis."""

from __future__ import annotations

from typing import Any

from service import keys
from service.schedule import Claim, Look, Schedule, backoff_ms
from tests.helpers import due

NOW = 1_900_000_000_000


def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    for attempt, full in [(0, 100), (1, 200), (3, 800), (10, 5_000), (40, 5_000)]:
        delays = {backoff_ms(attempt, 100, 5_000) for _ in range(200)}
        assert full // 2 <= min(delays) and max(delays) <= full
        assert len(delays) > 1


def schedule(redis: Any, lease_ms: int = 60_000) -> Schedule:
    return Schedule(redis, keys.due, keys.payment_prefix, "status", ("closed", "succeeded"), lease_ms)


async def test_a_claim_is_leased_to_one_process_and_finish_reschedules_or_drops(redis_client: Any) -> None:
    bucket = 3
    await due(redis_client, bucket, {"pr_a": NOW - 1, "pr_b": NOW + 120_000})
    ours, theirs = schedule(redis_client), schedule(redis_client)
    assert (await ours.look(NOW)) == Look({bucket: 1}, NOW - 1, NOW - 1)
    assert (await ours.look(NOW - 2)) == Look({}, None, NOW - 1)  # nothing due yet: when it will be
    (claimed,) = await ours.claim(bucket, NOW, 10)
    assert claimed == Claim(bucket, "pr_a")
    assert claimed.record == {"status": "waiting", "claim": ours.token}  # its hash, for the handler
    assert await theirs.claim(bucket, NOW, 10) == []  # leased: not due for anyone else
    assert await theirs.claim(bucket, NOW + 60_001, 10) == [Claim(bucket, "pr_a")]  # the lease ran out
    assert await ours.finish(Claim(bucket, "pr_a"), NOW + 5) is False  # no longer ours
    assert await theirs.finish(Claim(bucket, "pr_a"), NOW + 5) is True
    assert await redis_client.zscore(keys.due(bucket), "pr_a") == NOW + 5
    [claim] = await ours.claim(bucket, NOW + 5, 10)
    assert await ours.finish(claim, None) is True
    assert await redis_client.zscore(keys.due(bucket), "pr_a") is None


async def test_release_all_hands_back_what_is_held(redis_client: Any) -> None:
    await due(redis_client, 0, {"pr_a": NOW})
    ours = schedule(redis_client)
    assert len(await ours.claim(0, NOW, 10)) == 1 and ours.held
    await ours.release_all(NOW)
    assert not ours.held and await redis_client.zscore(keys.due(0), "pr_a") == NOW


async def test_an_entry_whose_payment_is_gone_is_dropped_not_claimed(redis_client: Any) -> None:
    await redis_client.zadd(keys.due(0), {"pr_gone": NOW})
    assert await schedule(redis_client).claim(0, NOW, 10) == []
    assert await redis_client.zscore(keys.due(0), "pr_gone") is None
