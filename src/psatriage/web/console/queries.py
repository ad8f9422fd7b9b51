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
from itertools import pairwise
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import Outcome
from psatriage.store.tables import (
    DecisionRow,
    EventRow,
    EventState,
    ModelCallRow,
    OutcomeRow,
    OutcomeState,
    utcnow,
)

WINDOWS = (1, 7, 30)  # days the overview counts tickets over
MAX_ID = 2**31 - 1  # ids are INTEGER columns; a larger number is no id
ALL = ""  # the key of "all tenants" in per-tenant figures
FAILED_STATES = (EventState.FAILED.value, EventState.PARKED.value)
# what the Events page lists and may queue again (as ``psatriage events retry`` does)
STOPPED_STATES = (*FAILED_STATES, EventState.OVER_BUDGET.value)
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
VERDICTS = tuple(state.value for state in OutcomeState)  # what became of a decision
WEEKS = 8  # the Categories page counts tickets per week over this many weeks
CONFUSIONS_SHOWN = 3  # per category, the categories people most often chose instead


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

    # -- accuracy from outcomes ---------------------------------------------------------------

    def accuracy_per_day(
        self, tenant: str | None = None, days: int = 30, now: datetime | None = None
    ) -> list[AccuracyDay]:
        """Per day (UTC) a decision was made, oldest first: how many of its outcomes are known
        (a final category to compare with) and how many of those matched ours."""
        now = now or utcnow()
        first = (now - timedelta(days=days - 1)).date()
        day = func.date(OutcomeRow.decided_at)
        query = (
            select(
                day,
                func.count(OutcomeRow.matches),
                func.sum(case((OutcomeRow.matches.is_(True), 1), else_=0)),
            )
            .where(OutcomeRow.decided_at >= _midnight(first))
            .group_by(day)
        )
        if tenant:
            query = query.where(OutcomeRow.tenant == tenant)
        with self._sessions() as session:
            rows = {str(d)[:10]: (int(n or 0), int(m or 0)) for d, n, m in session.execute(query)}
        listed = []
        for offset in range(days):
            moment = first + timedelta(days=offset)
            known, matched = rows.get(moment.isoformat(), (0, 0))
            listed.append(AccuracyDay(moment, known, matched))
        return listed

    def verdicts(self, tenant: str | None = None, days: int = 30) -> dict[str, int]:
        """How the outcomes of the last ``days`` stand: agreed, corrected, filled, pending, gone."""
        query = (
            select(OutcomeRow.state, func.count())
            .where(OutcomeRow.decided_at >= utcnow() - timedelta(days=days))
            .group_by(OutcomeRow.state)
        )
        if tenant:
            query = query.where(OutcomeRow.tenant == tenant)
        with self._sessions() as session:
            found = {str(state): int(count) for state, count in session.execute(query)}
        return {state: found.get(state, 0) for state in VERDICTS}

    # -- categories ---------------------------------------------------------------------------

    def categories(self, tenant: str | None = None, now: datetime | None = None) -> list[Usage]:
        """Every category decided in the last ``WEEKS`` weeks, busiest first: tickets per week
        (oldest first), how often its outcomes matched, and what people chose instead."""
        now = now or utcnow()
        edges = [now - timedelta(weeks=WEEKS - n) for n in range(WEEKS + 1)]
        weekly = [
            func.sum(
                case((and_(DecisionRow.created_at >= a, DecisionRow.created_at < b), 1), else_=0)
            )
            for a, b in pairwise(edges)
        ]
        volume = (
            select(DecisionRow.category_label, *weekly)
            .where(
                DecisionRow.created_at >= edges[0],
                DecisionRow.final.is_(True),
                DecisionRow.category_label != "",
            )
            .group_by(DecisionRow.category_label)
        )
        judged = (
            select(
                OutcomeRow.chosen_label,
                func.count(OutcomeRow.matches),
                func.sum(case((OutcomeRow.matches.is_(True), 1), else_=0)),
            )
            .where(OutcomeRow.decided_at >= edges[0], OutcomeRow.chosen_label != "")
            .group_by(OutcomeRow.chosen_label)
        )
        confused = (
            select(OutcomeRow.chosen_label, OutcomeRow.final_label, func.count())
            .where(
                OutcomeRow.decided_at >= edges[0],
                OutcomeRow.matches.is_(False),
                OutcomeRow.final_label != "",
            )
            .group_by(OutcomeRow.chosen_label, OutcomeRow.final_label)
        )
        if tenant:
            volume = volume.where(DecisionRow.tenant == tenant)
            judged = judged.where(OutcomeRow.tenant == tenant)
            confused = confused.where(OutcomeRow.tenant == tenant)
        found: dict[str, Usage] = {}
        with self._sessions() as session:
            for label, *counts in session.execute(volume):
                found[label] = Usage(label, [int(c or 0) for c in counts])
            for label, known, matched in session.execute(judged):
                usage = found.setdefault(label, Usage(label, [0] * WEEKS))
                usage.known, usage.matched = int(known or 0), int(matched or 0)
            pairs = sorted(session.execute(confused), key=lambda row: -int(row[2]))
            for label, instead, count in pairs:
                usage = found.setdefault(label, Usage(label, [0] * WEEKS))
                if len(usage.confused_with) < CONFUSIONS_SHOWN:
                    usage.confused_with.append((instead, int(count)))
        return sorted(found.values(), key=lambda u: (-u.tickets, u.label))

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
            followed = session.execute(
                select(OutcomeRow.decision_id, OutcomeRow.state, OutcomeRow.band).where(
                    OutcomeRow.decision_id.in_([row.id for row in rows])
                )
            )
            verdicts = {number: (state, band) for number, state, band in followed}
        return DecisionPage(rows, int(total or 0), newer, older, verdicts)

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
        query = select(EventRow).where(EventRow.state.in_(STOPPED_STATES))
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
    verdict: str = ""  # what became of it: an OutcomeState value
    band: str = ""  # apply, suggest or record
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
        followed = [
            condition
            for condition, wanted in (
                (OutcomeRow.state == self.verdict, self.verdict),
                (OutcomeRow.band == self.band, self.band),
            )
            if wanted
        ]
        if followed:
            found.append(DecisionRow.id.in_(select(OutcomeRow.decision_id).where(*followed)))
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
    verdicts: dict[int, tuple[str, str]] = field(default_factory=dict)  # id: (state, band)

    @property
    def counted(self) -> str:
        """How many match, as shown: "1,000+" past the cap."""
        return f"{COUNT_CAP:,}+" if self.total > COUNT_CAP else f"{self.total:,}"


@dataclass(frozen=True)
class DecisionDetail:
    decision: DecisionRow
    event: EventRow | None
    calls: list[ModelCallRow]


@dataclass(frozen=True)
class AccuracyDay:
    day: date
    known: int  # outcomes with a final category to compare with
    matched: int  # of those, how many were the category we chose

    @property
    def share(self) -> float:
        return self.matched / self.known if self.known else 0.0


@dataclass
class Usage:
    """One category on the Categories page."""

    label: str
    weekly: list[int]  # tickets decided per week, oldest first
    known: int = 0
    matched: int = 0
    confused_with: list[tuple[str, int]] = field(default_factory=list)

    @property
    def tickets(self) -> int:
        return sum(self.weekly)

    @property
    def accuracy(self) -> float | None:
        return self.matched / self.known if self.known else None
