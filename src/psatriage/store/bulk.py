"""Bulk runs (``psatriage backfill``, ``psatriage export``) and their items: the checkpoint an
interrupted run resumes from.

A run is found again by its key (a hash of the tenant, the kind and the parameters). Once its
work is listed (``add_items``), each item is ``pending`` until it is done, one at a time, so an
interrupt loses at most the item in flight. Items that ended in a passing failure are
``retry``: the next call of the same command does them again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import BulkItemRow, BulkRunRow, utcnow

PENDING = "pending"
RETRY = "retry"  # failed for a passing reason: done again by the next run of the same command
OPEN_STATES = (PENDING, RETRY)


class BulkRuns:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def unfinished(self, tenant: str, kind: str, run_key: str) -> BulkRunRow | None:
        """The newest unfinished run of ``tenant`` with this kind and key, if any."""
        with self._sessions() as session:
            return session.execute(
                select(BulkRunRow)
                .where(
                    BulkRunRow.tenant == tenant,
                    BulkRunRow.kind == kind,
                    BulkRunRow.run_key == run_key,
                    BulkRunRow.finished_at.is_(None),
                )
                .order_by(BulkRunRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def start(self, tenant: str, kind: str, run_key: str, params: Mapping[str, Any]) -> BulkRunRow:
        with self._sessions() as session:
            row = BulkRunRow(
                tenant=tenant, kind=kind, run_key=run_key, params=dict(params), listed=False
            )
            session.add(row)
            session.commit()
            return row

    def add_items(self, run_id: int, ticket_ids: Sequence[str]) -> None:
        """Record the run's work, in order, and mark it listed (in one transaction)."""
        with self._sessions.begin() as session:
            session.add_all(
                BulkItemRow(run_id=run_id, ticket_id=ticket_id, position=n, state=PENDING)
                for n, ticket_id in enumerate(ticket_ids)
            )
            session.execute(update(BulkRunRow).where(BulkRunRow.id == run_id).values(listed=True))

    def open_items(self, run_id: int) -> list[str]:
        """The items still to do (pending, or to retry), in order."""
        with self._sessions() as session:
            return list(
                session.execute(
                    select(BulkItemRow.ticket_id)
                    .where(BulkItemRow.run_id == run_id, BulkItemRow.state.in_(OPEN_STATES))
                    .order_by(BulkItemRow.position)
                ).scalars()
            )

    def done(
        self, run_id: int, ticket_id: str, state: str, result: Mapping[str, Any] | None
    ) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(BulkItemRow)
                .where(BulkItemRow.run_id == run_id, BulkItemRow.ticket_id == ticket_id)
                .values(state=state, result=dict(result) if result else None, updated_at=utcnow())
            )

    def was_retry(self, run_id: int, ticket_id: str) -> bool:
        """Whether the item is one an earlier call left to be done again."""
        with self._sessions() as session:
            state = session.execute(
                select(BulkItemRow.state).where(
                    BulkItemRow.run_id == run_id, BulkItemRow.ticket_id == ticket_id
                )
            ).scalar_one_or_none()
        return state == RETRY

    def states(self, run_id: int) -> Counter[str]:
        """How many items are in each state."""
        with self._sessions() as session:
            rows = session.execute(
                select(BulkItemRow.state, func.count())
                .where(BulkItemRow.run_id == run_id)
                .group_by(BulkItemRow.state)
            ).all()
        return Counter({str(state): int(count) for state, count in rows})

    def results(self, run_id: int) -> list[tuple[str, str, dict[str, Any]]]:
        """Every finished item as ``(ticket id, state, result)``, in order."""
        with self._sessions() as session:
            rows = session.execute(
                select(BulkItemRow.ticket_id, BulkItemRow.state, BulkItemRow.result)
                .where(BulkItemRow.run_id == run_id, BulkItemRow.state.not_in(OPEN_STATES))
                .order_by(BulkItemRow.position)
            ).all()
        return [(str(t), str(s), dict(r or {})) for t, s, r in rows]

    def finish(self, run_id: int) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(BulkRunRow).where(BulkRunRow.id == run_id).values(finished_at=utcnow())
            )
