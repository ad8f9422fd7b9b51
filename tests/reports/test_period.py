"""``--since``/``--until`` and the API's ``since``/``until``."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from psatriage.errors import ConfigError
from psatriage.reports.period import parse_period

NOW = datetime(2026, 3, 31, 12, 0)


def test_spans_dates_and_offsets() -> None:
    assert parse_period("30d", None, NOW) == (datetime(2026, 3, 1, 12, 0), NOW)
    assert parse_period("2w", "2026-03-15", NOW) == (datetime(2026, 3, 1), datetime(2026, 3, 15))
    assert parse_period("2026-03-01T02:00+02:00", "2026-03-02", NOW)[0] == datetime(2026, 3, 1)
    assert parse_period(None, None, NOW)[0] == datetime(2026, 3, 1, 12, 0)  # 30 days


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("soon", None, "--since 'soon' is not a date: give an ISO date such as 2026-09-01 or a "),
        ("30d", "tomorrow", "--until 'tomorrow' is not a date"),
        ("0w", None, "--since '0w' is an empty period"),
        ("2026-04-01", None, "--since 2026-04-01 00:00 is not before --until 2026-03-31 12:00"),
        ("9999w", "0005-01-01", "--since '9999w' reaches before the year 1"),
        ("0001-01-01", "0001-02-01", "--since '0001-01-01': the period before it reaches"),
    ],
)
def test_bad_dates_say_what_to_give(since: str, until: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_period(since, until, NOW)


def test_the_api_names_its_parameters() -> None:
    with pytest.raises(ConfigError, match=r"^since 'x' is not a date"):
        parse_period("x", None, NOW, names=("since", "until"))
