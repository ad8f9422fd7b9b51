"""The ticket snapshot kept with an event, on real SQLite and PostgreSQL: given back while no later
event about the ticket was recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from psatriage.domain import TicketEvent
from psatriage.store import db
from psatriage.store.ledger import Ledger
from psatriage.store.tables import EventState

SNAPSHOT = {"id": 69, "summary": "Printer", "board": {"id": 1, "name": "Help Desk"}}


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield Ledger(engine, db.make_sessionmaker(engine))
    engine.dispose()


def _record(
    ledger: Ledger, key: str, ticket: str = "69", snapshot: dict[str, object] | None = None
) -> int:
    event = TicketEvent("acme", ticket, "added", True, key, snapshot=snapshot)
    event_id, _ = ledger.record(event, state=EventState.RECEIVED)
    return event_id


def test_the_snapshot_is_kept_until_a_later_event_about_the_ticket(ledger: Ledger) -> None:
    event_id = _record(ledger, "m-1", snapshot=SNAPSHOT)
    _record(ledger, "m-2", ticket="70")  # about another ticket
    assert ledger.snapshot(event_id) == SNAPSHOT
    row = ledger.get(event_id)
    assert row is not None and row.snapshot == SNAPSHOT
    _record(ledger, "m-3")  # the same ticket changed since
    assert ledger.snapshot(event_id) is None


def test_an_event_without_a_snapshot_has_none(ledger: Ledger) -> None:
    event_id = _record(ledger, "m-1")
    assert ledger.snapshot(event_id) is None
    row = ledger.get(event_id)
    assert row is not None and row.snapshot is None
    assert ledger.snapshot(424242) is None
