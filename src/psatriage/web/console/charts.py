"""Server-rendered charts: the geometry is computed here, ``templates/_chart.html`` draws it as
inline SVG (no JavaScript, no inline styles, so the console's strict CSP holds)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 10, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the day, say
    value: float
    shown: str  # the value as a person reads it


@dataclass(frozen=True)
class Tick:
    position: float
    text: str


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM

    @property
    def has_data(self) -> bool:
        return any(bar.value > 0 for bar in self.bars)


def bar_chart(
    title: str,
    points: Sequence[tuple[str, float]],
    *,
    shown: Callable[[float], str] = lambda v: f"{v:,.0f}",
    label_every: int = 7,
) -> BarChart:
    """Bars for ``points`` (label, value) on a scale that starts at zero."""
    top = _nice_ceiling(max((value for _, value in points), default=0.0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    step = plot_width / max(len(points), 1)
    bars, x_ticks = [], []
    for index, (label, value) in enumerate(points):
        height = plot_height * value / top if top else 0.0
        x = LEFT + index * step
        bars.append(
            Bar(
                round(x + step * 0.15, 2),
                round(TOP + plot_height - height, 2),
                round(step * 0.7, 2),
                round(height, 2),
                label,
                value,
                shown(value),
            )
        )
        if index % label_every == 0:
            x_ticks.append(Tick(round(x + step / 2, 2), label))
    y_ticks = [
        Tick(round(TOP + plot_height * (1 - fraction), 2), shown(top * fraction))
        for fraction in (0.0, 0.5, 1.0)
    ]
    return BarChart(title, bars, y_ticks, x_ticks)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (0 stays 0)."""
    if value <= 0:
        return 0.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * power:
            return float(factor * power)
    return float(10 * power)


@dataclass(frozen=True)
class Segment:
    name: str
    x: float
    width: float
    share: float


def share_bar(shares: Sequence[tuple[str, float]], width: float = 100.0) -> list[Segment]:
    """A stacked bar: one segment per (name, share), shares summing to 1 (or all 0)."""
    segments, x = [], 0.0
    for name, share in shares:
        segments.append(Segment(name, round(x, 3), round(width * share, 3), share))
        x += width * share
    return segments
