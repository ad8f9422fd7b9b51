"""What the ledger says about a tenant's traffic: how many tickets came in, and when the last
delivery arrived (for the backtest's ticket volume and the readiness report)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import EventRow, EventState


class Activity:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def tickets_received(self, tenant: str, since: datetime) -> int:
        """Distinct tickets taken in for ``tenant`` since ``since`` (events the service ignored,
        such as updates, do not count)."""
        with self._sessions() as session:
            count = session.execute(
                select(func.count(func.distinct(EventRow.ticket_id))).where(
                    EventRow.tenant == tenant,
                    EventRow.received_at >= since,
                    EventRow.state != EventState.IGNORED.value,
                )
            ).scalar_one()
        return int(count)

    def last_received(self, tenant: str, source: str) -> datetime | None:
        """When the newest event from ``source`` (``webhook``, ``poll``...) arrived, if ever."""
        with self._sessions() as session:
            moment = session.execute(
                select(func.max(EventRow.received_at)).where(
                    EventRow.tenant == tenant, EventRow.source == source
                )
            ).scalar_one()
        return moment
