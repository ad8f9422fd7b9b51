"""The polling trigger: new tickets found without webhooks, once each, across restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.errors import ConfigError
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState, PollMarkRow, utcnow
from psatriage.web import create_app
from tests.harness import TENANT, Harness

POLL = {"trigger": "poll", "poll_seconds": 5, "poll_overlap_seconds": 120}


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    harness.tenant.update(POLL)
    built = harness.runtime()
    yield built
    built.close()


def _make_due(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        session.execute(update(PollMarkRow).values(next_poll_at=utcnow() - timedelta(seconds=1)))


def _ours(harness: Harness, ticket: int) -> list[dict[str, Any]]:
    return [n for n in harness.cw.notes(ticket) if "psatriage:" in n["text"]]


def _finished(runtime: Runtime, ticket: int) -> bool:
    rows = runtime.ledger.search(ticket_id=str(ticket))
    return bool(rows) and all(EventState(row.state).terminal for row in rows)


def _process_all(runtime: Runtime) -> list[EventState | None]:
    return [jobs.process_event(runtime, row.id) for row in runtime.ledger.search(state="received")]


def test_first_poll_starts_now_and_finds_tickets_in_the_overlap(
    harness: Harness, runtime: Runtime
) -> None:
    old = harness.cw.add_ticket("Old", "from last year", entered=datetime(2025, 1, 1, tzinfo=UTC))
    new = harness.cw.add_ticket("Printer", "My printer has a paper jam")
    assert jobs.poll_tenant(runtime, TENANT) == 1
    (event,) = runtime.ledger.search()
    assert event.ticket_id == str(new) and event.source == "poll"
    assert _process_all(runtime) == [EventState.DONE]
    assert len(harness.cw.patches(new)) == 1 and len(_ours(harness, new)) == 1
    assert harness.cw.patches(old) == []


def test_a_poll_start_date_queues_the_tickets_created_since(harness: Harness) -> None:
    harness.tenant.update(POLL, poll_start="2026-01-01")
    runtime = harness.runtime()
    try:
        before = harness.cw.add_ticket("Before", "x", entered=datetime(2025, 12, 1, tzinfo=UTC))
        after = harness.cw.add_ticket("After", "y", entered=datetime(2026, 2, 1, tzinfo=UTC))
        new = harness.cw.add_ticket("Printer", "My printer has a paper jam")
        assert jobs.poll_tenant(runtime, TENANT) == 2
        assert sorted(int(row.ticket_id) for row in runtime.ledger.search()) == [after, new]
        assert before not in {int(row.ticket_id) for row in runtime.ledger.search()}
        mark = runtime.polls.get(TENANT)
        assert mark is not None and mark.mark > datetime(2026, 2, 2)  # it moved on
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "'yesterday' is neither 'now' nor an ISO date such as '2026-11-01'"),
        ("2026-13-01", "is neither 'now' nor an ISO date"),
    ],
)
def test_a_bad_poll_start_is_one_line(harness: Harness, value: str, message: str) -> None:
    harness.tenant.update(POLL, poll_start=value)
    with pytest.raises(ConfigError, match=f"tenant 'acme', key 'poll_start': .*{message}"):
        harness.runtime()


def test_one_poll_per_interval_and_overlapping_windows_dedupe(
    harness: Harness, runtime: Runtime
) -> None:
    first = harness.cw.add_ticket("Printer", "paper jam")
    assert jobs.poll_tenant(runtime, TENANT) == 1
    assert jobs.poll_tenant(runtime, TENANT) is None  # not due yet: another poll holds it
    second = harness.cw.add_ticket("Laptop", "will not power on")
    _make_due(runtime)
    assert jobs.poll_tenant(runtime, TENANT) == 1  # `first` is seen again, and dropped
    assert sorted(e.ticket_id for e in runtime.ledger.search()) == sorted([str(first), str(second)])


def test_the_mark_survives_a_restart_without_gaps_or_duplicates(
    harness: Harness, runtime: Runtime
) -> None:
    before = harness.cw.add_ticket("Printer", "paper jam")
    assert jobs.poll_tenant(runtime, TENANT) == 1
    mark = runtime.polls.get(TENANT)
    assert mark is not None
    runtime.close()
    during = harness.cw.add_ticket("Laptop", "created while psatriage was down")
    restarted = harness.runtime()
    try:
        assert restarted.polls.get(TENANT).mark == mark.mark  # type: ignore[union-attr]
        _make_due(restarted)
        assert jobs.poll_tenant(restarted, TENANT) == 1
        tickets = sorted(e.ticket_id for e in restarted.ledger.search())
        assert tickets == sorted([str(before), str(during)])
    finally:
        restarted.close()


def test_a_failing_poll_keeps_the_mark(harness: Harness, runtime: Runtime) -> None:
    assert jobs.poll_tenant(runtime, TENANT) == 0
    mark = runtime.polls.get(TENANT)
    harness.cw.fail("GET", r"/service/tickets$", 503)
    ticket = harness.cw.add_ticket("Printer", "paper jam")
    _make_due(runtime)
    assert jobs.poll_tenant(runtime, TENANT) == 0
    assert runtime.polls.get(TENANT).mark == mark.mark  # type: ignore[union-attr]
    _make_due(runtime)
    assert jobs.poll_tenant(runtime, TENANT) == 1
    assert runtime.ledger.search()[0].ticket_id == str(ticket)


def test_webhook_and_poll_for_one_ticket_make_one_decision(harness: Harness) -> None:
    harness.tenant.update({"trigger": "both"})
    runtime = harness.runtime()
    try:
        ticket = harness.cw.add_ticket("Printer", "paper jam")
        body, headers = harness.cw.callback(ticket)
        with TestClient(create_app(runtime)) as client:
            response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
        assert response.status_code == 202
        assert jobs.poll_tenant(runtime, TENANT) == 1
        results = []
        barrier = threading.Barrier(2)

        def work(event_id: int) -> None:
            barrier.wait()
            results.append(jobs.process_event(runtime, event_id))

        threads = [threading.Thread(target=work, args=(e.id,)) for e in runtime.ledger.search()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(str(r) for r in results) == sorted(["done", "ignored"])
        assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1
        assert len(runtime.decisions.search_decisions(ticket_id=str(ticket))) <= 2
        assert len([d for d in runtime.decisions.search_decisions() if d.final]) == 1
    finally:
        runtime.close()


def test_a_failed_event_lets_a_later_event_decide_the_ticket(
    harness: Harness, runtime: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer", "paper jam")
    harness.cw.fail("PATCH", rf"/service/tickets/{ticket}$", 404)
    first, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(ticket), "added", True, "a"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, first) is EventState.FAILED
    second, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(ticket), "added", True, "b"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, second) is EventState.DONE


def test_poll_only_tenants_take_no_webhooks(harness: Harness, runtime: Runtime) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
    with TestClient(create_app(runtime)) as client:
        response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 404
    assert runtime.ledger.search() == []


def test_a_worker_pool_polls_by_itself(harness: Harness, runtime: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
    pool = jobs.WorkerPool(runtime, workers=2).start()  # polls the tenant when it is due
    try:
        deadline = time.monotonic() + 120
        while not _finished(runtime, ticket):  # the ledger says the found ticket is done
            assert time.monotonic() < deadline, "the poll's event did not finish"
            time.sleep(0.05)
    finally:
        pool.stop(graceful=True)
    assert [row.state for row in runtime.ledger.search(ticket_id=str(ticket))] == ["done"]
    assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1


def test_polling_needs_an_adapter_that_can_poll() -> None:
    class Silent(PSAAdapter[Any]):  # only what the check looks at
        kind = "silent"

    assert not Silent.can_poll()
    assert adapters()["connectwise"].can_poll()


def test_trigger_must_be_known(harness: Harness) -> None:
    harness.tenant.update({"trigger": "carrier-pigeon"})
    with pytest.raises(ConfigError, match="key 'trigger'"):
        harness.runtime()
