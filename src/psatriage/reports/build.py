"""The three reports, made from a tenant's facts (``psatriage.store.facts``) for a period and the
period of equal length before it. Nothing here calls a PSA.

* ``categories``: tickets and hours per category at each level, share, median and p90 hours per
  ticket, and the change against the previous period;
* ``automation``: categories ranked by total hours, the same category again and again at one
  company, and categories whose tickets are short, frequent and alike; each with the hours a
  year it represents at the rate measured in the period;
* ``companies``: per company, its tickets and hours by category (for business reviews).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psatriage.domain import PATH_SEPARATOR
from psatriage.reports import similar
from psatriage.reports.models import (
    AutomationReport,
    CategoriesReport,
    CategoryLevel,
    CategoryRow,
    CompaniesReport,
    CompanyCategory,
    CompanyRow,
    HoursRow,
    RecurringRow,
    Summary,
)
from psatriage.store.facts import Fact, RefreshState

NO_CATEGORY = "(none)"
NO_COMPANY = "(no company)"
RECURRING_AT = 3  # tickets of one category at one company before the pair is "recurring"
LISTED = 50  # rows per list at most


@dataclass(frozen=True)
class Period:
    """A tenant's facts for ``[since, until)`` and for the period of equal length before it."""

    tenant: str
    psa: str
    since: datetime
    until: datetime
    current: Sequence[Fact]
    previous: Sequence[Fact]
    state: RefreshState

    @property
    def previous_since(self) -> datetime:
        return self.since - (self.until - self.since)

    @property
    def days(self) -> float:
        return max((self.until - self.since).total_seconds() / 86400, 1 / 24)

    @property
    def hours_available(self) -> bool:
        known = any(f.hours is not None for f in self.current)
        return not self.state.hours_problem and (known or not self.current)

    def per_year(self, value: float) -> float:
        return round(value * 365.0 / self.days, 2)


def summary(period: Period) -> Summary:
    facts = period.current
    unknown = sum(1 for f in facts if f.hours is None)
    note = ""
    if period.state.hours_problem:
        note = f"hours unavailable: {period.state.hours_problem}"
    elif unknown and facts:
        note = (
            f"hours not read yet for {unknown} of {len(facts)} tickets; they count once read "
            "(the next refresh, or --refresh)"
        )
    message = ""
    if not facts:
        message = (
            f"no tickets closed between {period.since:%Y-%m-%d %H:%M} and "
            f"{period.until:%Y-%m-%d %H:%M} UTC for tenant {period.tenant!r}"
        )
        if period.state.refreshed_at is None:
            message += "; its facts were never refreshed: run with --refresh"
    return Summary(
        tenant=period.tenant,
        psa=period.psa,
        since=period.since,
        until=period.until,
        previous_since=period.previous_since,
        tickets=len(facts),
        hours=_total(facts, period),
        hours_available=period.hours_available,
        hours_note=note,
        without_time=sum(1 for f in facts if f.hours == 0.0),
        hours_unknown=unknown,
        decided=sum(1 for f in facts if f.decision),
        refreshed_at=period.state.refreshed_at,
        message=message,
    )


# -- categories ----------------------------------------------------------------------------------


def categories(period: Period) -> CategoriesReport:
    depth = max((len(f.category_path) for f in period.current), default=1)
    cuts: list[tuple[str, int | None]] = [("type", 1), ("type › subtype", 2), ("full path", None)]
    if depth <= 2:
        cuts = [cut for cut in cuts if cut[1] is not None and cut[1] <= max(depth, 1)]
    levels = [
        CategoryLevel(level=name, rows=_category_rows(period, _labeller(cut))) for name, cut in cuts
    ]
    return CategoriesReport(summary=summary(period), levels=levels)


def _labeller(cut: int | None) -> Callable[[Fact], str]:
    return lambda fact: label(fact, cut)


def _category_rows(period: Period, key: Callable[[Fact], str]) -> list[CategoryRow]:
    now, before = _group(period.current, key), _group(period.previous, key)
    total = len(period.current)
    total_hours = _total(period.current, period)
    rows = []
    for name, facts in now.items():
        hours = _total(facts, period)
        earlier = before.get(name, [])
        previous_hours = _total(earlier, period)
        known = _known(facts) if period.hours_available else []
        rows.append(
            CategoryRow(
                category=name,
                tickets=len(facts),
                share=_ratio(len(facts), total) or 0.0,
                hours=hours,
                hours_share=_ratio(hours, total_hours),
                median_hours=_round(statistics.median(known)) if known else None,
                p90_hours=_round(_p90(known)) if known else None,
                previous_tickets=len(earlier),
                previous_hours=previous_hours,
                tickets_trend=_trend(len(facts), len(earlier)),
                hours_trend=_trend(hours, previous_hours),
            )
        )
    return sorted(rows, key=lambda r: (-(r.hours or 0.0), -r.tickets, r.category))


# -- automation ----------------------------------------------------------------------------------


def automation(period: Period) -> AutomationReport:
    by_category = _group(period.current, lambda f: label(f, None))
    total_hours = _total(period.current, period)
    by_hours = []
    for name, facts in by_category.items():
        if name == NO_CATEGORY:
            continue
        hours = _total(facts, period)
        known = _known(facts) if period.hours_available else []
        by_hours.append(
            HoursRow(
                category=name,
                tickets=len(facts),
                hours=hours,
                hours_share=_ratio(hours, total_hours),
                median_hours=_round(statistics.median(known)) if known else None,
                hours_a_year=None if hours is None else period.per_year(hours),
                tickets_a_year=period.per_year(len(facts)),
            )
        )
    by_hours.sort(key=lambda r: (-(r.hours or 0.0), -r.tickets, r.category))
    return AutomationReport(
        summary=summary(period),
        by_hours=by_hours[:LISTED],
        recurring=_recurring(period)[:LISTED],
        alike=similar.alike_categories(
            by_category,
            hours_available=period.hours_available,
            per_year=period.per_year,
            skip=NO_CATEGORY,
        )[:LISTED],
        criteria={"recurring_at_tickets": RECURRING_AT, **similar.criteria()},
    )


def _recurring(period: Period) -> list[RecurringRow]:
    pairs = _group(
        [f for f in period.current if f.category_path],
        lambda f: f"{label(f, None)}\x00{company(f)}",
    )
    rows = []
    for pair, facts in pairs.items():
        if len(facts) < RECURRING_AT:
            continue
        name, client = pair.split("\x00", 1)
        hours = _total(facts, period)
        rows.append(
            RecurringRow(
                category=name,
                company=client,
                tickets=len(facts),
                hours=hours,
                hours_a_year=None if hours is None else period.per_year(hours),
                tickets_a_year=period.per_year(len(facts)),
            )
        )
    return sorted(rows, key=lambda r: (-(r.hours or 0.0), -r.tickets, r.category, r.company))


# -- companies -----------------------------------------------------------------------------------


def companies(period: Period) -> CompaniesReport:
    now, before = _group(period.current, company), _group(period.previous, company)
    total_hours = _total(period.current, period)
    rows = []
    for name, facts in now.items():
        hours = _total(facts, period)
        per_category = [
            CompanyCategory(category=category, tickets=len(group), hours=_total(group, period))
            for category, group in _group(facts, lambda f: label(f, None)).items()
        ]
        per_category.sort(key=lambda c: (-(c.hours or 0.0), -c.tickets, c.category))
        rows.append(
            CompanyRow(
                company=name,
                company_id=facts[0].company_id,
                tickets=len(facts),
                hours=hours,
                hours_share=_ratio(hours, total_hours),
                previous_tickets=len(before.get(name, [])),
                categories=per_category,
            )
        )
    rows.sort(key=lambda r: (-(r.hours or 0.0), -r.tickets, r.company))
    return CompaniesReport(summary=summary(period), companies=rows)


# -- helpers -------------------------------------------------------------------------------------


def label(fact: Fact, cut: int | None) -> str:
    """The fact's category down to level ``cut`` (all levels when None)."""
    path = fact.category_path if cut is None else fact.category_path[:cut]
    return PATH_SEPARATOR.join(path) if path else NO_CATEGORY


def company(fact: Fact) -> str:
    return fact.company_name or (f"company {fact.company_id}" if fact.company_id else NO_COMPANY)


def _group(facts: Iterable[Fact], key: Callable[[Fact], str]) -> dict[str, list[Fact]]:
    groups: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        groups[key(fact)].append(fact)
    return dict(groups)


def _known(facts: Iterable[Fact]) -> list[float]:
    return [f.hours for f in facts if f.hours is not None]


def _total(facts: Sequence[Fact], period: Period) -> float | None:
    """The hours of ``facts`` (those not read yet left out), or None when hours are unavailable."""
    if not period.hours_available:
        return None
    return _round(sum(_known(facts)))


def _p90(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None:
        return None
    return round(part / whole, 4) if whole else 0.0


def _trend(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return round((now - before) / before, 4)


def _round(value: float) -> float:
    return round(value, 2)
