"""Chart geometry and the templates' number formats."""

from __future__ import annotations

from datetime import timedelta

import pytest

from psatriage.store.tables import utcnow
from psatriage.web.console.charts import bar_chart, share_bar
from psatriage.web.console.formatting import ago, money, percent


def test_bars_scale_to_a_round_top() -> None:
    chart = bar_chart("cost", [("a", 0.0), ("b", 3.0), ("c", 6.5)], shown=money)
    assert [tick.text for tick in chart.y_ticks] == ["$0", "$5.00", "$10.00"]  # top: 10
    zero, three, six = chart.bars
    assert zero.height == 0 and three.height == pytest.approx(six.height * 3 / 6.5, rel=1e-3)
    assert six.y + six.height == pytest.approx(chart.baseline)
    assert chart.has_data and three.shown == "$3.00"


def test_a_chart_without_data_says_so() -> None:
    chart = bar_chart("tokens", [("a", 0.0), ("b", 0.0)])
    assert not chart.has_data and all(bar.height == 0 for bar in chart.bars)


def test_every_seventh_day_is_labelled() -> None:
    chart = bar_chart("x", [(f"d{i}", float(i)) for i in range(30)])
    assert [tick.text for tick in chart.x_ticks] == ["d0", "d7", "d14", "d21", "d28"]


def test_shares_stack_left_to_right() -> None:
    segments = share_bar([("applied", 0.5), ("suggested", 0.25), ("failed", 0.25)])
    assert [(s.x, s.width) for s in segments] == [(0, 50), (50, 25), (75, 25)]


def test_formats() -> None:
    assert money(0.00013) == "$0.0001" and money(1234.5) == "$1,234.50" and money(0) == "$0"
    assert percent(0.25) == "25%" and percent(None) == "0%"
    assert ago(None) == "never" and ago(utcnow() - timedelta(hours=3, minutes=5)) == "3 h ago"
    assert ago(utcnow() - timedelta(seconds=20)) == "just now"
