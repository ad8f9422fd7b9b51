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
    since: str | None,
    until: str | None,
    now: datetime | None = None,
    *,
    names: tuple[str, str] = ("--since", "--until"),
) -> tuple[datetime, datetime]:
    """``[since, until)`` in naive UTC. ``since`` is a span back from ``until`` (``30d``,
    ``12w``) or an ISO date; ``until`` an ISO date (excluded) or, by default, now. A date
    without a time is its midnight UTC; one with an offset is converted to UTC. ``names`` are
    how messages name the two (the CLI's options, the API's parameters)."""
    first, second = names
    end = _moment(until, second) if until else (now or utcnow())
    text = (since or DEFAULT_SINCE).strip().lower()
    span = _SPAN.match(text)
    if span:
        days = int(span.group(1)) * (7 if span.group(2) == "w" else 1)
        if days == 0:
            raise ConfigError(f"{first} {since!r} is an empty period; give one such as 30d")
        try:
            start = end - timedelta(days=days)
        except OverflowError:
            raise ConfigError(f"{first} {since!r} reaches before the year 1") from None
    else:
        start = _moment(since or "", first, span_too=True)
    if start >= end:
        raise ConfigError(
            f"{first} {start:%Y-%m-%d %H:%M} is not before {second} {end:%Y-%m-%d %H:%M}; "
            f"give a {first} earlier than {second}"
        )
    if start - datetime.min <= end - start:
        raise ConfigError(f"{first} {since!r}: the period before it reaches before the year 1")
    return start, end


def _moment(text: str, option: str, *, span_too: bool = False) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{option} {text!r} is not a date: give an ISO date such as 2026-09-01"
            + (" or a span such as 30d or 12w" if span_too else "")
        ) from None
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
