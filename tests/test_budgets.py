"""Per-tenant model budgets, through the real runtime and the fake model server: a reached budget
records the tenant's tickets as over_budget without asking the model (an error note only when
``report_errors``), and ``/readyz`` and ``/metrics`` show the meter."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from psatriage import jobs
from psatriage.config import parse_config
from psatriage.domain import TicketEvent
from psatriage.errors import ConfigError
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.harness import TENANT, Harness

JAM = "My printer has a paper jam again"


def _ticket(runtime: Runtime, harness: Harness, key: str) -> tuple[int, int]:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event = TicketEvent(TENANT, str(ticket), "added", True, key)
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return ticket, event_id


def _ours(harness: Harness, ticket: int) -> list[str]:
    return [str(n["text"]) for n in harness.cw.notes(ticket) if "psatriage:" in str(n["text"])]


def test_a_daily_call_budget_stops_model_calls_and_notes_why_once(harness: Harness) -> None:
    runtime = harness.runtime(budget={"max_model_calls_per_day": 2})
    try:
        for n in range(2):
            _, event_id = _ticket(runtime, harness, f"k{n}")
            assert jobs.process_event(runtime, event_id) is EventState.DONE
        assert len(harness.llm.calls) == 2
        ticket, event_id = _ticket(runtime, harness, "k2")
        assert jobs.process_event(runtime, event_id) is EventState.OVER_BUDGET
        assert len(harness.llm.calls) == 2  # the model was not asked
        row = runtime.ledger.get(event_id)
        assert row is not None and row.reason == (
            "model budget reached: 2 of 2 model calls today "
            "(budget.max_model_calls_per_day, UTC day)"
        )
        assert harness.cw.patches(ticket) == []
        (note,) = _ours(harness, ticket)  # report_errors is on by default
        assert "model budget" in note
        # the ticket is free again: an operator may retry it once the budget allows
        assert runtime.ledger.reopen([event_id]) == [event_id]
        assert runtime.decisions.ticket_holder(TENANT, str(ticket)) is None
    finally:
        runtime.close()


def test_without_report_errors_an_over_budget_ticket_gets_no_note(harness: Harness) -> None:
    runtime = harness.runtime(
        budget={"max_model_calls_per_day": 1}, policy={"report_errors": False}
    )
    try:
        _, first = _ticket(runtime, harness, "k0")
        assert jobs.process_event(runtime, first) is EventState.DONE
        ticket, second = _ticket(runtime, harness, "k1")
        assert jobs.process_event(runtime, second) is EventState.OVER_BUDGET
        assert _ours(harness, ticket) == [] and len(harness.llm.calls) == 1
    finally:
        runtime.close()


def test_a_monthly_cost_budget_uses_the_price_table(harness: Harness) -> None:
    harness.tenant["classifier"]["prices"] = {"gpt-4o-mini": {"input": 1000.0, "output": 0.0}}
    runtime = harness.runtime(budget={"max_cost_per_month": 0.01})
    try:
        _, first = _ticket(runtime, harness, "k0")
        assert jobs.process_event(runtime, first) is EventState.DONE  # under: 0 spent before
        call = runtime.decisions.calls_for_event(first)[0]
        assert call.cost_usd >= 0.01  # about a hundred prompt tokens at $1,000 a million
        _, second = _ticket(runtime, harness, "k1")
        assert jobs.process_event(runtime, second) is EventState.OVER_BUDGET
        row = runtime.ledger.get(second)
        assert row is not None and "budget.max_cost_per_month" in row.reason
        assert len(harness.llm.calls) == 1
    finally:
        runtime.close()


def test_readyz_and_metrics_show_the_meter(harness: Harness) -> None:
    runtime = harness.runtime(budget={"max_model_calls_per_day": 1, "max_cost_per_month": 50})
    try:
        with TestClient(create_app(runtime)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200
            meter = ready.json()["budgets"][TENANT]
            assert meter["calls_today"] == 0 and meter["reached"] is None
            assert TENANT not in ready.json()["tenants"]

            _, event_id = _ticket(runtime, harness, "k0")
            assert jobs.process_event(runtime, event_id) is EventState.DONE
            ready = client.get("/readyz")
            assert ready.status_code == 200  # a spent budget is the tenant's, not the service's
            body = ready.json()
            assert body["budgets"][TENANT]["calls_today"] == 1
            assert body["budgets"][TENANT]["max_model_calls_per_day"] == 1
            assert body["budgets"][TENANT]["cost_this_month"] > 0
            assert body["tenants"][TENANT] == [body["budgets"][TENANT]["reached"]]

            text = client.get("/metrics").text
            labels = f'budget="model_calls_per_day",tenant="{TENANT}"'
            assert f"psatriage_budget_used{{{labels}}} 1.0" in text
            assert f"psatriage_budget_limit{{{labels}}} 1.0" in text
            assert f'psatriage_budget_limit{{budget="cost_per_month",tenant="{TENANT}"}} 50.0' in (
                text
            )
            assert f'psatriage_over_budget{{tenant="{TENANT}"}} 1.0' in text
    finally:
        runtime.close()


def test_budget_values_are_checked_when_the_file_loads(harness: Harness) -> None:
    tenant = {
        **harness.tenant,
        "budget": {"max_model_calls_per_day": 0, "max_cost_per_month": -1, "max_calls": 3},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config({"tenants": {TENANT: tenant}})
    message = str(caught.value)
    assert "budget.max_model_calls_per_day" in message
    assert "budget.max_cost_per_month" in message
    assert "budget.max_calls" in message
