"""Bar charts drawn as inline SVG by the templates: this module only lays the bars out.

No chart library, no script: the page works offline, without JavaScript and under a strict
Content-Security-Policy; every bar has a ``<title>`` so its value shows on hover and is read
out by screen readers, and a table beside each chart holds the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from claudestore.accounts.usage import UsageRow

WIDTH = 640
HEIGHT = 180
GAP = 2


@dataclass(frozen=True, slots=True)
class Segment:
    y: float
    height: float
    css: str  # the class that colours it


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    title: str
    x: float
    width: float
    segments: list[Segment]


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    maximum: str  # the tallest bar's value, formatted
    width: int = WIDTH
    height: int = HEIGHT


def days(end: date, count: int) -> list[str]:
    return [(end - timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def stacked(
    labels: list[str],
    series: list[tuple[str, str, dict[str, int]]],
    fmt: Callable[[int], str] = "{:,}".format,
) -> Chart:
    """One bar per label; ``series`` is ``(name, css class, {label: value})``, stacked bottom-up."""
    totals = [sum(values.get(label, 0) for _, _, values in series) for label in labels]
    top = max(totals, default=0) or 1
    step = WIDTH / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        y = float(HEIGHT)
        segments = []
        parts = []
        for name, css, values in series:
            value = values.get(label, 0)
            parts.append(f"{name} {fmt(value)}")
            h = HEIGHT * value / top
            if h > 0:
                y -= h
                segments.append(Segment(round(y, 2), round(h, 2), css))
        bars.append(
            Bar(
                label,
                f"{label}: " + ", ".join(parts),
                round(i * step + GAP / 2, 2),
                max(step - GAP, 1),
                segments,
            )
        )
    return Chart(bars, fmt(max(totals, default=0)))


def daily_usage(
    per_day: Iterable[UsageRow], end: date, span: int, money: Callable[[int], str]
) -> tuple[Chart, Chart]:
    """The two usage charts (tokens in / out, and cost) over ``span`` days ending ``end``,
    from ``usage.summarize(..., group_by="day")`` rows."""
    tokens_in: dict[str, int] = {}
    tokens_out: dict[str, int] = {}
    cost: dict[str, int] = {}
    for row in per_day:
        day = str(row.group)
        tokens_in[day] = row.input_tokens + row.cache_read_tokens + row.cache_write_tokens
        tokens_out[day] = row.output_tokens
        cost[day] = row.cost_nanos
    labels = days(end, span)
    tokens = stacked(labels, [("input", "bar-in", tokens_in), ("output", "bar-out", tokens_out)])
    return tokens, stacked(labels, [("cost", "bar-cost", cost)], money)
