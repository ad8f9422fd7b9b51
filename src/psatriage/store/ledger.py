"""The events ledger: every accepted webhook is a row, and every row ends in one terminal state.

Claims are single ``UPDATE ... WHERE`` statements, so two workers (threads or processes, SQLite or
PostgreSQL) can never both own an event: the one whose update changed a row won.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, sessionmaker

from psatriage.domain import TicketEvent
from psatriage.store.tables import TERMINAL_STATES, EventRow, EventState, utcnow


@dataclass(frozen=True, slots=True)
class Claim:
    """An event a worker now owns until ``lease_until``."""

    id: int
    tenant: str
    ticket_id: str
    attempts: int
    lease_until: datetime
    received_at: datetime
    source: str


class Ledger:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._engine = engine
        self._sessions = sessions
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # Built once: the webhook path runs this for every delivery (a Core statement with bound
        # parameters costs a fifth of an ORM insert in a session).
        self._record = (
            insert(EventRow)
            .on_conflict_do_nothing(index_elements=["tenant", "dedupe_key"])
            .returning(EventRow.id)
        )
        self._existing = select(EventRow.id).where(
            EventRow.tenant == bindparam("tenant"), EventRow.dedupe_key == bindparam("key")
        )
        self._snapshot = _fresh_snapshot()

    def record(
        self, event: TicketEvent, *, state: EventState, source: str = "webhook"
    ) -> tuple[int, bool]:
        """Insert the event unless its dedupe key is known; return ``(id, created)``."""
        now = utcnow()
        key = event.dedupe_key[:255]
        row = {
            "tenant": event.tenant,
            "dedupe_key": key,
            "ticket_id": event.ticket_id[:64],
            "action": event.action[:32],
            "source": source,
            "state": state.value,
            "attempts": 0,
            "reason": "" if event.actionable else f"not acted on: action {event.action!r}",
            "received_at": now,
            "updated_at": now,
            "lease_until": None,
            "next_attempt_at": None,
            "occurred_at": _naive_utc(event.occurred_at),
            "finished_at": None if event.actionable else now,
            "snapshot": dict(event.snapshot) if event.snapshot is not None else None,
        }
        with self._engine.begin() as connection:
            new_id = connection.execute(self._record, row).scalar_one_or_none()
            if new_id is not None:
                return new_id, True
            existing = connection.execute(
                self._existing, {"tenant": event.tenant, "key": key}
            ).scalar_one()
            return existing, False

    def snapshot(self, event_id: int) -> dict[str, Any] | None:
        """The ticket the event's delivery carried, unless a later event about the same ticket
        was recorded since (the ticket changed after the snapshot: read it again)."""
        with self._engine.connect() as connection:
            found = connection.execute(self._snapshot, {"event_id": event_id}).scalar_one_or_none()
        return dict(found) if isinstance(found, dict) else None

    def claim(self, event_id: int, *, lease_seconds: float) -> Claim | None:
        """Take the event if it is waiting, or if its previous owner's lease ran out."""
        now = utcnow()
        lease_until = now + timedelta(seconds=lease_seconds)
        claimable = or_(
            EventRow.state.in_([EventState.RECEIVED.value, EventState.RETRYING.value]),
            and_(EventRow.state == EventState.PROCESSING.value, EventRow.lease_until < now),
        )
        with self._sessions.begin() as session:
            row = session.execute(
                update(EventRow)
                .where(EventRow.id == event_id, claimable)
                .values(
                    state=EventState.PROCESSING.value,
                    attempts=EventRow.attempts + 1,
                    lease_until=lease_until,
                    updated_at=now,
                )
                .returning(
                    EventRow.id,
                    EventRow.tenant,
                    EventRow.ticket_id,
                    EventRow.attempts,
                    EventRow.received_at,
                    EventRow.source,
                )
            ).one_or_none()
        if row is None:
            return None
        return Claim(
            row.id,
            row.tenant,
            row.ticket_id,
            row.attempts,
            lease_until,
            row.received_at,
            row.source,
        )

    def finish(self, claim: Claim, state: EventState, reason: str = "") -> bool:
        """Close a claimed event; False if the claim had been lost meanwhile."""
        assert state in TERMINAL_STATES or state == EventState.PARKED
        return self._update_owned(
            claim,
            state=state.value,
            reason=reason,
            lease_until=None,
            next_attempt_at=None,
            finished_at=utcnow(),
        )

    def retry_later(
        self, claim: Claim, at: datetime, reason: str, *, spend_attempt: bool = True
    ) -> bool:
        """Give the event back until ``at``; without ``spend_attempt`` the claim's attempt is
        returned too (the event only waited its turn)."""
        attempts = claim.attempts if spend_attempt else claim.attempts - 1
        return self._update_owned(
            claim,
            state=EventState.RETRYING.value,
            reason=reason,
            lease_until=None,
            next_attempt_at=at,
            attempts=attempts,
        )

    def _update_owned(self, claim: Claim, **values: object) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(EventRow)
                .where(
                    EventRow.id == claim.id,
                    EventRow.state == EventState.PROCESSING.value,
                    EventRow.attempts == claim.attempts,
                )
                .values(updated_at=utcnow(), **values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def due(self, *, stale_after: float, limit: int = 500) -> list[int]:
        """Events that should be queued again: expired leases, overdue retries, and received
        events nobody picked up within ``stale_after`` seconds (a queue that lost them)."""
        now = utcnow()
        stale = now - timedelta(seconds=stale_after)
        condition = or_(
            and_(EventRow.state == EventState.PROCESSING.value, EventRow.lease_until < now),
            and_(EventRow.state == EventState.RETRYING.value, EventRow.next_attempt_at < stale),
            and_(EventRow.state == EventState.RECEIVED.value, EventRow.received_at < stale),
        )
        with self._sessions() as session:
            return list(
                session.execute(
                    select(EventRow.id).where(condition).order_by(EventRow.id).limit(limit)
                ).scalars()
            )

    def reopen(self, event_ids: Sequence[int]) -> list[int]:
        """Put failed, parked or over-budget events back to ``received`` (``events retry``)."""
        reopened = [EventState.FAILED.value, EventState.PARKED.value, EventState.OVER_BUDGET.value]
        with self._sessions.begin() as session:
            rows = session.execute(
                update(EventRow)
                .where(
                    EventRow.id.in_(event_ids),
                    EventRow.state.in_(reopened),
                )
                .values(
                    state=EventState.RECEIVED.value,
                    attempts=0,
                    reason="retried by an operator",
                    finished_at=None,
                    updated_at=utcnow(),
                )
                .returning(EventRow.id)
            )
            return list(rows.scalars())

    def get(self, event_id: int) -> EventRow | None:
        with self._sessions() as session:
            return session.get(EventRow, event_id)

    def search(
        self,
        *,
        tenant: str | None = None,
        state: str | None = None,
        ticket_id: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[EventRow]:
        query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
        if tenant:
            query = query.where(EventRow.tenant == tenant)
        if state:
            query = query.where(EventRow.state == state)
        if ticket_id:
            query = query.where(EventRow.ticket_id == ticket_id)
        if before_id:
            query = query.where(EventRow.id < before_id)
        with self._sessions() as session:
            return list(session.execute(query).scalars())

    def count_by_state(self) -> dict[str, int]:
        with self._sessions() as session:
            rows = session.execute(
                select(EventRow.state, func.count()).group_by(EventRow.state)
            ).all()
        return {str(state): int(count) for state, count in rows}


def _fresh_snapshot() -> Select[tuple[dict[str, Any] | None]]:
    later = aliased(EventRow)
    return select(EventRow.snapshot).where(
        EventRow.id == bindparam("event_id"),
        EventRow.snapshot.is_not(None),
        ~exists().where(
            later.tenant == EventRow.tenant,
            later.ticket_id == EventRow.ticket_id,
            later.id > EventRow.id,
        ),
    )


def _naive_utc(moment: datetime | None) -> datetime | None:
    """The database stores naive UTC; PSAs send aware times."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
