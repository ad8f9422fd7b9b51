"""Decisions, model calls and the taxonomy cache."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import Chosen, Classification, ModelCall, Taxonomy
from psatriage.store.tables import DecisionRow, ModelCallRow, TaxonomyCacheRow, utcnow


class Records:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # -- decisions ----------------------------------------------------------------------------

    def decision_for_event(self, event_id: int) -> DecisionRow | None:
        with self._sessions() as session:
            return session.execute(
                select(DecisionRow).where(DecisionRow.event_id == event_id)
            ).scalar_one_or_none()

    def final_decision_for_ticket(self, tenant: str, ticket_id: str) -> DecisionRow | None:
        """The latest final decision on this ticket from any event (webhook or poll)."""
        with self._sessions() as session:
            return session.execute(
                select(DecisionRow)
                .where(
                    DecisionRow.tenant == tenant,
                    DecisionRow.ticket_id == ticket_id,
                    DecisionRow.final.is_(True),
                )
                .order_by(DecisionRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()

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
    ) -> DecisionRow:
        """Checkpoint what was decided before anything is written, so a retry reuses it."""
        row = DecisionRow(
            event_id=event_id,
            tenant=tenant,
            ticket_id=ticket_id,
            company_id=company_id,
            final=False,
            outcome="",
            reason=reason,
            replacing=replacing,
            previous=previous,
            category_key=chosen.target.key if chosen else None,
            category_label=chosen.category.label if chosen else "",
            category=chosen.to_dict() if chosen else None,
        )
        if classification is not None:
            row.confidence = classification.confidence
            row.confidence_source = classification.confidence_source
            row.reasoning = classification.reasoning
            row.engine = classification.engine
            row.model = classification.model
            row.tokens_in = classification.usage.tokens_in
            row.tokens_out = classification.usage.tokens_out
            row.cost_usd = classification.usage.cost_usd
            row.latency_ms = classification.latency_ms
        with self._sessions.begin() as session:
            session.add(row)
        return row

    def finalize_decision(
        self,
        decision_id: int,
        *,
        outcome: str,
        reason: str,
        wrote_category: bool,
        wrote_note: bool,
    ) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(DecisionRow)
                .where(DecisionRow.id == decision_id)
                .values(
                    final=True,
                    outcome=outcome,
                    reason=reason,
                    wrote_category=wrote_category,
                    wrote_note=wrote_note,
                    updated_at=utcnow(),
                )
            )

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

    # -- model calls --------------------------------------------------------------------------

    def record_call(self, call: ModelCall) -> None:
        """The one write path for the model-call audit log."""
        with self._sessions.begin() as session:
            session.add(ModelCallRow(**asdict(call)))

    def calls_for_event(self, event_id: int) -> list[ModelCallRow]:
        with self._sessions() as session:
            return list(
                session.execute(
                    select(ModelCallRow)
                    .where(ModelCallRow.event_id == event_id)
                    .order_by(ModelCallRow.id)
                ).scalars()
            )

    # -- taxonomy cache -----------------------------------------------------------------------

    def cached_taxonomy(self, tenant: str, scope: str) -> tuple[Taxonomy, datetime] | None:
        with self._sessions() as session:
            row = session.get(TaxonomyCacheRow, (tenant, scope))
            if row is None:
                return None
            return Taxonomy.from_dict(row.data), row.expires_at

    def store_taxonomy(self, tenant: str, taxonomy: Taxonomy, *, ttl_seconds: float) -> datetime:
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        with self._sessions.begin() as session:
            session.merge(
                TaxonomyCacheRow(
                    tenant=tenant,
                    scope=taxonomy.scope,
                    fingerprint=taxonomy.fingerprint,
                    data=taxonomy.to_dict(),
                    fetched_at=now,
                    expires_at=expires,
                )
            )
        return expires

    def forget_taxonomy(self, tenant: str, scope: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                delete(TaxonomyCacheRow).where(
                    TaxonomyCacheRow.tenant == tenant, TaxonomyCacheRow.scope == scope
                )
            )
