"""Decisions and their model calls on real SQLite and PostgreSQL: one automatic decision per
ticket until its event fails, and every call logged against its event."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection

from psatriage.domain import Chosen, ModelCall, Outcome, TicketEvent
from psatriage.store import db
from psatriage.store.decisions import AlreadyDecided, Decisions
from psatriage.store.ledger import Ledger
from psatriage.store.tables import EventState
from psatriage.store.usage import Usage
from tests.fakes.inprocess import TREE, answer


@dataclass
class Store:
    ledger: Ledger
    decisions: Decisions
    usage: Usage

    def event(self, key: str, ticket: str = "69") -> int:
        event = TicketEvent("acme", ticket, "created", True, key)
        return self.ledger.record(event, state=EventState.RECEIVED)[0]

    def decide(
        self,
        event_id: int,
        *,
        once: bool = True,
        ticket: str = "69",
        calls: tuple[ModelCall, ...] = (),
    ) -> int:
        leaf = TREE.leaves[0]
        return self.decisions.start_decision(
            event_id=event_id,
            tenant="acme",
            ticket_id=ticket,
            company_id=None,
            previous="",
            chosen=Chosen(leaf, (), TREE.levels),
            classification=answer(leaf.key),
            once_per_ticket=once,
            redactions={"email": 1},
            calls=calls,
            usage=self.usage,
        ).id


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    yield Store(Ledger(engine, sessions), Decisions(sessions), Usage(engine))
    engine.dispose()


def _call(event_id: int, error: str | None = None) -> ModelCall:
    return ModelCall(
        tenant="acme",
        ticket_id="69",
        event_id=event_id,
        engine="openai",
        model="gpt-4o-mini",
        template_hash="t",
        taxonomy_hash=TREE.fingerprint,
        tokens_in=10,
        tokens_out=2,
        latency_ms=5.0,
        cost_usd=0.25,
        chosen_key=None if error else "10/20/30",
        confidence=None,
        error=error,
        redactions={"phone": 2} if error else {},
    )


def test_a_checkpoint_holds_what_was_decided_until_it_is_finalized(store: Store) -> None:
    event_id = store.event("a")
    decision_id = store.decide(event_id)
    row = store.decisions.decision_for_event(event_id)
    assert row is not None and row.id == decision_id and not row.final
    assert (
        row.category_key == "10/20/30" and row.tokens_in == 120 and row.redactions == {"email": 1}
    )
    assert Chosen.from_dict(row.category or {}).category.key == "10/20/30"
    store.decisions.finalize_decision(
        decision_id, outcome=Outcome.APPLIED, reason="ok", wrote_category=True, wrote_note=True
    )
    row = store.decisions.decision_for_event(event_id)
    assert row is not None and row.final and row.outcome == "applied" and row.wrote_note


def test_one_automatic_decision_per_ticket_until_its_event_fails(store: Store) -> None:
    first = store.event("webhook")
    store.decide(first)
    holder = store.decisions.ticket_holder("acme", "69")
    assert holder is not None and holder.event_id == first
    second = store.event("poll")
    with pytest.raises(AlreadyDecided) as caught:
        store.decide(second)
    assert caught.value.event_id == first
    assert store.decisions.decision_for_event(second) is None
    store.decide(store.event("cli"), once=False)  # a manual run does not claim the ticket
    store.decisions.release_ticket(first)  # the first event failed: others may decide
    assert store.decisions.ticket_holder("acme", "69") is None
    store.decide(second)
    holder = store.decisions.ticket_holder("acme", "69")
    assert holder is not None and holder.event_id == second


def test_model_calls_are_logged_against_their_event(store: Store) -> None:
    event_id = store.event("a")
    for error in (None, "refused"):
        store.decisions.record_call(_call(event_id, error))
    calls = store.decisions.calls_for_event(event_id)
    assert [(c.chosen_key, c.error, c.redactions) for c in calls] == [
        ("10/20/30", None, None),
        (None, "refused", {"phone": 2}),
    ]
    assert store.decisions.calls_for_event(event_id + 1) == []


def test_the_calls_behind_a_checkpoint_are_recorded_and_counted_with_it(store: Store) -> None:
    first = store.event("webhook")
    store.decide(first, calls=(_call(first, "refused"), _call(first)))
    assert [c.error for c in store.decisions.calls_for_event(first)] == ["refused", None]
    assert store.usage.spent("acme").calls_today == 2
    # a checkpoint refused (another event holds the ticket) records none of its calls:
    # the caller records them on their own
    second = store.event("poll")
    with pytest.raises(AlreadyDecided):
        store.decide(second, calls=(_call(second),))
    assert store.decisions.calls_for_event(second) == []
    assert store.usage.spent("acme").calls_today == 2


def test_checkpoint_and_holder_in_one_look(store: Store) -> None:
    assert store.decisions.checkpoint_and_holder(1, "acme", "69") == (None, None)
    first = store.event("webhook")
    decided = store.decide(first)
    checkpoint, holder = store.decisions.checkpoint_and_holder(first, "acme", "69")
    assert checkpoint is not None and checkpoint.id == decided and holder is None
    second = store.event("poll")
    checkpoint, holder = store.decisions.checkpoint_and_holder(second, "acme", "69")
    assert checkpoint is None and holder is not None and holder.event_id == first
    assert store.decisions.checkpoint_and_holder(second, "acme", "70") == (None, None)


def test_what_runs_with_the_finalize_commits_or_rolls_back_with_it(store: Store) -> None:
    event_id = store.event("a")
    (claim,) = store.ledger.claim_turns([("acme", 1)], lease_seconds=60)
    decision_id = store.decide(event_id)

    def fail(connection: Connection) -> None:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        store.decisions.finalize_decision(
            decision_id, outcome="applied", reason="ok", wrote_category=True, wrote_note=True,
            then=fail,
        )  # fmt: skip
    row = store.decisions.decision_for_event(event_id)
    assert row is not None and not row.final  # rolled back: a retry resumes the checkpoint
    closed: list[bool] = []

    def close(connection: Connection) -> None:
        closed.append(store.ledger.finish(claim, EventState.DONE, "ok", connection=connection))

    store.decisions.finalize_decision(
        decision_id, outcome="applied", reason="ok", wrote_category=True, wrote_note=True,
        then=close,
    )  # fmt: skip
    row = store.decisions.decision_for_event(event_id)
    event = store.ledger.get(event_id)
    assert closed == [True] and row is not None and row.final
    assert event is not None and event.state == EventState.DONE.value


def test_search_filters_by_ticket_and_outcome_newest_first(store: Store) -> None:
    ids = [store.decide(store.event(f"k{n}", ticket=str(n)), ticket=str(n)) for n in range(3)]
    store.decisions.finalize_decision(
        ids[1], outcome=Outcome.KEPT, reason="", wrote_category=False, wrote_note=False
    )
    assert [d.id for d in store.decisions.search_decisions()] == ids[::-1]
    assert [d.id for d in store.decisions.search_decisions(ticket_id="2")] == [ids[2]]
    assert [d.id for d in store.decisions.search_decisions(outcome="kept")] == [ids[1]]
    assert [d.id for d in store.decisions.search_decisions(before_id=ids[2], limit=1)] == [ids[1]]
