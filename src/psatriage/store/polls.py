"""High-water marks of the polling trigger, one row per tenant.

``claim`` is a single conditional update, so however many poll tasks exist (one per process that
started, plus the minute kick), only one polls a tenant per interval, and the mark survives
restarts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import PollMarkRow, utcnow


class PollMarks:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def claim(
        self, tenant: str, interval_seconds: float, *, start: datetime | None = None
    ) -> datetime | None:
        """The mark to poll from if this caller may poll ``tenant`` now, else None.

        A tenant polled for the first time starts at ``start`` (its ``poll_start``), or at now
        when that is None: then tickets created before are left to ``psatriage backfill``.
        """
        now = utcnow()
        following = now + timedelta(seconds=interval_seconds)
        with self._sessions.begin() as session:
            mark = session.execute(
                update(PollMarkRow)
                .where(PollMarkRow.tenant == tenant, PollMarkRow.next_poll_at <= now)
                .values(next_poll_at=following, updated_at=now)
                .returning(PollMarkRow.mark)
            ).scalar_one_or_none()
            if mark is not None:
                return mark
            created = session.execute(
                self._insert(PollMarkRow)
                .values(
                    tenant=tenant,
                    mark=now if start is None else start,
                    next_poll_at=following,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["tenant"])
                .returning(PollMarkRow.mark)
            ).scalar_one_or_none()
            return created

    def advance(self, tenant: str, mark: datetime) -> None:
        """Move the mark forward (never back)."""
        with self._sessions.begin() as session:
            session.execute(
                update(PollMarkRow)
                .where(PollMarkRow.tenant == tenant, PollMarkRow.mark < mark)
                .values(mark=mark, updated_at=utcnow())
            )

    def overdue(self, tenant: str, grace_seconds: float) -> bool:
        """Whether nobody has polled ``tenant`` for ``grace_seconds`` past its due time."""
        with self._sessions() as session:
            due = session.execute(
                select(PollMarkRow.next_poll_at).where(PollMarkRow.tenant == tenant)
            ).scalar_one_or_none()
        return due is None or due < utcnow() - timedelta(seconds=grace_seconds)

    def get(self, tenant: str) -> PollMarkRow | None:
        with self._sessions() as session:
            return session.get(PollMarkRow, tenant)
