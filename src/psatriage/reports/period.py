"""Which period a report covers (``--since``/``--until``, the API's ``since``/``until``) and
the facts of it and of the period before."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from psatriage.errors import ConfigError
from psatriage.reports.build import Period
from psatriage.store.facts import Facts
from psatriage.store.tables import utcnow

DEFAULT_SINCE = "30d"
_SPAN = re.compile(r"^(\d{1,4})([dw])$")


def parse_period(
    since: str | None, until: str | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """``[since, until)`` in naive UTC. ``since`` is a span back from ``until`` (``30d``,
    ``12w``) or an ISO date; ``until`` an ISO date (excluded) or, by default, now. A date
    without a time is its midnight UTC; one with an offset is converted to UTC."""
    end = _moment(until, "--until") if until else (now or utcnow())
    text = (since or DEFAULT_SINCE).strip().lower()
    span = _SPAN.match(text)
    if span:
        days = int(span.group(1)) * (7 if span.group(2) == "w" else 1)
        if days == 0:
            raise ConfigError(f"--since {since!r} is an empty period; give one such as 30d")
        start = end - timedelta(days=days)
    else:
        start = _moment(since or "", "--since")
    if start >= end:
        raise ConfigError(
            f"--since {start:%Y-%m-%d %H:%M} is not before --until {end:%Y-%m-%d %H:%M}; "
            "give a --since earlier than --until"
        )
    return start, end


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a date: give an ISO date such as 2026-09-01"
            + (" or a span such as 30d or 12w" if option == "--since" else "")
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def load_period(facts: Facts, tenant: str, psa: str, since: datetime, until: datetime) -> Period:
    """The facts of ``[since, until)`` and of the period of equal length before it."""
    previous = since - (until - since)
    return Period(
        tenant=tenant,
        psa=psa,
        since=since,
        until=until,
        current=facts.closed_between(tenant, since, until),
        previous=facts.closed_between(tenant, previous, since),
        state=facts.state(tenant),
    )
