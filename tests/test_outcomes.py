"""The outcome sweep on every PSA, through its HTTP fake: a technician's change becomes a
correction, a person's category where we suggested becomes a fill (closing the review), a
closed ticket settles, a deleted one is gone; update notifications make a ticket due; the sweep
stays below new tickets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from psatriage import jobs, outcomes
from psatriage.domain import TicketEvent
from psatriage.store.examples import list_examples
from psatriage.store.tables import EventState, OutcomeRow, utcnow
from psatriage.web import create_app
from tests.loop_kit import PSAS, Loop, open_loop


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    yield from open_loop(tmp_path_factory.mktemp("outcomes"))


@pytest.fixture
def confident(loop: Loop) -> Iterator[None]:
    """The model answers above apply_at: the category is written."""
    loop.llm.category_probability = 0.99
    yield
    loop.llm.category_probability = 0.6


def _outcome(loop: Loop, psa: str, ticket: str) -> OutcomeRow:
    (row,) = [r for r in loop.runtime.outcomes.search(tenant=psa) if r.ticket_id == ticket]
    return row


def _sweep(loop: Loop, psa: str) -> outcomes.Swept:
    swept = outcomes.sweep(loop.runtime, psa, force=True)
    assert swept is not None and not swept.skipped and not swept.stopped, swept
    return swept


def _decide(loop: Loop, psa: str) -> str:
    kit = loop.kits[psa]
    ticket = kit.new_ticket("Printer on floor 3", "My printer has a paper jam")
    event = TicketEvent(psa, ticket, "created", True, f"outcome:{ticket}")
    event_id, _ = loop.runtime.ledger.record(event, state=EventState.RECEIVED)
    assert jobs.process_event(loop.runtime, event_id) is EventState.DONE
    return ticket


def _examples(loop: Loop, psa: str, ticket: str) -> list[tuple[str, str]]:
    found = list_examples(loop.runtime.sessions, tenant=psa)
    return [(e.source, e.category_key) for e in found if e.ticket_id == ticket]


@pytest.mark.parametrize("psa", PSAS)
def test_a_technicians_change_becomes_a_correction(loop: Loop, psa: str, confident: None) -> None:
    ticket = _decide(loop, psa)
    kit = loop.kits[psa]
    opened = _outcome(loop, psa, ticket)
    assert (opened.state, opened.decision_outcome, opened.wrote) == ("pending", "applied", True)
    assert opened.band == "apply" and opened.engine == "openai" and opened.chosen_key
    assert opened.next_check_at > utcnow() + timedelta(hours=23)  # not due before a day
    adapter = loop.runtime.adapter(psa)
    person = loop.other_leaf(psa, ticket, opened.chosen_key)
    adapter.set_category(adapter.get_ticket(ticket), person)  # the technician, in the PSA
    if kit.touch is not None:
        kit.touch(ticket, "4")
    assert loop.runtime.outcomes.make_due(psa, ticket) == 1  # the PSA's update notification
    _sweep(loop, psa)
    row = _outcome(loop, psa, ticket)
    assert (row.state, row.matches, row.changed_by_kind) == ("corrected", False, "person")
    assert (row.final_key, row.final_label) == (person.key, person.label)
    assert row.changed_by == ("4" if kit.touch is not None else "")
    assert not row.settled and row.checks == 1
    assert _examples(loop, psa, ticket) == [("correction", person.key)]


@pytest.mark.parametrize("psa", PSAS)
def test_a_category_a_person_set_where_we_suggested_is_a_fill(loop: Loop, psa: str) -> None:
    ticket, review = loop.suggest(psa)
    adapter = loop.runtime.adapter(psa)
    person = loop.other_leaf(psa, ticket, review.category_key.split("+")[0])
    adapter.set_category(adapter.get_ticket(ticket), person)
    loop.runtime.outcomes.make_due(psa, ticket)
    _sweep(loop, psa)
    row = _outcome(loop, psa, ticket)
    assert (row.state, row.matches, row.final_key) == ("filled", False, person.key)
    closed = loop.runtime.reviews.get(review.id)
    assert closed is not None and (closed.state, closed.closed_by) == ("filled", "psa")
    assert _examples(loop, psa, ticket) == [("fill", person.key)]


@pytest.mark.parametrize("psa", PSAS)
def test_agreed_then_closed_then_settled_and_a_deleted_ticket_is_gone(
    loop: Loop, psa: str, confident: None
) -> None:
    kit = loop.kits[psa]
    assert kit.close is not None and kit.delete is not None
    kept, deleted = _decide(loop, psa), _decide(loop, psa)
    kit.close(kept)
    kit.delete(deleted)
    for ticket in (kept, deleted):
        loop.runtime.outcomes.make_due(psa, ticket)
    _sweep(loop, psa)
    row = _outcome(loop, psa, kept)
    assert (row.state, row.matches, row.changed_by_kind, row.closed) == ("agreed", True, "us", True)
    assert not row.settled and row.next_check_at > utcnow() + timedelta(days=6)
    gone = _outcome(loop, psa, deleted)
    assert (gone.state, gone.settled) == ("gone", True)
    with loop.runtime.sessions.begin() as session:  # a week later
        session.execute(update(OutcomeRow).where(OutcomeRow.id == row.id).values(
            next_check_at=utcnow()))  # fmt: skip
    _sweep(loop, psa)
    assert _outcome(loop, psa, kept).settled
    assert _examples(loop, psa, kept) == []


@pytest.mark.parametrize("psa", PSAS)
def test_an_update_notification_makes_the_ticket_due(loop: Loop, psa: str) -> None:
    ticket, _ = loop.suggest(psa)
    kit = loop.kits[psa]
    with TestClient(create_app(loop.runtime)) as client:
        body, headers = kit.updated(ticket)
        answer = client.post(f"/webhooks/{psa}{kit.webhook_path_suffix}", content=body,
                             headers=headers)  # fmt: skip
    assert answer.status_code == 202 and answer.json()["status"] == "ignored", answer.text
    assert _outcome(loop, psa, ticket).next_check_at <= utcnow()


def test_the_sweep_waits_for_new_tickets_and_keeps_the_window_for_them(loop: Loop) -> None:
    psa = "connectwise"
    ticket, _ = loop.suggest(psa)
    loop.runtime.outcomes.make_due(psa, ticket)
    waiting = TicketEvent(psa, "424242", "created", True, "waiting-new-ticket")
    event_id, _ = loop.runtime.ledger.record(waiting, state=EventState.RECEIVED)
    swept = outcomes.sweep(loop.runtime, psa, force=True)
    assert swept is not None and swept.skipped == "new tickets of the tenant are waiting"
    assert swept.read == 0
    loop.runtime.ledger.finish(loop.runtime.ledger.claim(event_id, lease_seconds=60),  # type: ignore[arg-type]
                               EventState.FAILED, "test")  # fmt: skip
    limits = loop.runtime.adapter(psa).client.limits  # type: ignore[attr-defined]
    for _ in range(int(limits.window.limit * 0.5)):  # half the window used by new tickets
        limits.window.acquire("")
    swept = outcomes.sweep(loop.runtime, psa, force=True)
    assert swept is not None and swept.stopped == "the PSA call window is kept for new tickets"
    assert _outcome(loop, psa, ticket).checks == 0


def test_one_process_sweeps_a_tenant_per_interval(loop: Loop) -> None:
    assert loop.runtime.sweeps.claim("halopsa", 900) in {True, False}
    assert outcomes.sweep(loop.runtime, "halopsa") is None  # claimed just now
    assert outcomes.sweep(loop.runtime, "nobody") is None


def test_where_the_psa_counts_per_endpoint_the_sweep_keeps_room_on_its_endpoint(
    loop: Loop,
) -> None:
    psa = "kaseya_bms"  # last: it leaves this endpoint's window half full
    ticket, _ = loop.suggest(psa)
    loop.runtime.outcomes.make_due(psa, ticket)
    adapter = loop.runtime.adapter(psa)
    limits = adapter.client.limits  # type: ignore[attr-defined]
    assert limits.per_endpoint and adapter.state_endpoint == "GET v2/servicedesk/tickets/{id}"
    for _ in range(int(limits.window.limit * 0.5) - limits.used(adapter.state_endpoint)):
        limits.window.acquire(adapter.state_endpoint)
    swept = outcomes.sweep(loop.runtime, psa, force=True)
    assert swept is not None and swept.stopped == "the PSA call window is kept for new tickets"
    assert _outcome(loop, psa, ticket).checks == 0
