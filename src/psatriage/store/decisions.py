"""What was decided per event, and every model call behind it: the audit trail."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import Chosen, Classification, ModelCall
from psatriage.store.outcomes import OutcomeDraft, open_outcome
from psatriage.store.reviews import ReviewDraft, open_review
from psatriage.store.tables import DecisionRow, ModelCallRow, OutcomeRow, OutcomeState, utcnow
from psatriage.store.usage import Usage


class AlreadyDecided(Exception):
    """Another event holds the ticket's automatic decision (``event_id``, if still known)."""

    def __init__(self, event_id: int | None) -> None:
        super().__init__(f"already decided by event {event_id}")
        self.event_id = event_id


class Decisions:
    """The decisions and model calls tables. The statements a ticket's path runs every time
    (the checkpoint and holder look-ups, a decision's start and end, each model call) are Core
    statements built once with bound parameters, on a connection: an ORM session and unit of
    work cost several times their CPU, and the worker's CPU per ticket bounds throughput."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        engine = sessions.kw["bind"]
        assert isinstance(engine, Engine)
        self._engine = engine
        dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._by_event = select(DecisionRow.id).where(DecisionRow.event_id == bindparam("e"))
        self._by_key = select(DecisionRow.id).where(DecisionRow.ticket_key == bindparam("key"))
        self._by_either = select(DecisionRow.id, DecisionRow.event_id).where(
            or_(DecisionRow.event_id == bindparam("e"), DecisionRow.ticket_key == bindparam("key"))
        )
        self._insert_decision = insert(DecisionRow).returning(DecisionRow.id)
        self._insert_call = insert(ModelCallRow)
        self._open_outcome = dialect_insert(OutcomeRow).on_conflict_do_nothing(
            index_elements=["decision_id"]
        )
        self._finalize = (
            update(DecisionRow)
            .where(DecisionRow.id == bindparam("decision_id"))
            .values(
                final=True,
                outcome=bindparam("new_outcome"),
                reason=bindparam("new_reason"),
                wrote_category=bindparam("new_wrote_category"),
                wrote_note=bindparam("new_wrote_note"),
                updated_at=bindparam("now"),
            )
        )

    # -- decisions ----------------------------------------------------------------------------

    def decision_for_event(self, event_id: int) -> DecisionRow | None:
        with self._engine.connect() as connection:
            found = connection.execute(self._by_event, {"e": event_id}).scalar_one_or_none()
        return None if found is None else self.get(int(found))

    def checkpoint_and_holder(
        self, event_id: int, tenant: str, ticket_id: str
    ) -> tuple[DecisionRow | None, DecisionRow | None]:
        """``decision_for_event`` and ``ticket_holder`` in one statement: the event's own
        decision (a checkpoint to resume), and the decision holding the ticket, if another
        event's."""
        with self._engine.connect() as connection:
            found = connection.execute(
                self._by_either, {"e": event_id, "key": f"{tenant}:{ticket_id}"}
            ).all()
        own = next((int(row.id) for row in found if row.event_id == event_id), None)
        other = next((int(row.id) for row in found if row.event_id != event_id), None)
        return (
            None if own is None else self.get(own),
            None if other is None else self.get(other),
        )

    def get(self, decision_id: int) -> DecisionRow | None:
        with self._sessions() as session:
            return session.get(DecisionRow, decision_id)

    def mark_written(self, decision_id: int) -> None:
        """A person's review wrote this decision's category (or the correction) later."""
        with self._sessions.begin() as session:
            session.execute(
                update(DecisionRow)
                .where(DecisionRow.id == decision_id)
                .values(wrote_category=True, updated_at=utcnow())
            )

    def ticket_holder(self, tenant: str, ticket_id: str) -> DecisionRow | None:
        """The decision that holds the ticket's one automatic decision, if any."""
        with self._engine.connect() as connection:
            found = connection.execute(
                self._by_key, {"key": f"{tenant}:{ticket_id}"}
            ).scalar_one_or_none()
        return None if found is None else self.get(int(found))

    def start_decision(
        self,
        *,
        event_id: int,
        tenant: str,
        ticket_id: str,
        company_id: str | None,
        previous: str,
        chosen: Chosen | None,
        classification: Classification | None,
        reason: str = "",
        replacing: bool = False,
        once_per_ticket: bool = True,
        redactions: Mapping[str, int] | None = None,
        fields: Sequence[Mapping[str, object]] = (),
        storm_key: str | None = None,
        followed: str | None = None,
        scope: str | None = None,
        calls: Sequence[ModelCall] = (),
        usage: Usage | None = None,
    ) -> DecisionRow:
        """Checkpoint what was decided before anything is written, so a retry reuses it.

        With ``once_per_ticket`` the decision claims the ticket: if another event's decision
        already did, ``AlreadyDecided`` is raised and nothing is stored. ``calls`` are the
        model calls behind the decision, recorded (and counted against ``usage``) in the same
        transaction: one write turn where there were two.
        """
        values: dict[str, Any] = {
            "event_id": event_id,
            "tenant": tenant,
            "ticket_id": ticket_id,
            "company_id": company_id,
            "final": False,
            "outcome": "",
            "reason": reason,
            "replacing": replacing,
            "redactions": dict(redactions) if redactions else None,
            "ticket_key": f"{tenant}:{ticket_id}" if once_per_ticket else None,
            "previous": previous,
            "category_key": chosen.target.key if chosen else None,
            "category_label": chosen.category.label if chosen else "",
            "category": chosen.to_dict() if chosen else None,
            "fields": [dict(f) for f in fields] or None,
            "storm_key": storm_key,
            "followed": followed,
            "scope": scope,
        }
        if classification is not None:
            values |= {
                "confidence": classification.confidence,
                "confidence_source": classification.confidence_source,
                "reasoning": classification.reasoning,
                "engine": classification.engine,
                "model": classification.model,
                "tokens_in": classification.usage.tokens_in,
                "tokens_out": classification.usage.tokens_out,
                "cost_usd": classification.usage.cost_usd,
                "latency_ms": classification.latency_ms,
            }
        values = _with_defaults(_DECISIONS, values)
        try:
            with self._engine.begin() as connection:
                new_id = connection.execute(self._insert_decision, values).scalar_one()
                self._calls_on(connection, calls, usage)
        except IntegrityError as exc:
            if not once_per_ticket:
                raise
            earlier = self._decision_by_ticket_key(f"{tenant}:{ticket_id}")
            raise AlreadyDecided(earlier.event_id if earlier else None) from exc
        return DecisionRow(id=int(new_id), **values)

    def _decision_by_ticket_key(self, key: str) -> DecisionRow | None:
        with self._sessions() as session:
            return session.execute(
                select(DecisionRow).where(DecisionRow.ticket_key == key)
            ).scalar_one_or_none()

    def release_ticket(self, event_id: int) -> None:
        """Let another event decide the ticket again (this event's decision failed)."""
        with self._sessions.begin() as session:
            session.execute(
                update(DecisionRow)
                .where(DecisionRow.event_id == event_id)
                .values(ticket_key=None, updated_at=utcnow())
            )

    def finalize_decision(
        self,
        decision_id: int,
        *,
        outcome: str,
        reason: str,
        wrote_category: bool,
        wrote_note: bool,
        review: ReviewDraft | None = None,
        tracked: OutcomeDraft | None = None,
        then: Callable[[Connection], object] | None = None,
    ) -> None:
        """Close the decision; its outcome (``tracked``) and, for a suggestion for review, its
        review open in the same transaction (once, however often a retry finalizes it), and
        ``then`` runs in it too (the worker closes the event there)."""
        now = utcnow()
        closed = {
            "decision_id": decision_id,
            "new_outcome": outcome,
            "new_reason": reason,
            "new_wrote_category": wrote_category,
            "new_wrote_note": wrote_note,
            "now": now,
        }
        if review is not None:  # the rarer path: the review's own ORM helper, in a session
            with self._sessions.begin() as session:
                open_review(session, review)
                if tracked is not None:
                    open_outcome(session, tracked)
                session.execute(self._finalize, closed)
                if then is not None:
                    then(session.connection())
            return
        with self._engine.begin() as connection:
            if tracked is not None:
                connection.execute(self._open_outcome, _outcome_values(tracked, now))
            connection.execute(self._finalize, closed)
            if then is not None:
                then(connection)

    def search_decisions(
        self,
        *,
        tenant: str | None = None,
        ticket_id: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[DecisionRow]:
        query = select(DecisionRow).order_by(DecisionRow.id.desc()).limit(limit)
        if tenant:
            query = query.where(DecisionRow.tenant == tenant)
        if ticket_id:
            query = query.where(DecisionRow.ticket_id == ticket_id)
        if outcome:
            query = query.where(DecisionRow.outcome == outcome)
        if before_id:
            query = query.where(DecisionRow.id < before_id)
        with self._sessions() as session:
            return list(session.execute(query).scalars())

    def rechecked(self, tenant: str, ticket_id: str, scope: str) -> DecisionRow | None:
        """A decision already made for the ticket on ``scope`` (a re-check is once per change)."""
        with self._sessions() as session:
            return session.execute(
                select(DecisionRow)
                .where(
                    DecisionRow.tenant == tenant,
                    DecisionRow.ticket_id == ticket_id,
                    DecisionRow.scope == scope,
                )
                .limit(1)
            ).scalar_one_or_none()

    def storm_leader(
        self, tenant: str, storm_key: str, since: datetime, *, other_than: str = ""
    ) -> DecisionRow | None:
        """The latest decision with a chosen category for this storm key made after ``since``,
        on another ticket than ``other_than``."""
        with self._sessions() as session:
            return session.execute(
                select(DecisionRow)
                .where(
                    DecisionRow.tenant == tenant,
                    DecisionRow.storm_key == storm_key,
                    DecisionRow.ticket_id != other_than,
                    DecisionRow.created_at >= since,
                    DecisionRow.category_key.is_not(None),
                )
                .order_by(DecisionRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    # -- model calls --------------------------------------------------------------------------

    def record_call(self, call: ModelCall, usage: Usage | None = None) -> None:
        """The write path for the model-call audit log, beside ``start_decision``'s; with
        ``usage``, the call is counted against the tenant's budget in the same transaction."""
        self.record_calls((call,), usage)

    def record_calls(self, calls: Sequence[ModelCall], usage: Usage | None = None) -> None:
        with self._engine.begin() as connection:
            self._calls_on(connection, calls, usage)

    def _calls_on(
        self, connection: Connection, calls: Sequence[ModelCall], usage: Usage | None
    ) -> None:
        now = utcnow()
        for call in calls:
            values = asdict(call)
            values["redactions"] = dict(call.redactions) or None
            values["created_at"] = now
            connection.execute(self._insert_call, values)
            if usage is not None:
                usage.add_on(connection, call)

    def calls_for_event(self, event_id: int) -> list[ModelCallRow]:
        with self._sessions() as session:
            return list(
                session.execute(
                    select(ModelCallRow)
                    .where(ModelCallRow.event_id == event_id)
                    .order_by(ModelCallRow.id)
                ).scalars()
            )


_DECISIONS: Table = DecisionRow.__table__  # type: ignore[assignment]


def _with_defaults(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` completed with the table's Python-side column defaults, so that the row object
    built from them reads as a loaded one would."""
    completed = dict(values)
    for column in table.columns:
        if column.key in completed or column.primary_key or column.default is None:
            continue
        default: Any = column.default
        completed[column.key] = default.arg if default.is_scalar else default.arg(None)
    return completed


def _outcome_values(draft: OutcomeDraft, now: datetime) -> dict[str, Any]:
    """The pending outcome row of ``open_outcome``, for a Core insert."""
    return {
        "decision_id": draft.decision_id,
        "tenant": draft.tenant,
        "ticket_id": draft.ticket_id,
        "company_id": draft.company_id,
        "company_name": draft.company_name[:255],
        "engine": draft.engine,
        "model": draft.model,
        "band": draft.band,
        "confidence": draft.confidence,
        "decision_outcome": draft.decision_outcome,
        "chosen": draft.chosen,
        "chosen_key": draft.chosen_key,
        "chosen_label": draft.chosen_label,
        "wrote": draft.wrote,
        "state": OutcomeState.PENDING.value,
        "next_check_at": draft.first_check_at,
        "decided_at": now,
    }
