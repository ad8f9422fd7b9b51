"""The facts store: recording closed tickets, hours, a reopened ticket, and the refresh mark that
one process claims at a time."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from psatriage.domain import ClosedTicket, LevelValue
from psatriage.store import db
from psatriage.store.facts import Facts
from psatriage.store.tables import DecisionRow, EventRow, OutcomeRow, utcnow

DAY = datetime(2026, 3, 2, 9, 0)


def decide(store: Facts, ticket_id: str, outcome: str, state: str, final: str | None) -> None:
    """psatriage's final decision on a ticket, and what the outcome sweep found it ended as."""
    with store._sessions.begin() as session:
        event = EventRow(tenant="acme", dedupe_key=f"k{ticket_id}", ticket_id=ticket_id,
                         action="added", state="done")  # fmt: skip
        session.add(event)
        session.flush()
        decision = DecisionRow(event_id=event.id, tenant="acme", ticket_id=ticket_id, final=True,
                               outcome=outcome, category_key="9/8")  # fmt: skip
        session.add(decision)
        session.flush()
        session.add(
            OutcomeRow(
                decision_id=decision.id,
                tenant="acme",
                ticket_id=ticket_id,
                decision_outcome=outcome,
                state=state,
                final_key=final and "5/6",
                final_label=final or "",
            )
        )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Facts:
    """The store on SQLite, and on a fresh PostgreSQL database when one is configured."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'facts.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = db.make_engine(url)
    db.upgrade(engine)
    request.addfinalizer(engine.dispose)
    return Facts(engine, db.make_sessionmaker(engine))


def ticket(number: str, closed: datetime, *path: str) -> ClosedTicket:
    levels = tuple(LevelValue(f"l{n}", str(n), name) for n, name in enumerate(path))
    return ClosedTicket(number, f"title {number}", "7", "Contoso Ltd", DAY, closed, levels)


def test_records_tickets_and_hours(store: Facts) -> None:
    first, second = (
        ticket("1", DAY, "Hardware", "Printer"),
        ticket(
            "2",
            DAY,
        ),
    )
    assert store.record("acme", [first, second, first], {"1": "redacted 1"}) == 2
    assert store.record("acme", [first], {}) == 0
    assert store.without_hours("acme", 10) == ["1", "2"]
    store.set_hours("acme", {"1": 1.25})
    found = store.closed_between("acme", DAY, DAY + timedelta(days=1))
    assert [(f.ticket_id, f.hours) for f in found] == [("1", 1.25), ("2", None)]
    assert found[0].title == "title 1"  # written again by the second record, unredacted there
    assert found[0].category_path == ("Hardware", "Printer") and found[0].category_key == "0/1"
    assert (found[1].category_path, found[1].category_source) == ((), "")
    assert store.closed_between("other", DAY, DAY + timedelta(days=1)) == []


def test_a_ticket_closed_again_reads_its_time_again(store: Facts) -> None:
    store.record("acme", [ticket("1", DAY, "Hardware")], {})
    store.set_hours("acme", {"1": 2.0})
    store.record("acme", [ticket("1", DAY, "Software")], {})  # recategorized, not reopened
    assert store.without_hours("acme", 10) == []
    store.record("acme", [ticket("1", DAY + timedelta(days=3), "Software")], {})
    assert store.without_hours("acme", 10) == ["1"]


def test_one_claim_per_interval_and_the_first_one_waits(store: Facts) -> None:
    assert not store.claim("acme", 3600, first_after=0)  # first seen: scheduled, not run
    assert store.claim("acme", 3600)
    assert not store.claim("acme", 3600)  # held for the interval
    assert not store.claim("beta", 3600)  # first seen, in 15 minutes
    assert not store.claim("beta", 3600)
    assert store.state("acme").refreshed_at is None
    store.refreshed("acme", covered_until=DAY, hours_problem="grant time")
    store.refreshed("acme", covered_until=DAY - timedelta(days=1), hours_problem="")
    state = store.state("acme")
    assert state.covered_until == DAY and state.hours_problem == ""
    assert state.refreshed_at is not None and state.refreshed_at <= utcnow()


def test_the_final_category_comes_from_the_outcome_where_the_sweep_knows_it(store: Facts) -> None:
    decide(store, "1", "applied", "corrected", "Software › Email")
    decide(store, "2", "suggested", "pending", None)
    store.record("acme", [ticket("1", DAY, "Hardware"), ticket("2", DAY, "Network"),
                          ticket("3", DAY, "Hardware")], {})  # fmt: skip
    found = {f.ticket_id: f for f in store.closed_between("acme", DAY, DAY + timedelta(days=1))}
    corrected, pending, unseen = found["1"], found["2"], found["3"]
    assert (corrected.category_path, corrected.category_key) == (("Software", "Email"), "5/6")
    assert corrected.category_source == "outcome"
    assert (corrected.decision, corrected.decision_key) == ("applied", "9/8")
    assert (pending.category_path, pending.category_source, pending.decision) == (
        ("Network",), "psa", "suggested")  # fmt: skip
    assert (unseen.decision, unseen.category_source) == ("", "psa")
