"""The jobs through the real runtime (ConnectWise and OpenAI fakes, SQLite): what state each outcome
and each class of error leaves an event in; the consumer runs them; the reaper re-queues lost
events; backoff grows and is capped. The pipeline's own logic is on the fast tier
(``tests/test_pipeline.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage import jobs
from psatriage.config import AppConfig
from psatriage.domain import TicketEvent
from psatriage.jobs import backoff_seconds
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState
from tests.harness import TENANT, Harness

JAM = "My printer has a paper jam again"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with no tenants: every event fails at once, "tenant is no longer configured"."""
    settings = Settings(data_dir=tmp_path, queue_poll_seconds=0.01)
    built = Runtime(settings, AppConfig(tenants={}))
    yield built
    built.close()


@pytest.fixture
def service(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


def _event(runtime: Runtime, ticket_id: int, key: str | None = None) -> int:
    event = TicketEvent(TENANT, str(ticket_id), "added", True, key or f"m-{ticket_id}")
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return event_id


def _ours(harness: Harness, ticket_id: int) -> list[dict[str, object]]:
    return [n for n in harness.cw.notes(ticket_id) if "psatriage:" in str(n["text"])]


def test_each_outcome_leaves_its_state(harness: Harness, service: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    assert jobs.process_event(service, _event(service, ticket, "webhook")) is EventState.DONE
    again = _event(service, ticket, "poll")
    assert jobs.process_event(service, again) is EventState.IGNORED
    row = service.ledger.get(again)
    assert row is not None and row.reason.startswith("already decided by event")
    kept = harness.cw.add_ticket("Printer broken", JAM, type_id=11, subtype_id=22)
    assert jobs.process_event(service, _event(service, kept)) is EventState.KEPT
    assert (
        jobs.process_event(service, _event(service, ticket, "poll")) is None
    )  # finished: not claimed again
    assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1


def test_invalid_answers_fail_release_the_ticket_and_note_it_once(
    harness: Harness, service: Runtime
) -> None:
    harness.llm.script("invalid_key", "garbage", "invalid_key", "invalid_key")
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    first = _event(service, ticket, "a")
    assert jobs.process_event(service, first) is EventState.FAILED
    second = _event(service, ticket, "b")  # the failed event let go of the ticket
    assert jobs.process_event(service, second) is EventState.FAILED
    assert harness.cw.patches(ticket) == []
    (note,) = _ours(harness, ticket)
    assert "could not categorize" in str(note["text"]) and note["internalAnalysisFlag"] is True
    row = service.ledger.get(first)
    assert row is not None and "not" in row.reason
    # no decision was checkpointed, and the calls behind the refused answers are on record
    calls = service.decisions.calls_for_event(first)
    assert service.decisions.decision_for_event(first) is None
    assert [c.error is not None for c in calls] == [True, True]
    assert service.usage.spent(TENANT).calls_today == 4  # both events' two calls each


def test_model_outage_is_retried_then_failed_with_the_reason(harness: Harness) -> None:
    runtime = harness.runtime(harness.settings(max_attempts=2))
    harness.llm.fail("POST", "chat/completions", 500, times=10)
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.RETRYING
    row = runtime.ledger.get(event_id)
    assert row is not None and row.next_attempt_at is not None and row.state == "retrying"
    assert jobs.process_event(runtime, event_id) is EventState.FAILED
    row = runtime.ledger.get(event_id)
    assert row is not None and row.reason.startswith("gave up after 2 attempts")
    assert harness.cw.patches(ticket) == []
    assert len(_ours(harness, ticket)) == 1  # the error note (report_errors is on by default)
    runtime.close()


def test_our_own_call_limit_makes_a_ticket_wait_its_turn_without_spending_attempts(
    harness: Harness,
) -> None:
    runtime = harness.runtime(
        harness.settings(max_attempts=1), connection={"requests_per_window": 2}
    )
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    for _ in range(3):  # more turns than attempts: still waiting, never failed
        assert jobs.process_event(runtime, event_id) is EventState.RETRYING
        row = runtime.ledger.get(event_id)
        assert row is not None and row.attempts == 0 and row.next_attempt_at is not None
        assert row.reason.startswith("waiting for its turn: client-side limit of 2 calls")
    assert len(harness.cw.requests) <= 2  # nothing past the limit was sent
    assert harness.cw.patches(ticket) == [] and _ours(harness, ticket) == []
    runtime.close()


def test_auth_failure_parks_the_event_and_flags_the_tenant(
    harness: Harness, service: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    harness.cw.fail("GET", rf"/service/tickets/{ticket}$", 401)
    event_id = _event(service, ticket)
    assert jobs.process_event(service, event_id) is EventState.PARKED
    (problem,) = service.problems()[TENANT]
    assert problem.startswith("credentials refused")


def _wait_for(runtime: Runtime, event_id: int, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = runtime.ledger.get(event_id)
        assert row is not None
        if EventState(row.state).terminal:
            return row.state
        time.sleep(0.02)
    raise AssertionError(f"event {event_id} did not finish")


def _record(runtime: Runtime, key: str) -> int:
    event = TicketEvent("gone", "1", "added", True, key)
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return event_id


def test_the_pool_processes_what_is_recorded_and_woken(runtime: Runtime) -> None:
    pool = jobs.WorkerPool(runtime, workers=2).start()
    try:
        event_id = _record(runtime, "a")
        runtime.queue.wake()
        assert _wait_for(runtime, event_id) == "failed"
    finally:
        pool.stop(graceful=True)
    row = runtime.ledger.get(event_id)
    assert row is not None and row.reason == "tenant is no longer configured"


def test_the_pool_finds_recorded_events_without_a_wake_up(
    harness: Harness, service: Runtime
) -> None:
    """A lost wake-up only delays an event to the pool's next look at the ledger."""
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(service, ticket)  # recorded, nobody woken
    pool = jobs.WorkerPool(service, workers=1).start()
    try:
        assert _wait_for(service, event_id) == "done"
    finally:
        pool.stop(graceful=True)
    assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1


def test_reaper_gives_back_events_whose_lease_ran_out(harness: Harness, service: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(service, ticket)
    claim = service.ledger.claim(event_id, lease_seconds=0)  # a worker that then died
    assert claim is not None
    time.sleep(0.05)
    assert jobs.reap(service) == 1
    row = service.ledger.get(event_id)
    assert row is not None and (row.state, row.attempts) == ("retrying", 1)
    assert not service.ledger.finish(claim, EventState.DONE)  # the dead worker's lease is void
    pool = jobs.WorkerPool(service, workers=1).start()
    try:
        assert _wait_for(service, event_id) == "done"
    finally:
        pool.stop(graceful=True)
    assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1


def test_an_event_closes_with_its_decision_only_while_the_claim_is_still_ours(
    harness: Harness, service: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(service, ticket)
    claim = service.ledger.claim(event_id, lease_seconds=0)  # a worker too slow for its lease
    assert claim is not None
    time.sleep(0.05)
    assert jobs.reap(service) == 1  # the event went back to the queue meanwhile
    assert jobs.run_claim(service, claim) is EventState.DONE  # the slow worker still finishes
    decision = service.decisions.decision_for_event(event_id)
    row = service.ledger.get(event_id)
    assert decision is not None and decision.final and decision.outcome == "applied"
    assert row is not None and row.state == "retrying"  # not closed by a claim no longer its own
    assert jobs.process_event(service, event_id) is EventState.DONE  # the next claim closes it
    row = service.ledger.get(event_id)
    assert row is not None and row.state == "done"
    assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1


def test_events_of_a_tenant_no_longer_configured_fail(runtime: Runtime) -> None:
    event_id = _record(runtime, "orphan")
    jobs.reap(runtime)
    row = runtime.ledger.get(event_id)
    assert row is not None and (row.state, row.reason) == (
        "failed",
        "tenant is no longer configured",
    )


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    delays = [backoff_seconds(n, base=2, cap=60, retry_after=None) for n in range(1, 10)]
    assert 1 <= delays[0] <= 2
    assert all(d <= 60 for d in delays)
    assert 30 <= delays[-1] <= 60
    assert backoff_seconds(1, base=2, cap=60, retry_after=45) >= 45
    assert backoff_seconds(1, base=2, cap=60, retry_after=9999) <= 60
