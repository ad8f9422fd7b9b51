"""Retention: old ticket-derived text blanked, old records deleted with their counts kept in the
daily totals, on SQLite and PostgreSQL; once per interval from housekeeping however many
processes ask; ``psatriage purge`` and its bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from psatriage import retention
from psatriage.cli import app
from psatriage.domain import ModelCall, TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import (
    DecisionRow,
    EventRow,
    EventState,
    ModelCallRow,
    OutcomeRow,
    ReviewRow,
    utcnow,
)
from tests.harness import TENANT, Harness

runner = CliRunner()


def _decided(runtime: Runtime, ticket: str, *, days_ago: int, outcome: str = "applied") -> int:
    """An event, its finished decision (with reasoning) and one model call, ``days_ago`` old."""
    event = TicketEvent(TENANT, ticket, "created", True, f"test:{ticket}")
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    row = runtime.decisions.start_decision(
        event_id=event_id,
        tenant=TENANT,
        ticket_id=ticket,
        company_id=None,
        previous="",
        chosen=None,
        classification=None,
        reason="why",
    )
    runtime.decisions.record_call(
        ModelCall(
            tenant=TENANT,
            ticket_id=ticket,
            event_id=event_id,
            engine="openai",
            model="gpt-4o-mini",
            template_hash="t",
            taxonomy_hash="x",
            tokens_in=100,
            tokens_out=10,
            cost_usd=0.5,
            latency_ms=10.0,
            chosen_key=None,
            confidence=None,
            error="the model said: the printer of Jane Doe",
        )
    )
    then = utcnow() - timedelta(days=days_ago)
    with runtime.sessions.begin() as session:
        session.execute(
            update(EventRow)
            .where(EventRow.id == event_id)
            .values(state="done", received_at=then, reason="done: Jane's printer")
        )
        session.execute(
            update(DecisionRow)
            .where(DecisionRow.id == row.id)
            .values(created_at=then, reasoning="Jane Doe's printer jams", outcome=outcome)
        )
        session.execute(
            update(ModelCallRow).where(ModelCallRow.event_id == event_id).values(created_at=then)
        )
    return event_id


def _reviewed(runtime: Runtime, event_id: int, *, state: str, outcome: str) -> None:
    """A review (in ``state``) and an outcome (``outcome``) of the event's decision, as old."""
    decision = runtime.decisions.decision_for_event(event_id)
    assert decision is not None
    with runtime.sessions.begin() as session:
        session.add(
            ReviewRow(
                decision_id=decision.id,
                tenant=TENANT,
                ticket_id=decision.ticket_id,
                title="Jane's printer",
                excerpt="Jane Doe says the printer jams",
                category_key="8/1",
                category={},
                state=state,
                created_at=decision.created_at,
            )
        )
        session.add(
            OutcomeRow(
                decision_id=decision.id,
                tenant=TENANT,
                ticket_id=decision.ticket_id,
                decision_outcome="suggested",
                state=outcome,
                decided_at=decision.created_at,
            )
        )


def _count(runtime: Runtime, table: type) -> int:
    with runtime.sessions() as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def runtime(harness: Harness, database_url: str) -> Runtime:
    harness.tenant.update(retention_days=30, record_retention_days=90)
    built = harness.runtime(harness.settings(database_url=database_url))
    yield built  # type: ignore[misc]
    built.close()


def test_old_text_is_blanked_and_old_records_deleted_with_counts_kept(runtime: Runtime) -> None:
    recent = _decided(runtime, "1", days_ago=1)
    middle = _decided(runtime, "2", days_ago=40)
    oldest = _decided(runtime, "3", days_ago=100, outcome="suggested")
    _decided(runtime, "4", days_ago=100)
    _reviewed(runtime, oldest, state="accepted", outcome="agreed")
    _reviewed(runtime, middle, state="dismissed", outcome="corrected")
    _reviewed(runtime, recent, state="pending", outcome="pending")
    tenant = runtime.tenant(TENANT)

    dry = retention.purge(runtime.sessions, tenant, dry_run=True)
    assert dry.deleted == {
        "events": 2,
        "decisions": 2,
        "model calls": 2,
        "outcomes": 1,
        "reviews": 1,
    }
    assert _count(runtime, EventRow) == 4  # nothing changed

    done = retention.purge(runtime.sessions, tenant)

    assert done.deleted == dry.deleted and done.blanked == dry.blanked
    assert done.blanked["decisions"] == 1 and done.blanked["model calls"] == 1
    assert done.blanked["reviews"] == 1  # the closed one; the pending one waits for a person
    with runtime.sessions() as session:
        texts = {
            r.state: (r.title, r.excerpt) for r in session.execute(select(ReviewRow)).scalars()
        }
    assert texts == {"dismissed": ("", ""), "pending": ("Jane's printer", texts["pending"][1])}
    assert _count(runtime, EventRow) == _count(runtime, DecisionRow) == 2
    kept = runtime.decisions.decision_for_event(recent)
    old = runtime.decisions.decision_for_event(middle)
    assert kept is not None and kept.reasoning == "Jane Doe's printer jams"
    assert old is not None and old.reasoning == ""  # the row stays, its text goes
    event = runtime.ledger.get(middle)
    assert event is not None and event.reason == "" and event.state == "done"
    assert runtime.decisions.calls_for_event(middle)[0].error is None
    totals = retention.daily_totals(runtime.sessions, TENANT)
    assert totals == {
        "events:done": 2,
        "decisions:applied": 1,
        "decisions:suggested": 1,
        "model_calls": 2,
        "outcomes:agreed": 1,
        "reviews:accepted": 1,
        "tokens_in": 200,
        "tokens_out": 20,
        "cost_usd": 1.0,
    }
    again = retention.purge(runtime.sessions, tenant)
    assert not again.deleted and not again.blanked
    assert again.describe(dry_run=False) == "acme: nothing purged"


def test_housekeeping_purges_once_per_interval(runtime: Runtime) -> None:
    _decided(runtime, "1", days_ago=100)
    tenants = runtime.config.tenants.values()
    first = retention.purge_due(runtime.engine, runtime.sessions, tenants, 3600)
    assert [p.deleted["events"] for p in first] == [1]
    _decided(runtime, "2", days_ago=100)
    assert retention.purge_due(runtime.engine, runtime.sessions, tenants, 3600) == []
    assert _count(runtime, EventRow) == 1  # its turn comes in an hour


def test_purge_command_and_its_bad_input(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    config = harness.write_config()
    for key, value in harness.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(config))
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(harness.root / "data"))

    unset = runner.invoke(app, ["purge"])
    assert unset.exit_code == 2
    assert unset.output.strip() == (
        "error: no tenant sets retention_days or record_retention_days, so there is nothing to "
        "purge; fix: set them in the tenants file (docs/operations.md, Data lifecycle)"
    )
    assert len(unset.output.strip().splitlines()) == 1
    unknown = runner.invoke(app, ["purge", "-t", "nobody"])
    assert unknown.exit_code == 2 and "no tenant named 'nobody'" in unknown.output

    harness.tenant.update(retention_days=30)
    harness.write_config()
    dry = runner.invoke(app, ["purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.strip() == "acme: nothing to purge"
    only = runner.invoke(app, ["purge", "-t", TENANT])
    assert only.exit_code == 0 and only.stdout.strip() == "acme: nothing purged"


def test_reviews_and_outcomes_go_with_their_decisions(runtime: Runtime) -> None:
    events = [_decided(runtime, "1", days_ago=40), _decided(runtime, "2", days_ago=100)]
    with runtime.sessions.begin() as session:
        for event_id in events:
            decision = session.execute(
                select(DecisionRow).where(DecisionRow.event_id == event_id)
            ).scalar_one()
            session.add(
                ReviewRow(
                    decision_id=decision.id,
                    tenant=TENANT,
                    ticket_id=decision.ticket_id,
                    title="Printer of Jane",
                    excerpt="It jams",
                    category_key="1",
                    category={},
                    created_at=decision.created_at,
                )
            )
            session.add(
                OutcomeRow(
                    decision_id=decision.id,
                    tenant=TENANT,
                    ticket_id=decision.ticket_id,
                    decision_outcome="suggested",
                )
            )
    done = retention.purge(runtime.sessions, runtime.tenant(TENANT))
    assert done.deleted["decisions"] == 1 and done.blanked["reviews"] == 1
    assert _count(runtime, ReviewRow) == _count(runtime, OutcomeRow) == 1
    (review,) = runtime.reviews.search(state=None)
    assert (review.title, review.excerpt) == ("", "")
