"""The facts reports are made of: one row per closed ticket, and one refresh mark per tenant.

``record`` writes what the PSA says about closed tickets, with the final category the outcome
sweep found where it found one (``outcomes``: agreed, corrected or filled), else the PSA's, and
psatriage's decision (a ticket closed again after being reopened forgets its hours, so they are
read again); ``set_hours`` fills in the hours;
``claim`` is one conditional update, so of several processes running the scheduled refresh only
one refreshes a tenant per interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import PATH_SEPARATOR, ClosedTicket
from psatriage.store.tables import (
    DecisionRow,
    FactRefreshRow,
    OutcomeRow,
    OutcomeState,
    TicketFactRow,
    utcnow,
)

_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True, slots=True)
class Fact:
    """A closed ticket as the reports count it (see ``TicketFactRow``)."""

    ticket_id: str
    title: str
    company_id: str | None
    company_name: str | None
    created_at: datetime
    closed_at: datetime
    category_key: str | None
    category_path: tuple[str, ...]
    category_source: str
    hours: float | None
    decision: str
    decision_key: str | None


@dataclass(frozen=True, slots=True)
class RefreshState:
    """A tenant's last refresh: when, up to when, and why hours are missing ("" if they are not)."""

    refreshed_at: datetime | None
    covered_until: datetime | None
    hours_problem: str


class Facts:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # -- the refresh mark ---------------------------------------------------------------------

    def claim(self, tenant: str, interval_seconds: float, *, first_after: float = 900.0) -> bool:
        """Whether this caller may run the scheduled refresh of ``tenant`` now (it then holds it
        for ``interval_seconds``). A tenant seen for the first time is refreshed ``first_after``
        seconds later, not at once: a service that just started serves new tickets first."""
        now = utcnow()
        following = now + timedelta(seconds=interval_seconds)
        with self._sessions.begin() as session:
            claimed = session.execute(
                update(FactRefreshRow)
                .where(FactRefreshRow.tenant == tenant, FactRefreshRow.next_refresh_at <= now)
                .values(next_refresh_at=following)
                .returning(FactRefreshRow.tenant)
            ).scalar_one_or_none()
            if claimed is not None:
                return True
            first = now + timedelta(seconds=first_after)
            session.execute(
                self._insert(FactRefreshRow)
                .values(tenant=tenant, next_refresh_at=first, hours_problem="")
                .on_conflict_do_nothing(index_elements=["tenant"])
            )
            return False

    def reschedule(self, tenant: str, moment: datetime) -> None:
        """Make the next scheduled refresh of ``tenant`` due at ``moment`` (a failed run)."""
        with self._sessions.begin() as session:
            session.execute(
                update(FactRefreshRow)
                .where(FactRefreshRow.tenant == tenant)
                .values(next_refresh_at=moment)
            )

    def refreshed(self, tenant: str, *, covered_until: datetime, hours_problem: str) -> None:
        """Note a finished refresh: facts are complete up to ``covered_until``."""
        now = utcnow()
        with self._sessions.begin() as session:
            row = session.get(FactRefreshRow, tenant)
            if row is None:
                session.add(
                    FactRefreshRow(
                        tenant=tenant,
                        next_refresh_at=now,
                        refreshed_at=now,
                        covered_until=covered_until,
                        hours_problem=hours_problem,
                    )
                )
                return
            row.refreshed_at = now
            if row.covered_until is None or covered_until > row.covered_until:
                row.covered_until = covered_until
            row.hours_problem = hours_problem

    def state(self, tenant: str) -> RefreshState:
        with self._sessions() as session:
            row = session.get(FactRefreshRow, tenant)
        if row is None:
            return RefreshState(None, None, "")
        return RefreshState(row.refreshed_at, row.covered_until, row.hours_problem)

    # -- the facts ----------------------------------------------------------------------------

    def record(
        self, tenant: str, tickets: Sequence[ClosedTicket], titles: Mapping[str, str]
    ) -> int:
        """Write ``tickets`` (``titles`` are their redacted titles), each with psatriage's final
        decision on it if any; return how many are new."""
        new = 0
        unique = list({t.ticket_id: t for t in tickets}.values())
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            ids = [t.ticket_id for t in chunk]
            with self._sessions.begin() as session:
                decided = _decisions(session, tenant, ids)
                final = _outcomes(session, tenant, ids)
                closed = dict(
                    session.execute(
                        select(TicketFactRow.ticket_id, TicketFactRow.closed_at).where(
                            TicketFactRow.tenant == tenant, TicketFactRow.ticket_id.in_(ids)
                        )
                    ).all()
                )
                now = utcnow()
                inserts, updates = [], []
                for ticket in chunk:
                    values = _values(ticket, titles.get(ticket.ticket_id, ticket.title))
                    values |= decided.get(ticket.ticket_id, {"decision": "", "decision_key": None})
                    values |= final.get(ticket.ticket_id, {})
                    values |= {"tenant": tenant, "ticket_id": ticket.ticket_id, "refreshed_at": now}
                    if ticket.ticket_id not in closed:
                        inserts.append(values | {"hours": None})
                    elif closed[ticket.ticket_id] != ticket.closed_at:
                        updates.append(values | {"hours": None})  # reopened: read its time again
                    else:
                        updates.append(values)
                if inserts:  # a refresh racing this one may have written some: theirs stay
                    session.execute(
                        self._insert(TicketFactRow).on_conflict_do_nothing(
                            index_elements=["tenant", "ticket_id"]
                        ),
                        inserts,
                    )
                if updates:
                    session.execute(update(TicketFactRow), updates)  # by primary key
                new += len(inserts)
        return new

    def without_hours(self, tenant: str, limit: int) -> list[str]:
        """Tickets whose hours are not known yet, most recently closed first."""
        with self._sessions() as session:
            return list(
                session.execute(
                    select(TicketFactRow.ticket_id)
                    .where(TicketFactRow.tenant == tenant, TicketFactRow.hours.is_(None))
                    .order_by(TicketFactRow.closed_at.desc(), TicketFactRow.ticket_id)
                    .limit(limit)
                ).scalars()
            )

    def set_hours(self, tenant: str, hours: Mapping[str, float]) -> None:
        """Fill in the hours of tickets already recorded (others are ignored)."""
        ids = list(hours)
        with self._sessions.begin() as session:
            known: set[str] = set()
            for start in range(0, len(ids), _CHUNK):
                known.update(
                    session.execute(
                        select(TicketFactRow.ticket_id).where(
                            TicketFactRow.tenant == tenant,
                            TicketFactRow.ticket_id.in_(ids[start : start + _CHUNK]),
                        )
                    ).scalars()
                )
            rows = [
                {"tenant": tenant, "ticket_id": ticket_id, "hours": spent}
                for ticket_id, spent in hours.items()
                if ticket_id in known
            ]
            if rows:
                session.execute(update(TicketFactRow), rows)  # by primary key

    def closed_between(self, tenant: str, since: datetime, until: datetime) -> list[Fact]:
        """The facts of tickets closed in ``[since, until)``, oldest closed first."""
        columns = [getattr(TicketFactRow, name) for name in Fact.__slots__]
        with self._sessions() as session:
            rows = session.execute(
                select(*columns)
                .where(
                    TicketFactRow.tenant == tenant,
                    TicketFactRow.closed_at >= since,
                    TicketFactRow.closed_at < until,
                )
                .order_by(TicketFactRow.closed_at, TicketFactRow.ticket_id)
            ).all()
            return [_fact(row) for row in rows]


def _values(ticket: ClosedTicket, title: str) -> dict[str, object]:
    return {
        "title": title,
        "company_id": ticket.company_id,
        "company_name": ticket.company_name,
        "created_at": ticket.created_at,
        "closed_at": ticket.closed_at,
        "category_key": ticket.key or None,
        "category_path": [v.name or v.id for v in ticket.path],
        "category_source": "psa" if ticket.path else "",
    }


def _decisions(session: Session, tenant: str, ids: Iterable[str]) -> dict[str, dict[str, object]]:
    """psatriage's final decision per ticket (the latest, where a ticket has several)."""
    rows = session.execute(
        select(DecisionRow.ticket_id, DecisionRow.outcome, DecisionRow.category_key)
        .where(
            DecisionRow.tenant == tenant,
            DecisionRow.ticket_id.in_(list(ids)),
            DecisionRow.final.is_(True),
            DecisionRow.outcome != "",
        )
        .order_by(DecisionRow.id)
    ).all()
    return {ticket: {"decision": outcome, "decision_key": key} for ticket, outcome, key in rows}


_FINAL = (OutcomeState.AGREED, OutcomeState.CORRECTED, OutcomeState.FILLED)


def _outcomes(session: Session, tenant: str, ids: Iterable[str]) -> dict[str, dict[str, object]]:
    """The final category per ticket where the outcome sweep knows it (the latest outcome)."""
    rows = session.execute(
        select(OutcomeRow.ticket_id, OutcomeRow.final_key, OutcomeRow.final_label)
        .where(
            OutcomeRow.tenant == tenant,
            OutcomeRow.ticket_id.in_(list(ids)),
            OutcomeRow.state.in_([state.value for state in _FINAL]),
            OutcomeRow.final_key.is_not(None),
        )
        .order_by(OutcomeRow.id)
    ).all()
    return {
        ticket: {
            "category_key": key,
            "category_path": label.split(PATH_SEPARATOR) if label else [key],
            "category_source": "outcome",
        }
        for ticket, key, label in rows
    }


_PATH = Fact.__slots__.index("category_path")


def _fact(row: Sequence[Any]) -> Fact:
    """A fact from its columns, in ``Fact``'s field order (the path as a tuple of names)."""
    values = list(row)
    values[_PATH] = tuple(str(name) for name in values[_PATH] or ())
    return Fact(*values)
