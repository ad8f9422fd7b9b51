"""The pipeline through the real worker entry point, against the ConnectWise and OpenAI fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from psatriage import jobs, pipeline
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import DecisionRow, EventRow, EventState, ModelCallRow
from tests.harness import TENANT, Harness

JAM = "My printer has a paper jam again"


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


def _event(runtime: Runtime, ticket_id: int, key: str | None = None) -> int:
    event = TicketEvent(TENANT, str(ticket_id), "added", True, key or f"m-{ticket_id}")
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return event_id


def _ours(harness: Harness, ticket_id: int) -> list[dict[str, Any]]:
    return [n for n in harness.cw.notes(ticket_id) if "psatriage:" in n["text"]]


def _decision(runtime: Runtime, event_id: int) -> DecisionRow:
    row = runtime.decisions.decision_for_event(event_id)
    assert row is not None
    return row


def _calls(runtime: Runtime) -> list[ModelCallRow]:
    with runtime.sessions() as session:
        return list(session.execute(select(ModelCallRow).order_by(ModelCallRow.id)).scalars())


def test_applied_writes_one_patch_and_one_internal_note(harness: Harness, runtime: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert harness.cw.patches(ticket) == [
        [
            {"op": "replace", "path": "type", "value": {"id": 10}},
            {"op": "replace", "path": "subType", "value": {"id": 20}},
            {"op": "replace", "path": "item", "value": {"id": 30}},
        ]
    ]
    (note,) = _ours(harness, ticket)
    assert note["internalAnalysisFlag"] is True
    assert note["detailDescriptionFlag"] is False
    assert note["processNotifications"] is False
    decision = _decision(runtime, event_id)
    assert "Hardware › Printer › Paper jam" in note["text"]
    assert f"[psatriage:{decision.id}]" in note["text"]
    assert "Confidence: 92%" in note["text"]
    assert decision.outcome == "applied" and decision.final
    assert decision.wrote_category and decision.wrote_note
    assert decision.confidence_source == "logprobs"
    (call,) = _calls(runtime)
    assert call.event_id == event_id and call.chosen_key == "10/20/30" and call.tokens_in > 0
    prompt = harness.llm.calls[0]["messages"]
    assert JAM in prompt[1]["content"]
    assert "10/20/30: Hardware › Printer › Paper jam" in prompt[0]["content"]


def test_taxonomy_is_read_once_then_cached(harness: Harness, runtime: Runtime) -> None:
    for n in range(3):
        ticket = harness.cw.add_ticket(f"Printer {n}", JAM)
        assert jobs.process_event(runtime, _event(runtime, ticket)) is EventState.DONE
    assert len(harness.cw.requests_to(r"/boards/1/typeSubTypeItemAssociations")) == 1


def test_low_confidence_is_suggested_not_written(harness: Harness, runtime: Runtime) -> None:
    harness.llm.category_probability = 0.3
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert harness.cw.patches(ticket) == []
    (note,) = _ours(harness, ticket)
    assert note["text"].startswith(
        "psatriage suggests the category: Hardware › Printer › Paper jam"
    )
    decision = _decision(runtime, event_id)
    assert decision.outcome == "suggested" and "below 0.50" in decision.reason


@pytest.mark.parametrize(("mode", "notes"), [("suggest", 1), ("shadow", 0)])
def test_suggest_and_shadow_modes(harness: Harness, mode: str, notes: int) -> None:
    runtime = harness.runtime(policy={"mode": mode})
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert harness.cw.patches(ticket) == []
    assert len(_ours(harness, ticket)) == notes
    assert _decision(runtime, event_id).outcome == (
        "suggested" if mode == "suggest" else "shadowed"
    )
    runtime.close()


def test_category_set_by_a_person_is_kept_without_asking_the_model(
    harness: Harness, runtime: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM, type_id=11, subtype_id=22)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.KEPT
    assert harness.cw.patches(ticket) == [] and _ours(harness, ticket) == []
    assert harness.llm.calls == []
    assert "Software › Email" in _decision(runtime, event_id).reason


def test_psa_default_type_is_replaced_when_policy_allows(harness: Harness) -> None:
    runtime = harness.runtime(policy={"overwrite": "defaults"})
    ticket = harness.cw.add_ticket("Printer broken", JAM, type_id=14)  # "Triage", the default
    assert jobs.process_event(runtime, _event(runtime, ticket)) is EventState.DONE
    assert len(harness.cw.patches(ticket)) == 1
    runtime.close()


def test_company_overrides_model_and_policy(harness: Harness) -> None:
    runtime = harness.runtime(
        companies={
            "contoso ltd": {
                "ai_model_ticket_cat": "gpt-4o",
                "ticket_cat_max_tokens": 123,
                "instructions": "Contoso printers are leased.",
                "policy": {"mode": "suggest"},
            }
        }
    )
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    assert jobs.process_event(runtime, _event(runtime, ticket)) is EventState.DONE
    call = harness.llm.calls[0]
    assert call["model"] == "gpt-4o"
    assert call["max_tokens"] == 123
    assert "Contoso printers are leased." in call["messages"][0]["content"]
    assert harness.cw.patches(ticket) == [] and len(_ours(harness, ticket)) == 1
    runtime.close()


def test_invalid_answers_fail_with_one_error_note_per_ticket(
    harness: Harness, runtime: Runtime
) -> None:
    harness.llm.script("invalid_key", "garbage", "invalid_key", "invalid_key")
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    first = _event(runtime, ticket, "a")
    assert jobs.process_event(runtime, first) is EventState.FAILED
    second = _event(runtime, ticket, "b")
    assert jobs.process_event(runtime, second) is EventState.FAILED
    assert harness.cw.patches(ticket) == []
    (note,) = _ours(harness, ticket)
    assert "could not categorize" in note["text"] and note["internalAnalysisFlag"] is True
    row = runtime.ledger.get(first)
    assert row is not None and "not" in row.reason
    assert [c.error is not None for c in _calls(runtime)] == [True] * 4


def test_no_error_note_when_the_tenant_did_not_ask(harness: Harness) -> None:
    runtime = harness.runtime(policy={"report_errors": False})
    harness.llm.script("refusal", "refusal")
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    assert jobs.process_event(runtime, _event(runtime, ticket)) is EventState.FAILED
    assert _ours(harness, ticket) == []
    runtime.close()


def test_rejected_write_refreshes_the_taxonomy_then_fails(
    harness: Harness, runtime: Runtime
) -> None:
    warm = harness.cw.add_ticket("Printer broken", JAM)
    assert jobs.process_event(runtime, _event(runtime, warm)) is EventState.DONE
    board = harness.cw.boards[1]
    board.associations = [a for a in board.associations if (a["item"] or {}).get("id") != 30]
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.FAILED
    row = runtime.ledger.get(event_id)
    assert row is not None
    assert "no longer in the category tree" in row.reason
    assert len(harness.cw.requests_to(r"/boards/1/typeSubTypeItemAssociations")) == 2
    assert len(harness.cw.patches(ticket)) == 1  # one attempt; an invalid category never sticks
    assert "type" not in harness.cw.tickets[ticket]


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


def test_psa_outage_while_writing_the_note_resumes_without_asking_again(
    harness: Harness, runtime: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    harness.cw.fail("POST", rf"/service/tickets/{ticket}/notes", 503, headers={"Retry-After": "1"})
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.RETRYING
    assert len(harness.cw.patches(ticket)) == 1
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert len(harness.cw.patches(ticket)) == 1  # the category was already there
    assert len(_ours(harness, ticket)) == 1
    assert len(harness.llm.calls) == 1  # the checkpointed decision was reused


def test_a_second_run_after_a_lost_lease_finds_the_note(harness: Harness, runtime: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    with runtime.sessions.begin() as session:  # as if the first worker died before finishing
        session.execute(update(EventRow).values(state="retrying"))
        session.execute(update(DecisionRow).values(final=False, outcome=""))
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert len(harness.cw.patches(ticket)) == 1
    assert len(_ours(harness, ticket)) == 1
    assert len(harness.cw.requests_to(rf"/tickets/{ticket}/notes")) >= 3  # looked for the marker


def test_another_event_for_a_decided_ticket_is_ignored(harness: Harness, runtime: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    assert jobs.process_event(runtime, _event(runtime, ticket, "webhook")) is EventState.DONE
    again = _event(runtime, ticket, "poll")
    assert jobs.process_event(runtime, again) is EventState.IGNORED
    row = runtime.ledger.get(again)
    assert row is not None and row.reason.startswith("already decided by event")
    assert len(harness.cw.patches(ticket)) == 1 and len(_ours(harness, ticket)) == 1


def test_dry_run_writes_nothing(harness: Harness, runtime: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    result = pipeline.categorize(0, str(ticket), 1, runtime.deps(TENANT), dry_run=True)
    assert result.outcome is not None and result.outcome.value == "applied"
    assert result.chosen is not None and result.chosen.target.key == "10/20/30"
    assert harness.cw.writes == []
    with runtime.sessions() as session:
        assert session.execute(select(DecisionRow)).first() is None
    (call,) = _calls(runtime)
    assert call.event_id is None


def test_auth_failure_parks_the_event_and_flags_the_tenant(
    harness: Harness, runtime: Runtime
) -> None:
    ticket = harness.cw.add_ticket("Printer broken", JAM)
    harness.cw.fail("GET", rf"/service/tickets/{ticket}$", 401)
    event_id = _event(runtime, ticket)
    assert jobs.process_event(runtime, event_id) is EventState.PARKED
    (problem,) = runtime.problems()[TENANT]
    assert problem.startswith("credentials refused")


def test_pii_is_masked_before_the_model_and_only_counted(
    harness: Harness, runtime: Runtime
) -> None:
    ticket = harness.cw.add_ticket(
        "Printer jam for jane@contoso.com", "paper jam; call me on +44 20 7946 0958"
    )
    assert jobs.process_event(runtime, _event(runtime, ticket)) is EventState.DONE
    sent = str(harness.llm.calls[0]["messages"])
    assert "jane@contoso.com" not in sent and "7946" not in sent
    assert "[EMAIL]" in sent and "[PHONE]" in sent
    (call,) = _calls(runtime)
    assert call.redactions == {"email": 1, "phone": 1}
    (note,) = _ours(harness, ticket)
    assert "Masked before the model saw the ticket: 1 email, 1 phone" in note["text"]
    assert "jane@contoso.com" not in note["text"]
