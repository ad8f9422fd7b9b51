"""Outcomes: what each decided ticket ended up as, and when the sweep reads it again.

An outcome opens ``pending`` with its decision (``open_outcome``, in the decision's own
transaction). The outcome sweep (``psatriage.outcomes``) takes the tenant's due outcomes
(``due``), reads their tickets and records what it found (``record``), until the outcome is
``settled``. An update notification from the PSA makes an open outcome due at once
(``make_due``): the webhook path only writes this mark, the sweep does the reading.
``SweepMarks`` lets one process at a time sweep a tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import OutcomeRow, OutcomeState, SweepMarkRow, utcnow


@dataclass(frozen=True, slots=True)
class OutcomeDraft:
    """What a new outcome knows from its decision."""

    decision_id: int
    tenant: str
    ticket_id: str
    company_id: str | None
    company_name: str
    engine: str
    model: str
    band: str
    confidence: float | None
    decision_outcome: str
    chosen: dict[str, Any] | None  # Chosen.to_dict(), None for a kept category
    chosen_key: str | None
    chosen_label: str
    wrote: bool
    first_check_at: datetime


def open_outcome(session: Session, draft: OutcomeDraft) -> None:
    """Add the pending outcome of a decision unless it already has one (a retried finalization)."""
    existing = session.execute(
        select(OutcomeRow.id).where(OutcomeRow.decision_id == draft.decision_id)
    ).scalar_one_or_none()
    if existing is not None:
        return
    session.add(
        OutcomeRow(
            decision_id=draft.decision_id,
            tenant=draft.tenant,
            ticket_id=draft.ticket_id,
            company_id=draft.company_id,
            company_name=draft.company_name[:255],
            engine=draft.engine,
            model=draft.model,
            band=draft.band,
            confidence=draft.confidence,
            decision_outcome=draft.decision_outcome,
            chosen=draft.chosen,
            chosen_key=draft.chosen_key,
            chosen_label=draft.chosen_label,
            wrote=draft.wrote,
            state=OutcomeState.PENDING.value,
            next_check_at=draft.first_check_at,
            decided_at=utcnow(),
        )
    )


@dataclass(frozen=True, slots=True)
class Found:
    """What one read of the ticket says about an outcome."""

    state: OutcomeState
    final_key: str | None = None
    final_label: str = ""
    matches: bool | None = None
    changed_by: str = ""
    changed_by_kind: str = ""  # "us", "person" or "" (unknown)
    changed_at: datetime | None = None
    closed: bool = False


class Outcomes:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, outcome_id: int) -> OutcomeRow | None:
        with self._sessions() as session:
            return session.get(OutcomeRow, outcome_id)

    def for_decision(self, decision_id: int) -> OutcomeRow | None:
        with self._sessions() as session:
            return session.execute(
                select(OutcomeRow).where(OutcomeRow.decision_id == decision_id)
            ).scalar_one_or_none()

    def due(self, tenant: str, limit: int) -> list[OutcomeRow]:
        """The tenant's open outcomes whose ticket is due a read, most overdue first."""
        with self._sessions() as session:
            return list(
                session.execute(
                    select(OutcomeRow)
                    .where(
                        OutcomeRow.tenant == tenant,
                        OutcomeRow.settled.is_(False),
                        OutcomeRow.next_check_at <= utcnow(),
                    )
                    .order_by(OutcomeRow.next_check_at, OutcomeRow.id)
                    .limit(limit)
                ).scalars()
            )

    def make_due(self, tenant: str, ticket_id: str) -> int:
        """The PSA says the ticket changed: read it at the next sweep. Returns how many open
        outcomes were marked (0 when psatriage has no open decision on the ticket)."""
        now = utcnow()
        with self._sessions.begin() as session:
            result = session.execute(
                update(OutcomeRow)
                .where(
                    OutcomeRow.tenant == tenant,
                    OutcomeRow.ticket_id == ticket_id,
                    OutcomeRow.settled.is_(False),
                    OutcomeRow.next_check_at > now,
                )
                .values(next_check_at=now, updated_at=now)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def record(
        self, outcome_id: int, found: Found, *, next_check_at: datetime, settled: bool
    ) -> None:
        now = utcnow()
        with self._sessions.begin() as session:
            row = session.get(OutcomeRow, outcome_id)
            if row is None:
                return
            row.state = found.state.value
            row.final_key = found.final_key
            row.final_label = found.final_label
            row.matches = found.matches
            row.changed_by = found.changed_by[:255]
            row.changed_by_kind = found.changed_by_kind
            row.changed_at = found.changed_at
            row.closed = found.closed
            row.settled = settled
            row.checks += 1
            row.next_check_at = next_check_at
            row.updated_at = now

    def wrote(self, decision_id: int) -> None:
        """A person accepted the review: the suggestion was written, and the sweep now follows
        it (read again at the next sweep)."""
        now = utcnow()
        with self._sessions.begin() as session:
            session.execute(
                update(OutcomeRow)
                .where(OutcomeRow.decision_id == decision_id)
                .values(wrote=True, next_check_at=now, updated_at=now)
            )

    def corrected(self, decision_id: int, key: str, label: str, by: str) -> None:
        """A person corrected the review: that is the decision's outcome, settled."""
        now = utcnow()
        with self._sessions.begin() as session:
            session.execute(
                update(OutcomeRow)
                .where(OutcomeRow.decision_id == decision_id)
                .values(
                    state=OutcomeState.CORRECTED.value,
                    final_key=key,
                    final_label=label,
                    matches=False,
                    changed_by=by[:255],
                    changed_by_kind="person",
                    changed_at=now,
                    settled=True,
                    updated_at=now,
                )
            )

    def open_count(self, tenant: str) -> int:
        with self._sessions() as session:
            return len(
                session.execute(
                    select(OutcomeRow.id).where(
                        OutcomeRow.tenant == tenant, OutcomeRow.settled.is_(False)
                    )
                ).all()
            )

    def search(
        self, *, tenant: str, since: datetime | None = None, states: Sequence[str] = ()
    ) -> list[OutcomeRow]:
        query = select(OutcomeRow).where(OutcomeRow.tenant == tenant).order_by(OutcomeRow.id)
        if since is not None:
            query = query.where(OutcomeRow.decided_at >= since)
        if states:
            query = query.where(OutcomeRow.state.in_(list(states)))
        with self._sessions() as session:
            return list(session.execute(query).scalars())


class SweepMarks:
    """When each tenant's outcome sweep may run next: one process claims it per interval."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def claim(self, tenant: str, interval_seconds: float) -> bool:
        """Whether this caller may sweep ``tenant`` now (and so has moved its next run on)."""
        now = utcnow()
        following = now + timedelta(seconds=interval_seconds)
        with self._sessions.begin() as session:
            claimed = session.execute(
                update(SweepMarkRow)
                .where(SweepMarkRow.tenant == tenant, SweepMarkRow.next_run_at <= now)
                .values(next_run_at=following, last_run_at=now)
                .returning(SweepMarkRow.tenant)
            ).scalar_one_or_none()
            if claimed is not None:
                return True
            created = session.execute(
                self._insert(SweepMarkRow)
                .values(tenant=tenant, next_run_at=following, last_run_at=now)
                .on_conflict_do_nothing(index_elements=["tenant"])
                .returning(SweepMarkRow.tenant)
            ).scalar_one_or_none()
            return created is not None

    def get(self, tenant: str) -> SweepMarkRow | None:
        with self._sessions() as session:
            return session.get(SweepMarkRow, tenant)
