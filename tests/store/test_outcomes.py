"""Outcomes and the sweep's marks on real SQLite and PostgreSQL: one outcome per decision however
often a decision is finalized, update notifications make open outcomes due, one claim per
interval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import TicketEvent
from psatriage.store import db
from psatriage.store.decisions import Decisions
from psatriage.store.ledger import Ledger
from psatriage.store.outcomes import Found, OutcomeDraft, Outcomes, SweepMarks
from psatriage.store.tables import EventState, OutcomeState, utcnow


@dataclass
class Store:
    engine: Engine
    sessions: sessionmaker[Session]
    decisions: Decisions
    outcomes: Outcomes
    marks: SweepMarks

    def decision(self, ticket: str) -> int:
        event = TicketEvent("acme", ticket, "created", True, f"k{ticket}")
        event_id, _ = Ledger(self.engine, self.sessions).record(event, state=EventState.RECEIVED)
        row = self.decisions.start_decision(
            event_id=event_id, tenant="acme", ticket_id=ticket, company_id=None, previous="",
            chosen=None, classification=None,
        )  # fmt: skip
        return row.id


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    yield Store(
        engine, sessions, Decisions(sessions), Outcomes(sessions), SweepMarks(engine, sessions)
    )
    engine.dispose()


def _draft(decision_id: int, ticket: str, *, due_in: timedelta) -> OutcomeDraft:
    return OutcomeDraft(
        decision_id=decision_id, tenant="acme", ticket_id=ticket, company_id="7",
        company_name="Contoso", engine="openai", model="gpt-4o-mini", band="apply",
        confidence=0.9, decision_outcome="applied", chosen=None, chosen_key="1/2",
        chosen_label="Hardware › Printer", wrote=True, first_check_at=utcnow() + due_in,
    )  # fmt: skip


def test_one_outcome_per_decision_made_due_by_an_update(store: Store) -> None:
    decision_id = store.decision("100")
    for _ in range(2):  # a retried finalization
        store.decisions.finalize_decision(
            decision_id, outcome="applied", reason="", wrote_category=True, wrote_note=True,
            tracked=_draft(decision_id, "100", due_in=timedelta(hours=24)),
        )  # fmt: skip
    assert store.outcomes.due("acme", 10) == []
    assert store.outcomes.make_due("acme", "100") == 1
    assert store.outcomes.make_due("acme", "999") == 0
    (due,) = store.outcomes.due("acme", 10)
    assert (due.decision_id, due.state, due.company_name) == (decision_id, "pending", "Contoso")
    found = Found(OutcomeState.CORRECTED, "3/4", "Software › VPN", False, "jdoe", "person")
    store.outcomes.record(due.id, found, next_check_at=utcnow(), settled=True)
    row = store.outcomes.for_decision(decision_id)
    assert row is not None and (row.state, row.final_key, row.changed_by, row.checks) == (
        "corrected", "3/4", "jdoe", 1
    )  # fmt: skip
    assert store.outcomes.due("acme", 10) == []  # settled
    assert store.outcomes.make_due("acme", "100") == 0


def test_one_sweep_claim_per_interval(store: Store) -> None:
    assert store.marks.claim("acme", 900)
    assert not store.marks.claim("acme", 900)
    assert store.marks.claim("contoso", 900)
    mark = store.marks.get("acme")
    assert mark is not None and mark.next_run_at > utcnow() + timedelta(seconds=800)
