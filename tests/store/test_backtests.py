"""Backtest runs and results, and the ledger's traffic figures, on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from psatriage.domain import TicketEvent
from psatriage.store import db
from psatriage.store.activity import Activity
from psatriage.store.backtests import Backtests
from psatriage.store.ledger import Ledger
from psatriage.store.tables import EventRow, EventState, utcnow

SINCE = datetime(2026, 9, 1)


@pytest.fixture
def sessions(database_url: str) -> Iterator[tuple[Ledger, sessionmaker[Session]]]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    made = db.make_sessionmaker(engine)
    yield Ledger(engine, made), made
    engine.dispose()


def test_a_run_checkpoints_results_and_is_found_again_until_finished(
    sessions: tuple[Ledger, sessionmaker[Session]],
) -> None:
    store = Backtests(sessions[1])
    run = store.start("acme", "key-1", {"since": "90d", "limit": 10, "engine": ""}, SINCE)
    store.start("other", "key-1", {}, SINCE)  # another tenant's run with the same key

    store.save_result(run.id, "7", {"failure": {"kind": "server unavailable"}})
    store.save_result(run.id, "7", {"failure": None, "confidence": 0.9})  # replaced, not added
    store.save_result(run.id, "8", {"failure": None, "confidence": 0.4})
    store.update_context(run.id, volume={"tickets": 30})
    context = store.update_context(run.id, scopes={"1": {"name": "Help Desk"}})

    found = store.latest("acme", "key-1")
    assert found is not None and found.id == run.id and found.since == SINCE
    assert context == {"volume": {"tickets": 30}, "scopes": {"1": {"name": "Help Desk"}}}
    assert found.context == context
    assert store.results(run.id) == {
        "7": {"failure": None, "confidence": 0.9},
        "8": {"failure": None, "confidence": 0.4},
    }
    assert found.finished_at is None
    assert store.latest("acme", "key-2") is None
    assert store.latest_finished("acme") is None

    store.finish(run.id, {"tickets": 2})

    finished = store.latest_finished("acme")
    assert finished is not None and finished.report == {"tickets": 2}
    assert finished.finished_at is not None
    same = store.latest("acme", "key-1")
    assert same is not None and same.id == run.id and same.report == {"tickets": 2}
    later = store.start("acme", "key-2", {}, SINCE)
    store.finish(later.id, {"tickets": 5})
    newest = store.latest_finished("acme")
    assert newest is not None and newest.id == later.id
    again = store.start("acme", "key-1", {}, SINCE)
    latest = store.latest("acme", "key-1")
    assert latest is not None and latest.id == again.id and latest.finished_at is None


def test_discard_forgets_a_run_and_its_results(
    sessions: tuple[Ledger, sessionmaker[Session]],
) -> None:
    store = Backtests(sessions[1])
    run = store.start("acme", "key", {}, SINCE)
    store.save_result(run.id, "1", {"failure": None})
    store.discard(run.id)
    assert store.latest("acme", "key") is None
    assert store.results(run.id) == {}
    with pytest.raises(LookupError, match="does not exist"):
        store.finish(run.id, {})


def test_traffic_from_the_ledger(sessions: tuple[Ledger, sessionmaker[Session]]) -> None:
    ledger, made = sessions
    activity = Activity(made)
    assert activity.tickets_received("acme", SINCE) == 0
    assert activity.last_received("acme", "webhook") is None

    def record(key: str, ticket: str, *, source: str = "webhook", state: EventState) -> int:
        event = TicketEvent("acme", ticket, "created", True, key)
        return ledger.record(event, state=state, source=source)[0]

    record("a", "1", state=EventState.DONE)
    record("b", "1", state=EventState.IGNORED)  # the same ticket again
    record("c", "2", source="poll", state=EventState.FAILED)
    record("d", "3", state=EventState.IGNORED)  # an update: not a ticket taken in
    old = record("e", "4", state=EventState.DONE)
    long_ago = utcnow() - timedelta(days=400)
    with made() as session:
        session.execute(update(EventRow).where(EventRow.id == old).values(received_at=long_ago))
        session.commit()

    assert activity.tickets_received("acme", utcnow() - timedelta(days=30)) == 2
    assert activity.tickets_received("other", SINCE) == 0
    webhook = activity.last_received("acme", "webhook")
    assert webhook is not None and webhook > long_ago
    assert activity.last_received("acme", "poll") is not None
    assert activity.last_received("acme", "cli") is None
