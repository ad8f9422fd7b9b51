"""The ledger on real SQLite and PostgreSQL: dedupe, exclusive claims, leases, what is due."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from psatriage.domain import TicketEvent
from psatriage.store import db
from psatriage.store.ledger import Ledger
from psatriage.store.tables import EventRow, EventState, utcnow


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield Ledger(engine, db.make_sessionmaker(engine))
    engine.dispose()


def _event(key: str = "m-1", ticket: str = "69", *, actionable: bool = True) -> TicketEvent:
    return TicketEvent(
        tenant="acme",
        ticket_id=ticket,
        action="added" if actionable else "updated",
        actionable=actionable,
        dedupe_key=key,
    )


def test_same_delivery_is_recorded_once(ledger: Ledger) -> None:
    first, created = ledger.record(_event(), state=EventState.RECEIVED)
    again, created_again = ledger.record(_event(), state=EventState.RECEIVED)
    assert created and not created_again
    assert first == again
    other, created_other = ledger.record(_event("m-2"), state=EventState.RECEIVED)
    assert created_other and other != first


def test_concurrent_duplicate_deliveries_make_one_row(ledger: Ledger) -> None:
    results: list[tuple[int, bool]] = []
    barrier = threading.Barrier(5)

    def deliver() -> None:
        barrier.wait()
        results.append(ledger.record(_event("same"), state=EventState.RECEIVED))

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({event_id for event_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_ignored_events_are_recorded_finished(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(actionable=False), state=EventState.IGNORED)
    row = ledger.get(event_id)
    assert row is not None
    assert row.state == "ignored"
    assert row.finished_at is not None
    assert "updated" in row.reason
    assert ledger.claim(event_id, lease_seconds=60) is None


def test_only_one_of_many_workers_claims_an_event(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    claims = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        claims.append(ledger.claim(event_id, lease_seconds=60))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [c for c in claims if c is not None]
    assert len(won) == 1
    assert won[0].attempts == 1


def test_expired_lease_can_be_claimed_again_and_the_old_owner_loses(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    first = ledger.claim(event_id, lease_seconds=0.2)
    assert first is not None
    assert ledger.claim(event_id, lease_seconds=60) is None  # lease still held
    time.sleep(0.3)
    assert ledger.due(stale_after=3600) == [event_id]
    second = ledger.claim(event_id, lease_seconds=60)
    assert second is not None and second.attempts == 2
    assert not ledger.finish(first, EventState.DONE)  # the old owner cannot close it
    assert ledger.finish(second, EventState.DONE, "ok")
    row = ledger.get(event_id)
    assert row is not None and row.state == "done" and row.reason == "ok"
    assert ledger.due(stale_after=0) == []


def test_retry_later_then_due_when_overdue(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    claim = ledger.claim(event_id, lease_seconds=60)
    assert claim is not None
    assert ledger.retry_later(claim, utcnow() + timedelta(seconds=30), "model down")
    row = ledger.get(event_id)
    assert row is not None and row.state == "retrying" and row.reason == "model down"
    assert ledger.due(stale_after=0) == []  # not yet due
    with ledger._sessions.begin() as session:
        session.execute(update(EventRow).values(next_attempt_at=utcnow() - timedelta(seconds=10)))
    assert ledger.due(stale_after=1) == [event_id]
    again = ledger.claim(event_id, lease_seconds=60)
    assert again is not None and again.attempts == 2


def test_received_events_nobody_took_are_due(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    assert ledger.due(stale_after=60) == []
    assert ledger.due(stale_after=-1) == [event_id]


def test_reopen_failed_and_parked_events(ledger: Ledger) -> None:
    failed_id, _ = ledger.record(_event("a"), state=EventState.RECEIVED)
    parked_id, _ = ledger.record(_event("b"), state=EventState.RECEIVED)
    done_id, _ = ledger.record(_event("c"), state=EventState.RECEIVED)
    for event_id, state in (
        (failed_id, EventState.FAILED),
        (parked_id, EventState.PARKED),
        (done_id, EventState.DONE),
    ):
        claim = ledger.claim(event_id, lease_seconds=60)
        assert claim is not None
        ledger.finish(claim, state, "x")
    assert sorted(ledger.reopen([failed_id, parked_id, done_id])) == [failed_id, parked_id]
    row = ledger.get(failed_id)
    assert row is not None and row.state == "received" and row.attempts == 0
    assert ledger.count_by_state() == {"received": 2, "done": 1}


def test_search_filters(ledger: Ledger) -> None:
    for n in range(5):
        ledger.record(_event(f"k{n}", ticket=str(n % 2)), state=EventState.RECEIVED)
    assert [r.ticket_id for r in ledger.search(ticket_id="1")] == ["1", "1"]
    newest = ledger.search(limit=2)
    assert len(newest) == 2 and newest[0].id > newest[1].id
    older = ledger.search(before_id=newest[-1].id)
    assert all(r.id < newest[-1].id for r in older)
    assert ledger.search(tenant="other") == []
    assert len(ledger.search(state="received")) == 5
