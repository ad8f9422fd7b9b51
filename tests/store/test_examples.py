"""Labeled examples on real SQLite and PostgreSQL: one per ticket and source, replaced when
added again, listed per tenant, company and time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update

from psatriage.store import db
from psatriage.store.examples import add_example, list_examples
from psatriage.store.tables import ExampleRow, utcnow


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def test_an_example_is_stored_once_per_ticket_and_source_and_replaced_when_added_again(
    engine: Engine,
) -> None:
    sessions = db.make_sessionmaker(engine)
    add_example(
        sessions,
        tenant="acme",
        company="42",
        ticket_id="7",
        text="printer jams on floor 2",
        category_key="1/2",
        category_path="Hardware / Printer",
        source="correction",
        decision_id=3,
    )
    add_example(  # the same ticket and source again: replaces, does not add
        engine,
        tenant="acme",
        company="42",
        ticket_id="7",
        text="printer jams on floor 2",
        category_key="1/3",
        category_path="Hardware / Scanner",
        source="correction",
        decision_id=3,
    )
    add_example(  # another source for the same ticket is another example
        sessions,
        tenant="acme",
        company=None,
        ticket_id="7",
        text="printer jams",
        category_key="1/2",
        category_path="Hardware / Printer",
        source="review_accept",
        decision_id=None,
    )
    add_example(
        sessions,
        tenant="other",
        company="42",
        ticket_id="7",
        text="vpn down",
        category_key="9",
        category_path="Network",
        source="fill",
        decision_id=None,
    )

    found = list_examples(engine, tenant="acme")
    assert [(e.ticket_id, e.source, e.category_key) for e in found] == [
        ("7", "correction", "1/3"),
        ("7", "review_accept", "1/2"),
    ]
    first = found[0]
    assert first.category_path == "Hardware / Scanner" and first.company == "42"
    assert first.decision_id == 3 and first.text == "printer jams on floor 2"
    assert found[1].company is None and found[1].decision_id is None
    assert [e.source for e in list_examples(sessions, tenant="acme", company="42")] == [
        "correction"
    ]
    assert [e.category_key for e in list_examples(sessions, tenant="other")] == ["9"]
    assert list_examples(sessions, tenant="nobody") == []
    newest = list_examples(sessions, tenant="acme", limit=1)
    assert [(e.ticket_id, e.source) for e in newest] == [("7", "review_accept")]


def test_since_lists_only_examples_added_or_changed_from_then(engine: Engine) -> None:
    sessions = db.make_sessionmaker(engine)
    for ticket in ("1", "2"):
        add_example(
            sessions,
            tenant="acme",
            company=None,
            ticket_id=ticket,
            text=f"ticket {ticket}",
            category_key="5",
            category_path="Software",
            source="fill",
            decision_id=None,
        )
    week_ago = utcnow() - timedelta(days=7)
    with sessions.begin() as session:
        session.execute(
            update(ExampleRow)
            .where(ExampleRow.ticket_id == "1")
            .values(created_at=week_ago, updated_at=week_ago)
        )
    recent = list_examples(sessions, tenant="acme", since=utcnow() - timedelta(days=1))
    assert [e.ticket_id for e in recent] == ["2"]
    assert len(list_examples(sessions, tenant="acme", since=week_ago)) == 2


def test_bad_examples_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="unknown example source"):
        add_example(
            engine,
            tenant="acme",
            company=None,
            ticket_id="1",
            text="x",
            category_key="5",
            category_path="",
            source="guess",  # type: ignore[arg-type]
            decision_id=None,
        )
    with pytest.raises(ValueError, match="category key"):
        add_example(
            engine,
            tenant="acme",
            company=None,
            ticket_id="1",
            text="x",
            category_key="",
            category_path="",
            source="fill",
            decision_id=None,
        )
    assert list_examples(engine, tenant="acme") == []
