"""Data lifecycle: what a tenant's ``retention_days`` and ``record_retention_days`` let go.

- **Text** derived from tickets, older than ``retention_days``, is blanked: the model's reasoning
  in decisions, event reasons, the ticket snapshots events carry, the title and excerpt of closed
  reviews, model-call errors (which may quote the model's answer), the results of backtests and
  bulk runs. The rows stay, so counts and the audit trail do too.
- **Records** older than ``record_retention_days`` are deleted: finished events with their
  decisions (and those decisions' outcomes and reviews), and model calls. Before they go, their
  counts are added to ``daily_counts`` (per tenant and day: events by state, decisions by
  outcome, outcomes by state, which is the accuracy, reviews by state, model calls, tokens,
  cost), so totals survive. The examples kept for learning are not touched.

``purge`` does it now (``psatriage purge``); ``purge_due`` is housekeeping's call, at most once
per ``purge_every_seconds`` per tenant across every process (a mark in ``job_marks``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Engine, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.config import Tenant
from psatriage.errors import ConfigError
from psatriage.store.tables import (
    TERMINAL_STATES,
    BacktestResultRow,
    BacktestRunRow,
    BulkItemRow,
    BulkRunRow,
    DailyCountRow,
    DecisionRow,
    EventRow,
    JobMarkRow,
    ModelCallRow,
    OutcomeRow,
    ReviewRow,
    ReviewState,
    utcnow,
)

log = structlog.get_logger(__name__)

JOB = "purge"


@dataclass
class Purged:
    """What a purge of one tenant did (or, dry, would do)."""

    tenant: str
    blanked: Counter[str] = field(default_factory=Counter)  # table -> rows whose text went
    deleted: Counter[str] = field(default_factory=Counter)  # table -> rows deleted

    def describe(self, *, dry_run: bool) -> str:
        if not self.blanked and not self.deleted:
            return f"{self.tenant}: nothing {'to purge' if dry_run else 'purged'}"
        verb = "would blank" if dry_run else "blanked"
        parts = []
        if self.blanked:
            listed = ", ".join(f"{n} {table}" for table, n in sorted(self.blanked.items()))
            parts.append(f"{verb} the text of {listed}")
        if self.deleted:
            listed = ", ".join(f"{n} {table}" for table, n in sorted(self.deleted.items()))
            parts.append(f"{'would delete' if dry_run else 'deleted'} {listed}")
        return f"{self.tenant}: " + "; ".join(parts) + " (counts kept in the daily totals)"


def tenants_with_retention(tenants: Iterable[Tenant], name: str | None = None) -> list[Tenant]:
    """The tenants to purge; a ``ConfigError`` when none (or the one named) sets retention."""
    listed = list(tenants)
    if name is not None:
        chosen = [t for t in listed if t.name == name]
        if not chosen:
            known = ", ".join(sorted(t.name for t in listed)) or "none"
            raise ConfigError(f"no tenant named {name!r} (configured: {known})")
        listed = chosen
    kept = [t for t in listed if t.retention_days or t.record_retention_days]
    if not kept:
        which = (
            f"tenant {name!r} sets neither retention_days nor"
            if name
            else "no tenant sets retention_days or"
        )
        raise ConfigError(
            f"{which} record_retention_days, so there is nothing to purge; fix: set them in the "
            "tenants file (docs/operations.md, Data lifecycle)"
        )
    return kept


def purge(
    sessions: sessionmaker[Session],
    tenant: Tenant,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Purged:
    """Blank old text and delete old records of ``tenant`` as its retention says."""
    now = now or utcnow()
    done = Purged(tenant.name)
    with sessions() as session:
        if tenant.record_retention_days:  # first: a row deleted needs no blanking
            cutoff = now - timedelta(days=tenant.record_retention_days)
            _delete_records(session, tenant.name, cutoff, done)
        if tenant.retention_days:
            _blank_text(session, tenant.name, now - timedelta(days=tenant.retention_days), done)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return done


def purge_due(
    engine: Engine, sessions: sessionmaker[Session], tenants: Iterable[Tenant], every: float
) -> list[Purged]:
    """Housekeeping's call: purge each tenant with retention whose turn it is (one process per
    tenant and ``every`` seconds: the first to move the tenant's mark does it)."""
    done = []
    for tenant in tenants:
        if not (tenant.retention_days or tenant.record_retention_days):
            continue
        if not _take_turn(engine, sessions, tenant.name, every):
            continue
        purged = purge(sessions, tenant)
        if purged.blanked or purged.deleted:
            log.info("purged", tenant=tenant.name, blanked=purged.blanked, deleted=purged.deleted)
        done.append(purged)
    return done


def _take_turn(engine: Engine, sessions: sessionmaker[Session], tenant: str, every: float) -> bool:
    now = utcnow()
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with sessions.begin() as session:
        created = session.execute(
            insert(JobMarkRow)
            .values(tenant=tenant, job=JOB, last_run_at=now)
            .on_conflict_do_nothing(index_elements=["tenant", "job"])
            .returning(JobMarkRow.tenant)
        ).scalar_one_or_none()
        if created is not None:
            return True
        moved = session.execute(
            update(JobMarkRow)
            .where(
                JobMarkRow.tenant == tenant,
                JobMarkRow.job == JOB,
                JobMarkRow.last_run_at <= now - timedelta(seconds=every),
            )
            .values(last_run_at=now)
        )
        return bool(moved.rowcount)  # type: ignore[attr-defined]


# -- text ------------------------------------------------------------------------------------


def _blank_text(session: Session, tenant: str, cutoff: datetime, done: Purged) -> None:
    changes: list[tuple[str, Any, ColumnElement[bool], dict[str, Any]]] = [
        (
            "decisions",
            DecisionRow,
            and_(
                DecisionRow.tenant == tenant,
                DecisionRow.created_at < cutoff,
                DecisionRow.reasoning != "",
            ),
            {"reasoning": ""},
        ),
        (
            "events",
            EventRow,
            and_(EventRow.tenant == tenant, EventRow.received_at < cutoff, EventRow.reason != ""),
            {"reason": ""},
        ),
        (
            "event snapshots",
            EventRow,
            and_(
                EventRow.tenant == tenant,
                EventRow.received_at < cutoff,
                EventRow.snapshot.is_not(None),
            ),
            {"snapshot": None},
        ),
        (
            "reviews",
            ReviewRow,
            and_(
                ReviewRow.tenant == tenant,
                ReviewRow.created_at < cutoff,
                ReviewRow.state != ReviewState.PENDING.value,  # a person still needs it
                or_(ReviewRow.title != "", ReviewRow.excerpt != ""),
            ),
            {"title": "", "excerpt": ""},
        ),
        (
            "model calls",
            ModelCallRow,
            and_(
                ModelCallRow.tenant == tenant,
                ModelCallRow.created_at < cutoff,
                ModelCallRow.error.is_not(None),
            ),
            {"error": None},
        ),
        (
            "bulk results",
            BulkItemRow,
            and_(
                BulkItemRow.run_id.in_(select(BulkRunRow.id).where(BulkRunRow.tenant == tenant)),
                BulkItemRow.updated_at < cutoff,
                BulkItemRow.result.is_not(None),
            ),
            {"result": None},
        ),
    ]
    for name, table, where, values in changes:
        result = session.execute(update(table).where(where).values(**values))
        done.blanked[name] += int(result.rowcount or 0)  # type: ignore[attr-defined]
    backtests = session.execute(
        delete(BacktestResultRow).where(
            BacktestResultRow.run_id.in_(
                select(BacktestRunRow.id).where(BacktestRunRow.tenant == tenant)
            ),
            BacktestResultRow.created_at < cutoff,
        )
    )
    done.blanked["backtest results"] += int(backtests.rowcount or 0)  # type: ignore[attr-defined]
    for name in [n for n, count in done.blanked.items() if not count]:
        del done.blanked[name]


# -- records ---------------------------------------------------------------------------------


def _delete_records(session: Session, tenant: str, cutoff: datetime, done: Purged) -> None:
    terminal = [state.value for state in TERMINAL_STATES]
    finished_long_ago = and_(
        EventRow.tenant == tenant, EventRow.received_at < cutoff, EventRow.state.in_(terminal)
    )
    old_events = select(EventRow.id).where(finished_long_ago)
    totals: Counter[tuple[datetime, str]] = Counter()
    day = func.date(EventRow.received_at)
    for when, state, count in session.execute(
        select(day, EventRow.state, func.count())
        .where(EventRow.id.in_(old_events))
        .group_by(day, EventRow.state)
    ).all():
        totals[(_midnight(when), f"events:{state}")] += count
    decided = func.date(DecisionRow.created_at)
    for when, outcome, count in session.execute(
        select(decided, DecisionRow.outcome, func.count())
        .where(DecisionRow.event_id.in_(old_events))
        .group_by(decided, DecisionRow.outcome)
    ).all():
        totals[(_midnight(when), f"decisions:{outcome or 'unfinished'}")] += count
    called = func.date(ModelCallRow.created_at)
    old_calls = and_(ModelCallRow.tenant == tenant, ModelCallRow.created_at < cutoff)
    for when, calls, tokens_in, tokens_out, cost in session.execute(
        select(
            called,
            func.count(),
            func.sum(ModelCallRow.tokens_in),
            func.sum(ModelCallRow.tokens_out),
            func.sum(ModelCallRow.cost_usd),
        )
        .where(old_calls)
        .group_by(called)
    ).all():
        moment = _midnight(when)
        totals[(moment, "model_calls")] += calls
        totals[(moment, "tokens_in")] += tokens_in or 0
        totals[(moment, "tokens_out")] += tokens_out or 0
        totals[(moment, "cost_usd")] += cost or 0
    old_decisions = select(DecisionRow.id).where(DecisionRow.event_id.in_(old_events))
    for table, when_column, prefix in (
        (OutcomeRow, OutcomeRow.decided_at, "outcomes"),
        (ReviewRow, ReviewRow.created_at, "reviews"),
    ):
        when_day = func.date(when_column)
        for when, state, count in session.execute(
            select(when_day, table.state, func.count())
            .where(table.decision_id.in_(old_decisions))
            .group_by(when_day, table.state)
        ).all():
            totals[(_midnight(when), f"{prefix}:{state}")] += count
    _add_daily(session, tenant, totals)
    outcomes = session.execute(delete(OutcomeRow).where(OutcomeRow.decision_id.in_(old_decisions)))
    reviews = session.execute(delete(ReviewRow).where(ReviewRow.decision_id.in_(old_decisions)))
    decisions = session.execute(delete(DecisionRow).where(DecisionRow.event_id.in_(old_events)))
    events = session.execute(delete(EventRow).where(finished_long_ago))
    calls = session.execute(delete(ModelCallRow).where(old_calls))
    for name, result in (
        ("events", events),
        ("decisions", decisions),
        ("model calls", calls),
        ("outcomes", outcomes),
        ("reviews", reviews),
    ):
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            done.deleted[name] += count


def _add_daily(session: Session, tenant: str, totals: Mapping[tuple[datetime, str], float]) -> None:
    for (day, name), value in totals.items():
        row = session.get(DailyCountRow, (tenant, day, name))
        if row is None:
            session.add(DailyCountRow(tenant=tenant, day=day, name=name, value=float(value)))
        else:
            row.value += float(value)
    session.flush()


def _midnight(value: object) -> datetime:
    """A day as SQLite (text) or PostgreSQL (a date) returns ``date(...)``, as naive midnight."""
    text = str(value)[:10]
    return datetime.fromisoformat(text)


def daily_totals(sessions: sessionmaker[Session], tenant: str) -> dict[str, float]:
    """Every daily count of ``tenant`` added up, by name (what the purged rows held)."""
    with sessions() as session:
        rows = session.execute(
            select(DailyCountRow.name, func.sum(DailyCountRow.value))
            .where(DailyCountRow.tenant == tenant)
            .group_by(DailyCountRow.name)
        ).all()
    return {str(name): float(value or 0) for name, value in rows}
