"""The dashboard's charts, drawn from the hourly counters of ``service.stats``: geometry here, the
SVG in ``templates/dashboard.html`` (inline, server-side: no script, no external library).

Each chart comes with the table of the numbers it draws, which the page shows beside it (a screen
reader reads the table; the picture is ``aria-hidden``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from service.stats import LATENCY_BOUNDS_MS, Hour

WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 24  # room for the axes' labels
STATUSES = ("succeeded", "processing", "failed", "closed")
DELIVERY_OUTCOMES = (("delivered", "delivered"), ("failed", "failed, retried"), ("dead", "failed, given up"))


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str  # a CSS class: the series' colour


@dataclass(frozen=True)
class Tick:
    at: float  # x (hour labels) or y (value labels) in the SVG's coordinates
    text: str


@dataclass(frozen=True)
class Chart:
    """Columns per hour, stacked by series; the table holds each hour's numbers."""

    title: str
    legend: Sequence[tuple[str, str]]  # (series class, label)
    bars: Sequence[Bar]
    x_ticks: Sequence[Tick]
    y_ticks: Sequence[Tick]
    columns: Sequence[str]  # the table's headings after "hour (UTC)"
    rows: Sequence[tuple[str, Sequence[str]]]  # (hour, numbers)
    summary: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    baseline: float = HEIGHT - BOTTOM
    left: float = LEFT
    right: float = WIDTH - RIGHT


@dataclass(frozen=True)
class Share:
    """One horizontal bar of a whole: ``part`` of ``whole`` (conversion, latency buckets)."""

    label: str
    part: int
    whole: int
    detail: str = ""
    percent: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", 100.0 * self.part / self.whole if self.whole else 0.0)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at or above ``value`` (at least 1): the top of an axis."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    raise AssertionError("unreachable")


def _hour_label(start_ms: int) -> str:
    return dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC).strftime("%H:%M")


def _number(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def columns(title: str, hours: Sequence[Hour], series: Sequence[tuple[str, str, Sequence[float]]],
            *, summary: str = "") -> Chart:
    """A stacked column per hour; ``series``: (CSS class, label, one value per hour). The value
    axis is marked at 0, the middle (when it is a whole number) and the top."""
    count = max(len(hours), 1)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / count
    totals = [sum(values[index] for _, _, values in series) for index in range(len(hours))]
    top = nice_ceiling(max(totals, default=0))
    bars: list[Bar] = []
    for index in range(len(hours)):
        y = float(HEIGHT - BOTTOM)
        for css, _, values in series:
            height = plot_height * values[index] / top
            if height > 0:
                y -= height
                bars.append(Bar(LEFT + index * slot + slot * 0.15, y, slot * 0.7, height, css))
    x_ticks = [Tick(LEFT + index * slot + slot / 2, _hour_label(hour.start))
               for index, hour in enumerate(hours) if index % 4 == 0]
    marks = (0, 0.5, 1) if top % 2 == 0 else (0, 1)
    y_ticks = [Tick(TOP + plot_height * (1 - fraction), _number(top * fraction)) for fraction in marks]
    rows = [(_hour_label(hour.start), [_number(values[index]) for _, _, values in series])
            for index, hour in enumerate(hours)]
    return Chart(title, [(css, label) for css, label, _ in series], bars, x_ticks, y_ticks,
                 [label for _, label, _ in series], rows, summary)


def _sum(counts: Mapping[str, int], prefix: str) -> int:
    return sum(value for name, value in counts.items() if name.startswith(prefix))


def by_status(hours: Sequence[Hour]) -> Chart:
    series = [(status, status, [float(_sum(hour.counts, f"status:{status}:")) for hour in hours])
              for status in STATUSES]
    opened = sum(_sum(hour.counts, "opened:") for hour in hours)
    return columns("Payments by status", hours, series,
                   summary=f"{opened} payments opened; the columns count the moves into each status")


def conversion(hours: Sequence[Hour], gateways: Sequence[tuple[str, str]]) -> list[Share]:
    """Per gateway ((paymentGatewayType, label)): payments opened in the period that succeeded."""
    shares = []
    for gateway, label in gateways:
        opened = sum(hour.counts.get(f"opened:{gateway}", 0) for hour in hours)
        succeeded = sum(hour.counts.get(f"status:succeeded:{gateway}", 0) for hour in hours)
        shares.append(Share(label, min(succeeded, opened), opened,
                            f"{succeeded} of {opened} opened" if opened else "none opened"))
    return shares


def latency(hours: Sequence[Hour]) -> tuple[Chart, list[Share]]:
    """The mean webhook-to-applied time per hour, and how the period's webhooks fall in the buckets."""
    means = [hour.counts.get("applied:ms", 0) / n if (n := hour.counts.get("applied:n", 0)) else 0.0
             for hour in hours]
    applied = sum(hour.counts.get("applied:n", 0) for hour in hours)
    chart = columns("Webhook to applied, mean ms per hour", hours,
                    [("latency", "mean ms", [round(m, 1) for m in means])], summary=f"{applied} webhooks applied")
    cumulative = [sum(hour.counts.get(f"applied:le:{bound}", 0) for hour in hours) for bound in LATENCY_BOUNDS_MS]
    shares, below, lower = [], 0, 0
    for bound, within in zip(LATENCY_BOUNDS_MS, cumulative, strict=True):
        shares.append(Share(f"{lower}–{bound} ms" if lower else f"≤ {bound} ms", within - below, applied))
        below, lower = within, bound
    shares.append(Share(f"> {lower} ms", applied - below, applied))
    return chart, shares


def deliveries(hours: Sequence[Hour]) -> tuple[Chart, Share]:
    """Notification attempts per hour by outcome, and the share of attempts delivered."""
    series = [(f"delivery-{outcome}", label, [float(hour.counts.get(f"delivery:{outcome}", 0)) for hour in hours])
              for outcome, label in DELIVERY_OUTCOMES]
    attempts = int(sum(sum(values) for _, _, values in series))
    delivered = int(sum(series[0][2]))
    share = Share("delivered", delivered, attempts, f"{delivered} of {attempts} attempts")
    return columns("Notification attempts", hours, series, summary=share.detail), share
