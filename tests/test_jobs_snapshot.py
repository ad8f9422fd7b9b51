"""One read per ConnectWise ticket: an ``added`` callback's ``Entity`` is kept with its event and
stands in for ``GET service/tickets/{id}`` (the notes are still read: the description lives in
the first one), unless the ticket may have changed since. Counted at the fake, through the real
runtime."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from psatriage import jobs
from psatriage.errors import CallLimitReached
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from tests.harness import TENANT, Harness

JAM = "My printer has a paper jam again"


@pytest.fixture
def service(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


def _deliver(runtime: Runtime, harness: Harness, ticket: int, action: str = "added") -> int:
    """What the webhook edge does with a callback: parse it and record it in the ledger."""
    body, _ = harness.cw.callback(ticket, action=action)
    event = runtime.adapter(TENANT).parse(body)
    assert event is not None
    state = EventState.RECEIVED if event.actionable else EventState.IGNORED
    event_id, created = runtime.ledger.record(event, state=state)
    assert created
    return event_id


def _reads(harness: Harness, ticket: int) -> tuple[int, int]:
    """``(GET of the ticket, GET of its notes)`` the fake answered."""
    tickets = harness.cw.requests_to(rf"/service/tickets/{ticket}$", "GET")
    notes = harness.cw.requests_to(rf"/service/tickets/{ticket}/notes$", "GET")
    return len(tickets), len(notes)


def test_an_added_callback_costs_one_read_and_two_writes(
    harness: Harness, service: Runtime
) -> None:
    warm = harness.cw.add_ticket("Printer broken", JAM)  # the taxonomy is read and cached once
    assert jobs.process_event(service, _deliver(service, harness, warm)) is EventState.DONE
    ticket = harness.cw.add_ticket("Printer on floor 3", JAM)
    event_id = _deliver(service, harness, ticket)
    row = service.ledger.get(event_id)
    assert (
        row is not None
        and row.snapshot is not None
        and row.snapshot["summary"] == ("Printer on floor 3")
    )
    before = len(harness.cw.requests)
    assert jobs.process_event(service, event_id) is EventState.DONE
    assert _reads(harness, ticket) == (0, 1)
    assert len(harness.cw.patches(ticket)) == 1
    assert len([n for n in harness.cw.notes(ticket) if "psatriage:" in str(n["text"])]) == 1
    assert len(harness.cw.requests) - before == 3  # GET notes, PATCH, POST note
    decision = service.decisions.decision_for_event(event_id)
    assert decision is not None and decision.ticket_id == str(ticket)


def test_a_later_event_about_the_ticket_makes_it_read_again(
    harness: Harness, service: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _deliver(service, harness, ticket)
    # a person sets the category before a worker gets to the event; ConnectWise calls back
    harness.cw.tickets[ticket]["type"] = {"id": 11, "name": "Software"}
    harness.cw.tickets[ticket]["subType"] = {"id": 22, "name": "Email"}
    _deliver(service, harness, ticket, action="updated")
    assert jobs.process_event(service, event_id) is EventState.KEPT  # not the stale snapshot
    assert _reads(harness, ticket) == (1, 1)
    assert harness.cw.patches(ticket) == []


def test_a_retry_reads_the_ticket_again(harness: Harness) -> None:
    runtime = harness.runtime(harness.settings(max_attempts=3))
    harness.llm.fail("POST", "chat/completions", 500, times=1)
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _deliver(runtime, harness, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.RETRYING
    assert _reads(harness, ticket) == (0, 1)
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert _reads(harness, ticket)[0] == 1  # an earlier attempt may have written to it
    assert len(harness.cw.patches(ticket)) == 1
    runtime.close()


def test_a_polled_ticket_is_read_in_full(harness: Harness, service: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    body, _ = harness.cw.callback(ticket)
    event = service.adapter(TENANT).parse(body)
    assert event is not None and event.snapshot is not None
    event_id, _ = service.ledger.record(replace(event, snapshot=None), state=EventState.RECEIVED)
    assert jobs.process_event(service, event_id) is EventState.DONE
    assert _reads(harness, ticket) == (1, 1)


def test_a_wait_for_the_call_limit_after_the_write_writes_nothing_twice(
    harness: Harness, service: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The category is written, then our call limit stops the note: the event waits its turn
    without spending an attempt, and the next claim must not trust the snapshot (taken before
    our write) nor skip looking for the note."""
    adapter = service.adapter(TENANT)
    add_note = adapter.add_note
    waits = iter([CallLimitReached("client-side limit reached", retry_after=0.1)])

    def limited_add_note(*args: Any, **kwargs: Any) -> Any:
        wait = next(waits, None)
        if wait is not None:
            raise wait
        return add_note(*args, **kwargs)

    monkeypatch.setattr(adapter, "add_note", limited_add_note)
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _deliver(service, harness, ticket)
    assert jobs.process_event(service, event_id) is EventState.RETRYING
    row = service.ledger.get(event_id)
    assert row is not None and (row.attempts, row.claims) == (0, 1)  # the wait spent no attempt
    assert len(harness.cw.patches(ticket)) == 1
    assert jobs.process_event(service, event_id) is EventState.DONE
    assert _reads(harness, ticket)[0] == 1  # the ticket as it is, with our category on it
    assert len(harness.cw.patches(ticket)) == 1
    assert len([n for n in harness.cw.notes(ticket) if "psatriage:" in str(n["text"])]) == 1
    row = service.ledger.get(event_id)
    assert row is not None and (row.attempts, row.claims) == (1, 2)
