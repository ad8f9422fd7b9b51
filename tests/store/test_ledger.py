"""The ledger on real SQLite and PostgreSQL: dedupe, exclusive claims, leases, what is due, and
the fair order of claims across tenants (a flooding tenant, priorities, pauses)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from psatriage.domain import TicketEvent
from psatriage.store import db
from psatriage.store.ledger import Ledger
from psatriage.store.tables import EventRow, EventState, utcnow
from psatriage.store.tenant_state import TenantStates


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


def test_a_batch_is_recorded_in_order_with_its_repeats_and_known_keys(ledger: Ledger) -> None:
    known, _ = ledger.record(_event("m-0"), state=EventState.RECEIVED)
    batch = [_event(key) for key in ("m-1", "m-0", "m-2", "m-1", "m-3")]
    recorded = ledger.record_many([(event, EventState.RECEIVED) for event in batch])
    ids = [event_id for event_id, _ in recorded]
    assert [created for _, created in recorded] == [True, False, True, False, True]
    assert ids[1] == known and ids[3] == ids[0]
    assert len(set(ids)) == 4
    assert [ledger.get(event_id).dedupe_key for event_id in ids] == [e.dedupe_key for e in batch]
    assert ledger.record_many([]) == []


def test_a_claim_walks_the_waiting_index_instead_of_sorting_the_backlog(tmp_path: Path) -> None:
    """SQLite can only use the partial index of waiting events when the statement names the
    waiting states itself: with them bound, every claim sorted the tenant's whole backlog."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    db.upgrade(engine)
    ledger = Ledger(engine, db.make_sessionmaker(engine))
    compiled = ledger._claim_turn.compile(engine)
    assert compiled.positiontup is not None
    with engine.connect() as connection:
        plan = [
            row[3]
            for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}",
                tuple(compiled.params.get(name) for name in compiled.positiontup),
            )
        ]
    engine.dispose()
    assert any("USING INDEX ix_events_waiting" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


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
    assert ledger.reap() == 0  # not expired yet
    time.sleep(0.3)
    assert ledger.reap() == 1  # the lease ran out: due again
    assert [t.tenant for t in ledger.turns(["acme"])] == ["acme"]
    (second,) = ledger.claim_turns([("acme", 5)], lease_seconds=60)
    assert second.id == event_id and second.attempts == 2
    assert not ledger.finish(first, EventState.DONE)  # the old owner cannot close it
    assert ledger.finish(second, EventState.DONE, "ok")
    row = ledger.get(event_id)
    assert row is not None and row.state == "done" and row.reason == "ok"
    assert ledger.turns(["acme"]) == [] and ledger.waiting() == 0


def test_a_renewed_lease_is_not_reaped_and_only_its_holder_renews(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    first = ledger.claim(event_id, lease_seconds=0.2)
    assert first is not None and first.claims == 1
    assert ledger.extend([first], lease_seconds=60) == 1
    time.sleep(0.3)
    assert ledger.reap() == 0  # renewed: still held
    with ledger._sessions.begin() as session:  # the holder stopped renewing; its lease ran out
        session.execute(update(EventRow).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert ledger.reap() == 1
    second = ledger.claim(event_id, lease_seconds=60)
    assert second is not None and second.claims == 2
    assert ledger.extend([first], lease_seconds=60) == 0  # the old holder renews nothing
    assert not ledger.finish(first, EventState.DONE)
    assert ledger.finish(second, EventState.DONE)
    assert ledger.extend([second], lease_seconds=60) == 0  # finished: nothing to renew


def test_a_wait_that_gives_its_attempt_back_still_fences_the_old_claim(ledger: Ledger) -> None:
    """A claim that waited for a call limit returns its attempt, so the next claim has the same
    attempt number; the claim count still tells the two apart."""
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    first = ledger.claim(event_id, lease_seconds=60)
    assert first is not None and first.first_try
    assert ledger.retry_later(first, utcnow(), "waiting for its turn", spend_attempt=False)
    second = ledger.claim(event_id, lease_seconds=60)
    assert second is not None
    assert (second.attempts, second.claims) == (first.attempts, 2) and not second.first_try
    assert not ledger.finish(first, EventState.DONE)  # same attempt number, not the holder
    assert ledger.finish(second, EventState.DONE)


def test_retry_later_waits_until_due(ledger: Ledger) -> None:
    event_id, _ = ledger.record(_event(), state=EventState.RECEIVED)
    claim = ledger.claim(event_id, lease_seconds=60)
    assert claim is not None
    assert ledger.retry_later(claim, utcnow() + timedelta(seconds=30), "model down")
    row = ledger.get(event_id)
    assert row is not None and row.state == "retrying" and row.reason == "model down"
    assert ledger.turns(["acme"]) == []  # not yet due
    assert ledger.claim_turns([("acme", 5)], lease_seconds=60) == []
    assert ledger.waiting() == 1  # but waiting
    with ledger._sessions.begin() as session:
        session.execute(update(EventRow).values(next_attempt_at=utcnow() - timedelta(seconds=10)))
    (again,) = ledger.claim_turns([("acme", 5)], lease_seconds=60)
    assert again.id == event_id and again.attempts == 2


def _flood(ledger: Ledger, tenant: str, count: int, *, priority: int = 0) -> list[int]:
    return [
        ledger.record(
            TicketEvent(tenant, str(n), "added", True, f"{tenant}-{priority}-{n}"),
            state=EventState.RECEIVED,
            priority=priority,
        )[0]
        for n in range(count)
    ]


def _serve_one_at_a_time(ledger: Ledger, tenants: list[str], claims: int) -> list[str]:
    """What a worker with one free slot claims, ``claims`` times: the first turn's tenant."""
    served = []
    for _ in range(claims):
        turns = ledger.turns(tenants)
        if not turns:
            break
        (claim,) = ledger.claim_turns([(turns[0].tenant, 1)], lease_seconds=60)
        assert ledger.finish(claim, EventState.DONE)
        served.append(claim.tenant)
    return served


def test_a_flooding_tenant_does_not_hold_up_a_quiet_one(ledger: Ledger) -> None:
    """Thousands of one tenant's events recorded first; the quiet tenant's ticket is claimed
    within one round of the tenants, and then the two alternate while both have work."""
    _flood(ledger, "flood", 2000)
    assert _serve_one_at_a_time(ledger, ["flood", "quiet"], 3) == ["flood"] * 3
    _flood(ledger, "quiet", 3)
    served = _serve_one_at_a_time(ledger, ["flood", "quiet"], 8)
    assert served[:6] == ["quiet", "flood"] * 3
    assert served[6:] == ["flood", "flood"]
    assert ledger.waiting() == 2000 - 3 - 5


def test_claims_share_free_slots_round_robin_and_never_twice(ledger: Ledger) -> None:
    _flood(ledger, "flood", 300)
    _flood(ledger, "quiet", 2)
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def work() -> None:
        barrier.wait()
        for _ in range(20):
            claims = ledger.claim_turns([("quiet", 1), ("flood", 3)], lease_seconds=60)
            with lock:
                claimed.extend(c.id for c in claims)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(set(claimed)) == 302  # all of them, none twice


def test_a_tenants_new_tickets_come_before_its_other_work(ledger: Ledger) -> None:
    later = _flood(ledger, "acme", 3, priority=1)
    new = _flood(ledger, "acme", 2, priority=0)
    claims = ledger.claim_turns([("acme", 4)], lease_seconds=60)
    assert [c.id for c in claims] == sorted([*new, *later[:2]])
    assert {c.id for c in claims} >= set(new)
    (last,) = ledger.claim_turns([("acme", 4)], lease_seconds=60)
    assert last.id == later[2]


def test_a_paused_tenant_keeps_its_events_until_resumed(ledger: Ledger) -> None:
    states = TenantStates(ledger._engine)
    _flood(ledger, "acme", 2)
    _flood(ledger, "other", 1)
    assert states.pause("acme", by="cli:ann")
    assert not states.pause("acme", by="cli:ann")  # already paused
    assert [t.tenant for t in ledger.turns(["acme", "other"])] == ["other"]
    assert ledger.claim_turns([("acme", 5)], lease_seconds=60) == []  # checked at the claim too
    (overview,) = [t for t in states.overview(["acme", "other"]) if t.tenant == "acme"]
    assert (overview.paused, overview.paused_by, overview.waiting) == (True, "cli:ann", 2)
    assert states.resume("acme") and not states.resume("acme")
    assert len(ledger.claim_turns([("acme", 5)], lease_seconds=60)) == 2


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
