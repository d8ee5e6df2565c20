"""The dashboard's charts: what they draw from the hourly counts (service/console/charts.py)."""

from __future__ import annotations

import pytest

from service.console import charts
from service.stats import Hour

HOUR = 3_600_000
START = 1_900_000_800_000 // HOUR * HOUR  # 2030-03-17 18:00 UTC


def hours(*counts: dict[str, int]) -> list[Hour]:
    return [Hour(START + index * HOUR, found) for index, found in enumerate(counts)]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (10, 10), (11, 20),
                                            (99, 100), (101, 200), (4999, 5000), (12_345, 20_000)])
def test_an_axis_ends_at_1_2_or_5_times_a_power_of_ten(value: float, top: float) -> None:
    assert charts.nice_ceiling(value) == top


def test_columns_stack_each_hours_series_to_scale() -> None:
    chart = charts.by_status(hours(
        {"status:succeeded:stripe-connect": 3, "status:succeeded:alipay-page": 1, "status:closed:alipay-page": 1,
         "opened:stripe-connect": 4, "opened:alipay-page": 3},
        {},
        {"status:failed:wechat-pay-native": 10},
    ))
    assert chart.summary.startswith("7 payments opened")
    plot = charts.HEIGHT - charts.TOP - charts.BOTTOM
    first = [bar for bar in chart.bars if bar.x < charts.LEFT + (charts.WIDTH - charts.LEFT - charts.RIGHT) / 3]
    assert [(bar.series, round(bar.height, 3)) for bar in first] == [("succeeded", 0.4 * plot), ("closed", 0.1 * plot)]
    assert first[0].y + first[0].height == charts.HEIGHT - charts.BOTTOM  # on the baseline
    assert first[1].y + first[1].height == first[0].y  # on top of the one below
    (tallest,) = [bar for bar in chart.bars if bar.series == "failed"]
    assert tallest.height == plot and tallest.y == charts.TOP
    assert [tick.text for tick in chart.y_ticks] == ["0", "5", "10"]
    assert chart.rows[0] == ("18:00", ["4", "0", "0", "1"]) and chart.rows[1][1] == ["0", "0", "0", "0"]
    assert [tick.text for tick in chart.x_ticks] == ["18:00"]


def test_conversion_per_gateway() -> None:
    shares = charts.conversion(hours({"opened:stripe-connect": 3, "status:succeeded:stripe-connect": 1},
                                     {"opened:stripe-connect": 1, "status:succeeded:stripe-connect": 1}),
                               [("stripe-connect", "Stripe"), ("alipay-page", "Alipay")])
    assert [(s.label, s.part, s.whole, round(s.percent), s.detail) for s in shares] == [
        ("Stripe", 2, 4, 50, "2 of 4 opened"), ("Alipay", 0, 0, 0, "none opened")]


def test_latency_mean_per_hour_and_the_buckets_between_their_bounds() -> None:
    chart, buckets = charts.latency(hours(
        {"applied:n": 4, "applied:ms": 1300, "applied:le:10": 1, "applied:le:50": 2, "applied:le:250": 3,
         "applied:le:1000": 3},
        {"applied:n": 1, "applied:ms": 5, "applied:le:10": 1, "applied:le:50": 1, "applied:le:250": 1,
         "applied:le:1000": 1},
    ))
    assert [values for _, values in chart.rows] == [["325"], ["5"]]
    assert chart.summary == "5 webhooks applied"
    assert [(b.label, b.part) for b in buckets] == [("≤ 10 ms", 2), ("10–50 ms", 1), ("50–250 ms", 1),
                                                    ("250–1000 ms", 0), ("> 1000 ms", 1)]
    assert all(b.whole == 5 for b in buckets)


def test_deliveries_by_outcome() -> None:
    chart, delivered = charts.deliveries(hours({"delivery:delivered": 6, "delivery:failed": 3, "delivery:dead": 1}))
    assert chart.columns == ["delivered", "failed, retried", "failed, given up"]
    assert (delivered.part, delivered.whole, delivered.percent) == (6, 10, 60.0)
    assert delivered.detail == "6 of 10 attempts"
