"""Read-only queries behind the console's pages: volumes and shares, cost per day, the decisions
table with its filters and keyset pages, and a decision with everything about it.

Each query is one statement over indexed columns (``decisions.created_at``,
``model_calls.created_at``, ``events.state``), so the pages stay fast with 100,000 decisions (see
``bench/console.py``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import Outcome
from psatriage.store.tables import DecisionRow, EventRow, EventState, ModelCallRow, utcnow

WINDOWS = (1, 7, 30)  # days the overview counts tickets over
MAX_ID = 2**31 - 1  # ids are INTEGER columns; a larger number is no id
ALL = ""  # the key of "all tenants" in per-tenant figures
FAILED_STATES = (EventState.FAILED.value, EventState.PARKED.value)
WAITING_STATES = (
    EventState.RECEIVED.value,
    EventState.PROCESSING.value,
    EventState.RETRYING.value,
)
# How the overview groups outcomes: a shadowed decision and a kept category are recorded only.
SHARES = {
    Outcome.APPLIED.value: "applied",
    Outcome.SUGGESTED.value: "suggested",
    Outcome.SHADOWED.value: "recorded only",
    Outcome.RECORDED.value: "recorded only",
    Outcome.KEPT.value: "recorded only",
    Outcome.SKIPPED.value: "recorded only",
}
SHARE_NAMES = ("applied", "suggested", "recorded only", "failed")
COUNT_CAP = 1000  # the decisions table counts matches up to this


@dataclass
class Volume:
    """One tenant's (or all tenants') tickets per window, and how the last 30 days ended."""

    tickets: dict[int, int] = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0))
    shares: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHARE_NAMES, 0))
    open_failures: int = 0
    waiting: int = 0

    def share(self, name: str) -> float:
        total = sum(self.shares.values())
        return self.shares[name] / total if total else 0.0


@dataclass(frozen=True)
class Day:
    day: date
    tokens: int
    cost_usd: float


class ConsoleQueries:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- overview -----------------------------------------------------------------------------

    def volumes(self, now: datetime | None = None) -> dict[str, Volume]:
        """Per tenant and for all tenants (key ``ALL``)."""
        now = now or utcnow()
        since = {days: now - timedelta(days=days) for days in WINDOWS}
        oldest = since[max(WINDOWS)]
        found: dict[str, Volume] = defaultdict(Volume)
        # Materialized first: otherwise SQLite's planner walks the whole table in tenant order
        # for the GROUP BY instead of the created_at range (2x slower with 100,000 decisions).
        recent = (
            select(DecisionRow.tenant, DecisionRow.outcome, DecisionRow.created_at)
            .where(DecisionRow.created_at >= oldest, DecisionRow.final.is_(True))
            .cte("recent")
            .prefix_with("MATERIALIZED")
        )
        windowed = [_count_since(recent.c.created_at, since[d]) for d in WINDOWS]
        decided = select(recent.c.tenant, recent.c.outcome, *windowed).group_by(
            recent.c.tenant, recent.c.outcome
        )
        in_window = [_count_since(EventRow.received_at, since[d]) for d in WINDOWS]
        failed = (
            select(EventRow.tenant, func.count(), *in_window)
            .where(EventRow.state.in_(FAILED_STATES))
            .group_by(EventRow.tenant)
        )
        waiting = (
            select(EventRow.tenant, func.count())
            .where(EventRow.state.in_(WAITING_STATES))
            .group_by(EventRow.tenant)
        )
        with self._sessions() as session:
            for tenant, outcome, *counts in session.execute(decided):
                for key in (tenant, ALL):
                    volume = found[key]
                    for days, count in zip(WINDOWS, counts, strict=True):
                        volume.tickets[days] += int(count or 0)
                    volume.shares[SHARES.get(outcome, "recorded only")] += int(counts[-1] or 0)
            for tenant, total, *counts in session.execute(failed):
                for key in (tenant, ALL):
                    volume = found[key]
                    volume.open_failures += int(total)
                    for days, count in zip(WINDOWS, counts, strict=True):
                        volume.tickets[days] += int(count or 0)
                    volume.shares["failed"] += int(counts[-1] or 0)
            for tenant, count in session.execute(waiting):
                found[tenant].waiting += int(count)
                found[ALL].waiting += int(count)
        found.setdefault(ALL, Volume())
        return dict(found)

    def cost_per_day(
        self, tenant: str | None = None, days: int = 30, now: datetime | None = None
    ) -> list[Day]:
        """Tokens and cost of every model call per day (UTC), oldest first, empty days as 0."""
        now = now or utcnow()
        first = (now - timedelta(days=days - 1)).date()
        day = func.date(ModelCallRow.created_at)
        query = (
            select(
                day,
                func.sum(ModelCallRow.tokens_in + ModelCallRow.tokens_out),
                func.sum(ModelCallRow.cost_usd),
            )
            .where(ModelCallRow.created_at >= datetime.combine(first, datetime.min.time()))
            .group_by(day)
        )
        if tenant:
            query = query.where(ModelCallRow.tenant == tenant)
        with self._sessions() as session:
            rows = {str(d)[:10]: (int(t or 0), float(c or 0)) for d, t, c in session.execute(query)}
        listed = []
        for offset in range(days):
            moment = first + timedelta(days=offset)
            tokens, cost = rows.get(moment.isoformat(), (0, 0.0))
            listed.append(Day(moment, tokens, cost))
        return listed

    def last_event(self, tenant: str) -> datetime | None:
        with self._sessions() as session:
            newest = session.execute(
                select(func.max(EventRow.id)).where(EventRow.tenant == tenant)
            ).scalar()
            if newest is None:
                return None
            return session.execute(
                select(EventRow.received_at).where(EventRow.id == newest)
            ).scalar()

    # -- decisions ----------------------------------------------------------------------------

    def decisions(
        self,
        filters: DecisionFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> DecisionPage:
        """One page of decisions, newest first; ``before``/``after`` are ids of the next page."""
        conditions = filters.conditions()
        query: Select[Any] = select(DecisionRow).where(*conditions)
        if after is not None:
            query = query.where(DecisionRow.id > after).order_by(DecisionRow.id.asc())
        else:
            if before is not None:
                query = query.where(DecisionRow.id < before)
            query = query.order_by(DecisionRow.id.desc())
        with self._sessions() as session:
            rows = list(session.execute(query.limit(limit + 1)).scalars())
            more = len(rows) > limit
            rows = rows[:limit]
            if after is not None:
                rows.reverse()
            # counted up to COUNT_CAP: past that a person reads "1,000+", and a filter that
            # matches most of 100,000 rows costs a short scan, not a whole one
            matching = select(DecisionRow.id).where(*conditions).limit(COUNT_CAP + 1)
            total = session.execute(select(func.count()).select_from(matching.subquery())).scalar()

            def exists(condition: ColumnElement[bool], nearest: Any) -> bool:
                """Whether a matching row lies beyond this page (walking the primary key from
                the page's edge, so the answer costs a few rows, not a scan)."""
                hit = session.execute(
                    select(DecisionRow.id).where(*conditions, condition).order_by(nearest).limit(1)
                ).first()
                return hit is not None

            if not rows:
                return DecisionPage(rows, int(total or 0), False, False)
            newer = (
                more
                if after is not None
                else before is not None
                and exists(DecisionRow.id > rows[0].id, DecisionRow.id.asc())
            )
            older = (
                more
                if after is None
                else exists(DecisionRow.id < rows[-1].id, DecisionRow.id.desc())
            )
        return DecisionPage(rows, int(total or 0), newer, older)

    def decision(self, decision_id: int) -> DecisionDetail | None:
        with self._sessions() as session:
            row = session.get(DecisionRow, decision_id)
            if row is None:
                return None
            event = session.get(EventRow, row.event_id)
            calls = list(
                session.execute(
                    select(ModelCallRow)
                    .where(ModelCallRow.event_id == row.event_id)
                    .order_by(ModelCallRow.id)
                ).scalars()
            )
        return DecisionDetail(row, event, calls)

    # -- events -------------------------------------------------------------------------------

    def failed_events(self, tenant: str | None, limit: int = 200) -> list[EventRow]:
        query = select(EventRow).where(EventRow.state.in_(FAILED_STATES))
        if tenant:
            query = query.where(EventRow.tenant == tenant)
        with self._sessions() as session:
            return list(session.execute(query.order_by(EventRow.id.desc()).limit(limit)).scalars())


@dataclass(frozen=True)
class DecisionFilter:
    """What the decisions table is filtered by; empty fields filter nothing."""

    tenant: str = ""
    company: str = ""
    category: str = ""  # part of the category path, any case
    engine: str = ""
    model: str = ""
    outcome: str = ""  # an Outcome value, or "unfinished"
    since: date | None = None
    until: date | None = None  # inclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        exact = (
            (DecisionRow.tenant, self.tenant),
            (DecisionRow.company_id, self.company),
            (DecisionRow.engine, self.engine),
            (DecisionRow.model, self.model),
        )
        found += [column == value for column, value in exact if value]
        if self.category:
            found.append(DecisionRow.category_label.icontains(self.category, autoescape=True))
        if self.outcome == "unfinished":
            found.append(DecisionRow.final.is_(False))
        elif self.outcome:
            found.append(and_(DecisionRow.final.is_(True), DecisionRow.outcome == self.outcome))
        if self.since:
            found.append(DecisionRow.created_at >= _midnight(self.since))
        if self.until:
            found.append(DecisionRow.created_at < _midnight(self.until + timedelta(days=1)))
        return found


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _count_since(column: Any, moment: datetime) -> Any:
    """``SUM(CASE WHEN column >= moment THEN 1 ELSE 0 END)``: a window counted in one pass."""
    return func.sum(case((column >= moment, 1), else_=0))


@dataclass(frozen=True)
class DecisionPage:
    rows: list[DecisionRow]
    total: int  # at most COUNT_CAP + 1
    has_newer: bool
    has_older: bool

    @property
    def counted(self) -> str:
        """How many match, as shown: "1,000+" past the cap."""
        return f"{COUNT_CAP:,}+" if self.total > COUNT_CAP else f"{self.total:,}"


@dataclass(frozen=True)
class DecisionDetail:
    decision: DecisionRow
    event: EventRow | None
    calls: list[ModelCallRow]
