"""Accuracy from outcomes: counted per company, category, engine, band, decision and day; only
known outcomes count, kept decisions are left out, and shadow mode is measured like the rest."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from psatriage import accuracy, metrics
from psatriage.store import db
from psatriage.store.tables import DecisionRow, EventRow, OutcomeRow, utcnow

DAY = datetime(2026, 11, 2, 9, 0)
_KEYS = itertools.count()


def add_outcome(
    sessions: sessionmaker[Session],
    *,
    state: str,
    matches: bool | None,
    key: str | None = "1/2",
    band: str = "apply",
    decision: str = "applied",
    company: str = "Contoso",
    model: str = "gpt-4o-mini",
    when: datetime = DAY,
    tenant: str = "acme",
) -> None:
    """One decided ticket and its outcome, straight into the tables."""
    with sessions.begin() as session:
        event = EventRow(tenant=tenant, dedupe_key=f"k{next(_KEYS)}",
                         ticket_id="1", action="created", state="done")  # fmt: skip
        session.add(event)
        session.flush()
        row = DecisionRow(event_id=event.id, tenant=tenant, ticket_id="1", final=True)
        session.add(row)
        session.flush()
        session.add(
            OutcomeRow(
                decision_id=row.id, tenant=tenant, ticket_id="1", company_id=None,
                company_name=company, engine="openai", model=model, band=band,
                confidence=0.9, decision_outcome=decision, chosen_key=key,
                chosen_label="Hardware › Printer" if key else "", wrote=decision == "applied",
                state=state, matches=matches, decided_at=when,
            )
        )  # fmt: skip


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


def test_accuracy_counts_known_outcomes_per_dimension(sessions: sessionmaker[Session]) -> None:
    add_outcome(sessions, state="agreed", matches=True)
    add_outcome(sessions, state="corrected", matches=False)
    add_outcome(sessions, state="filled", matches=True, band="suggest", decision="suggested")
    add_outcome(sessions, state="filled", matches=False, band="suggest", decision="shadowed",
                company="Fabrikam", when=DAY + timedelta(days=1))  # fmt: skip
    add_outcome(sessions, state="pending", matches=None, model="llama")
    add_outcome(sessions, state="gone", matches=None)
    add_outcome(sessions, state="agreed", matches=None, key=None, decision="kept")  # left out
    add_outcome(sessions, state="agreed", matches=True, tenant="other")
    add_outcome(sessions, state="agreed", matches=True, when=DAY - timedelta(days=40))

    report = accuracy.accuracy(sessions, "acme", DAY - timedelta(days=30))

    overall = report.overall
    assert (overall.decided, overall.known, overall.correct) == (6, 4, 2)
    assert overall.accuracy == 0.5
    assert overall.states == {"agreed": 1, "corrected": 1, "filled": 2, "pending": 1, "gone": 1}
    bands = {g.key: (g.known, g.correct) for g in report.groups["band"]}
    assert bands == {"apply": (2, 1), "suggest": (2, 1)}
    decisions = {g.key: g.accuracy for g in report.groups["decision"]}
    assert decisions == {"applied": 0.5, "suggested": 1.0, "shadowed": 0.0}
    assert [g.key for g in report.groups["day"]] == ["2026-11-02", "2026-11-03"]
    companies = {g.label: g.decided for g in report.groups["company"]}
    assert companies == {"Contoso": 5, "Fabrikam": 1}
    engines = {g.key: g.accuracy for g in report.groups["engine"]}
    assert engines == {"openai/gpt-4o-mini": 0.5, "openai/llama": None}
    (category,) = report.groups["category"]
    assert (category.key, category.label) == ("1/2", "Hardware › Printer")
    fabrikam = accuracy.accuracy(sessions, "acme", DAY - timedelta(days=30), company="Fabrikam")
    assert fabrikam.overall.decided == 1


def test_the_gauges_follow_the_last_30_days(sessions: sessionmaker[Session]) -> None:
    add_outcome(sessions, state="agreed", matches=True, when=utcnow())
    add_outcome(sessions, state="corrected", matches=False, band="suggest", when=utcnow())
    accuracy._refreshed.clear()
    accuracy.refresh_gauges(sessions, ["acme"])
    assert metrics.ACCURACY.labels("acme", "all")._value.get() == 0.5
    assert metrics.ACCURACY.labels("acme", "apply")._value.get() == 1.0
    assert metrics.OUTCOMES.labels("acme", "corrected")._value.get() == 1
