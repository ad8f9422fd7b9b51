"""One ticket's path on the fast tier (in-process PSA and classifier, real SQLite): what the
policy lets through, resuming after a crash at any write, and deciding each ticket once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from psatriage import pipeline
from psatriage.breaker import CircuitBreaker
from psatriage.domain import Classification, Outcome
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    InvalidAnswer,
    PermanentError,
    TransientError,
)
from psatriage.store.tables import DecisionRow, ReviewRow
from tests.fakes.inprocess import EMAIL, SOFTWARE, TREE, TRIAGE, answer, with_priority
from tests.pipeline_kit import PipelineKit, make_database

JAM = "My printer has a paper jam again"


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[PipelineKit]:
    engine = make_database(tmp_path / "fast.db")
    yield PipelineKit(engine)
    engine.dispose()


def _ticket_event(kit: PipelineKit, *steps: Classification, **ticket: Any) -> tuple[str, int]:
    kit.classifier.then(*steps)
    ticket_id = kit.psa.add_ticket("Printer broken", JAM, **ticket)
    return ticket_id, kit.event(ticket_id)


def test_applied_writes_the_category_once_and_one_marked_internal_note(kit: PipelineKit) -> None:
    ticket, event_id = _ticket_event(kit, answer("10/20/30"))
    result = kit.run(event_id)
    assert result.outcome is Outcome.APPLIED and result.wrote == ("category", "note")
    assert kit.psa.category_writes(ticket) == ["10/20/30"]
    (note,) = kit.psa.ours(ticket)
    decision = kit.decision(event_id)
    assert "Hardware › Printer › Paper jam" in note and f"[psatriage:{decision.id}]" in note
    assert "Confidence: 92%" in note
    assert decision.outcome == "applied" and decision.final
    assert decision.wrote_category and decision.wrote_note
    assert decision.confidence_source == "logprobs" and decision.tokens_in == 120
    (call,) = kit.calls()
    assert (call.event_id, call.chosen_key, call.tokens_in) == (event_id, "10/20/30", 120)
    (request,) = kit.classifier.requests
    assert request.ticket.description == JAM and request.event_id == event_id
    assert "10/20/30" in [c.key for c in request.candidates]
    assert "13" not in [c.key for c in request.candidates]  # inactive: never offered
    assert (request.model, request.max_tokens) == ("scripted-model", 200)  # the tenant's own


def test_taxonomy_is_read_once_then_cached_in_memory_and_in_the_database(
    kit: PipelineKit,
) -> None:
    for _ in range(3):
        _, event_id = _ticket_event(kit, answer("10/20/30"))
        assert kit.run(event_id).outcome is Outcome.APPLIED
    assert kit.psa.calls.count("get_taxonomy") == 1
    other_process = PipelineKit(kit.engine, psa=kit.psa, classifier=kit.classifier)
    _, event_id = _ticket_event(other_process, answer("10/20/30"))
    assert other_process.run(event_id).outcome is Outcome.APPLIED
    assert kit.psa.calls.count("get_taxonomy") == 1  # read from the database, not the PSA


def test_low_confidence_is_suggested_not_written(kit: PipelineKit) -> None:
    ticket, event_id = _ticket_event(kit, answer("10/20/30", confidence=0.3))
    assert kit.run(event_id).outcome is Outcome.SUGGESTED
    assert kit.psa.category_writes(ticket) == []
    (note,) = kit.psa.ours(ticket)
    assert note.startswith("psatriage suggests the category: Hardware › Printer › Paper jam")
    decision = kit.decision(event_id)
    assert decision.outcome == "suggested" and "below 0.50" in decision.reason


@pytest.mark.parametrize(
    ("mode", "outcome", "notes"),
    [("suggest", Outcome.SUGGESTED, 1), ("shadow", Outcome.SHADOWED, 0)],
)
def test_suggest_and_shadow_modes_write_no_category(
    kit: PipelineKit, mode: str, outcome: Outcome, notes: int
) -> None:
    kit.with_tenant(policy={"mode": mode})
    ticket, event_id = _ticket_event(kit, answer("10/20/30", confidence=0.99))
    assert kit.run(event_id).outcome is outcome
    assert kit.psa.category_writes(ticket) == []
    assert len(kit.psa.ours(ticket)) == notes
    decision = kit.decision(event_id)
    assert decision.outcome == outcome.value and not decision.wrote_category


def test_category_set_by_a_person_is_kept_without_asking_the_model(kit: PipelineKit) -> None:
    _, event_id = _ticket_event(kit, current=(SOFTWARE, EMAIL))
    result = kit.run(event_id)
    assert result.outcome is Outcome.KEPT
    assert kit.psa.writes == [] and kit.classifier.requests == []
    decision = kit.decision(event_id)
    assert decision.outcome == "kept" and decision.final and "Software › Email" in decision.reason


def test_a_locked_category_is_kept_even_when_overwriting(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"overwrite": "always", "locked": ["Software"]})
    _, event_id = _ticket_event(kit, current=(SOFTWARE, EMAIL))
    assert kit.run(event_id).outcome is Outcome.KEPT
    assert kit.psa.writes == [] and kit.classifier.requests == []
    assert "locked ('Software')" in kit.decision(event_id).reason


def test_psa_placeholder_is_replaced_when_policy_allows(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"overwrite": "defaults"})
    ticket, event_id = _ticket_event(kit, answer("10/20/30"), current=(TRIAGE,))
    assert kit.run(event_id).outcome is Outcome.APPLIED
    assert kit.psa.category_writes(ticket) == ["10/20/30"]
    assert kit.decision(event_id).previous == "Triage"


def test_replacing_a_persons_category_needs_the_higher_threshold(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"overwrite": "always", "min_confidence_to_change": 0.95})
    ticket, event_id = _ticket_event(kit, answer("10/20/30", 0.9), current=(SOFTWARE, EMAIL))
    assert kit.run(event_id).outcome is Outcome.SUGGESTED
    assert kit.psa.category_writes(ticket) == [] and kit.decision(event_id).replacing


def test_excluded_categories_are_never_offered(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"excluded": ["Hardware > Printer", "12"]})
    _, event_id = _ticket_event(kit, answer("10/21"))
    kit.run(event_id)
    (request,) = kit.classifier.requests
    assert sorted(c.key for c in request.candidates) == ["10/21", "11/22/32", "11/23", "14"]


def test_company_overrides_model_budget_instructions_and_policy(kit: PipelineKit) -> None:
    kit.with_tenant(
        instructions="Be brief.",
        companies={
            "contoso ltd": {
                "ai_model_ticket_cat": "gpt-4o",
                "ticket_cat_max_tokens": 123,
                "instructions": "Contoso printers are leased.",
                "policy": {"mode": "suggest"},
            }
        },
    )
    ticket, event_id = _ticket_event(kit, answer("10/20/30"), company_name="Contoso Ltd")
    assert kit.run(event_id).outcome is Outcome.SUGGESTED
    (request,) = kit.classifier.requests
    assert (request.model, request.max_tokens) == ("gpt-4o", 123)
    assert request.instructions == "Be brief.\nContoso printers are leased."
    assert request.company == "Contoso Ltd"
    assert kit.psa.category_writes(ticket) == [] and len(kit.psa.ours(ticket)) == 1
    (call,) = kit.calls()
    assert call.model == "gpt-4o"


@pytest.mark.parametrize(
    "invented",
    [answer("pwned"), answer("13"), answer("10/20/30", facets={"priority": "9"})],
    ids=["unknown key", "inactive key", "unknown facet value"],
)
def test_an_answer_outside_the_taxonomy_is_refused_and_nothing_written(
    kit: PipelineKit, invented: Classification
) -> None:
    kit.psa.taxonomy = with_priority()
    _, event_id = _ticket_event(kit, invented)
    with pytest.raises(InvalidAnswer) as caught:
        kit.run(event_id)
    assert caught.value.model_related  # the tenant's error note applies
    assert kit.psa.writes == []
    assert kit.decisions.decision_for_event(event_id) is None


def test_chosen_facets_are_written_with_the_category_and_named_in_the_note(
    kit: PipelineKit,
) -> None:
    kit.psa.taxonomy = with_priority()
    ticket, event_id = _ticket_event(kit, answer("10/20/30", facets={"priority": "1"}))
    assert kit.run(event_id).outcome is Outcome.APPLIED
    assert kit.psa.category_writes(ticket) == ["10/20/30+priority=1"]
    (note,) = kit.psa.ours(ticket)
    assert "Priority: High" in note
    (request,) = kit.classifier.requests
    assert [f.name for f in request.facets] == ["priority"]


def test_the_error_note_is_posted_once_per_ticket_and_only_for_model_failures(
    kit: PipelineKit,
) -> None:
    ticket = kit.psa.add_ticket("Printer broken", JAM)
    model_failure = InvalidAnswer("the model chose 'pwned', which is not a candidate")
    model_failure.model_related = True
    assert pipeline.report_failure(kit.deps, ticket, model_failure)
    assert not pipeline.report_failure(kit.deps, ticket, model_failure)  # the marker is there
    assert not pipeline.report_failure(kit.deps, ticket, PermanentError("PSA said 400"))
    (note,) = kit.psa.ours(ticket)
    assert "could not categorize" in note and "the model did not give a valid category" in note
    assert "pwned" not in note  # never the model's words


def test_no_error_note_when_the_tenant_did_not_ask(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"report_errors": False})
    ticket = kit.psa.add_ticket("Printer broken", JAM)
    failure = AuthFailed("the model refused the key")
    failure.model_related = True
    assert not pipeline.report_failure(kit.deps, ticket, failure)
    assert kit.psa.notes[ticket] == []


def test_a_refused_write_rereads_the_tree_and_writes_again_if_still_valid(
    kit: PipelineKit,
) -> None:
    kit.psa.fail("set_category", CategoryRejected("stale combination"))
    ticket, event_id = _ticket_event(kit, answer("10/20/30"))
    assert kit.run(event_id).outcome is Outcome.APPLIED
    assert kit.psa.calls.count("get_taxonomy") == 2 and kit.psa.calls.count("set_category") == 2
    assert kit.psa.category_writes(ticket) == ["10/20/30"]


def test_a_refused_write_of_a_value_gone_from_the_tree_fails(kit: PipelineKit) -> None:
    _, warm = _ticket_event(kit, answer("10/20/30"))
    assert kit.run(warm).outcome is Outcome.APPLIED  # the tree is cached now
    kit.psa.taxonomy = replace(TREE, leaves=TREE.leaves[1:])  # Paper jam deleted in the PSA
    ticket, event_id = _ticket_event(kit, answer("10/20/30"))
    with pytest.raises(CategoryRejected, match="no longer in the category tree"):
        kit.run(event_id)
    assert kit.psa.calls.count("get_taxonomy") == 2
    assert kit.psa.calls.count("set_category") == 2  # the warm-up's and one refused attempt
    assert kit.psa.category_writes(ticket) == [] and kit.psa.ours(ticket) == []


@pytest.mark.parametrize("method", ["set_category", "add_note"])
@pytest.mark.parametrize("landed", [False, True], ids=["before-the-write", "after-the-write"])
def test_a_crash_at_any_write_resumes_without_asking_again_or_writing_twice(
    kit: PipelineKit, method: str, landed: bool
) -> None:
    kit.psa.fail(method, TransientError("connection reset", retry_after=1), after=landed)
    ticket, event_id = _ticket_event(kit, answer("10/20/30"))
    with pytest.raises(TransientError):
        kit.run(event_id)
    checkpoint = kit.decision(event_id)
    assert checkpoint.category_key == "10/20/30" and not checkpoint.final
    result = kit.run(event_id, attempt=2)
    assert result.outcome is Outcome.APPLIED and result.decision_id == checkpoint.id
    assert kit.psa.category_writes(ticket) == ["10/20/30"]
    assert len(kit.psa.ours(ticket)) == 1
    assert len(kit.classifier.requests) == 1  # the checkpointed decision was reused
    assert kit.decision(event_id).final


def test_a_second_run_after_a_lost_lease_finds_the_note(kit: PipelineKit) -> None:
    ticket, event_id = _ticket_event(kit, answer("10/20/30"))
    assert kit.run(event_id).outcome is Outcome.APPLIED
    with kit.sessions.begin() as session:  # as if the worker died before closing the event
        session.execute(update(DecisionRow).values(final=False, outcome=""))
    result = kit.run(event_id, attempt=2)
    assert result.outcome is Outcome.APPLIED and result.wrote == ()
    assert kit.psa.category_writes(ticket) == ["10/20/30"] and len(kit.psa.ours(ticket)) == 1
    assert "find_note" in kit.psa.calls  # looked for the marker before posting


def test_another_event_for_a_decided_ticket_decides_nothing(kit: PipelineKit) -> None:
    ticket, first = _ticket_event(kit, answer("10/20/30"))
    assert kit.run(first).outcome is Outcome.APPLIED
    again = kit.event(ticket, "poll")
    result = kit.run(again)
    assert result.outcome is None and result.reason == f"already decided by event {first}"
    assert len(kit.classifier.requests) == 1 and len(kit.psa.writes) == 2


def test_two_events_racing_on_one_ticket_make_one_decision(kit: PipelineKit) -> None:
    ticket = kit.psa.add_ticket("Printer broken", JAM)
    webhook, poll = kit.event(ticket, "webhook"), kit.event(ticket, "poll")

    def the_other_event_wins_meanwhile(_: object) -> Classification:
        assert kit.run(poll).outcome is Outcome.APPLIED
        return answer("10/20/30")

    kit.classifier.then(the_other_event_wins_meanwhile, answer("10/20/30"))
    result = kit.run(webhook)
    assert result.outcome is None and result.reason == f"already decided by event {poll}"
    assert kit.decisions.decision_for_event(webhook) is None
    assert kit.psa.category_writes(ticket) == ["10/20/30"] and len(kit.psa.ours(ticket)) == 1


def test_a_manual_run_decides_a_decided_ticket_again(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"overwrite": "always"})
    ticket, first = _ticket_event(kit, answer("10/20/30"))
    kit.run(first)
    kit.classifier.then(answer("10/20/31"))
    manual = kit.event(ticket, "cli")
    assert kit.run(manual, once_per_ticket=False).outcome is Outcome.APPLIED
    assert kit.psa.category_writes(ticket) == ["10/20/30", "10/20/31"]
    assert kit.decision(manual).previous == "Hardware › Printer › Paper jam"


def test_dry_run_writes_nothing(kit: PipelineKit) -> None:
    ticket = kit.psa.add_ticket("Printer broken", JAM)
    kit.classifier.then(answer("10/20/30"))
    result = pipeline.categorize(0, ticket, 1, kit.deps, dry_run=True)
    assert result.outcome is Outcome.APPLIED
    assert result.chosen is not None and result.chosen.target.key == "10/20/30"
    assert kit.psa.writes == []
    with kit.sessions() as session:
        assert session.execute(select(DecisionRow)).first() is None
    (call,) = kit.calls()
    assert call.event_id is None


def test_a_dry_run_can_show_what_the_model_would_choose_for_a_kept_ticket(
    kit: PipelineKit,
) -> None:
    """``categorize --dry-run`` asks the model even where a person set the category; a backfill's
    dry run (no ``explain_kept``) does not spend a model call on a ticket it keeps."""
    ticket, _ = _ticket_event(kit, answer("10/20/30"), current=(SOFTWARE, EMAIL))
    kept = pipeline.categorize(0, ticket, 1, kit.deps, dry_run=True)
    assert kept.outcome is Outcome.KEPT and kept.chosen is None
    assert kit.classifier.requests == []
    explained = pipeline.categorize(0, ticket, 1, kit.deps, dry_run=True, explain_kept=True)
    assert explained.outcome is Outcome.KEPT and "Software › Email" in explained.reason
    assert explained.chosen is not None and explained.chosen.target.key == "10/20/30"
    assert explained.classification is not None and len(kit.classifier.requests) == 1
    assert kit.psa.writes == []
    with kit.sessions() as session:
        assert session.execute(select(DecisionRow)).first() is None


def test_pii_is_masked_before_the_model_and_only_counted(kit: PipelineKit) -> None:
    kit.classifier.then(answer("10/20/30"))
    ticket = kit.psa.add_ticket(
        "Printer jam for jane@contoso.com", "paper jam; call me on +44 20 7946 0958"
    )
    assert kit.run(kit.event(ticket)).outcome is Outcome.APPLIED
    (request,) = kit.classifier.requests
    sent = f"{request.ticket.title} {request.ticket.description}"
    assert "jane@contoso.com" not in sent and "7946" not in sent
    assert "[EMAIL]" in sent and "[PHONE]" in sent
    (call,) = kit.calls()
    assert call.redactions == {"email": 1, "phone": 1}
    (note,) = kit.psa.ours(ticket)
    assert "Masked before the model saw the ticket: 1 email, 1 phone" in note
    assert "jane@contoso.com" not in note


def test_a_dead_model_opens_the_circuit(kit: PipelineKit) -> None:
    kit.breaker = CircuitBreaker(threshold=2, cooldown=60)
    kit.classifier.then(TransientError("503"), TransientError("503"))
    for _ in range(3):
        _, event_id = _ticket_event(kit)
        with pytest.raises(TransientError) as caught:
            kit.run(event_id)
        assert caught.value.model_related
    assert "circuit open" in str(caught.value)
    assert len(kit.classifier.requests) == 2  # the third ticket never reached the model


def _reviews(kit: PipelineKit) -> list[ReviewRow]:
    with kit.sessions() as session:
        return list(session.execute(select(ReviewRow).order_by(ReviewRow.id)).scalars())


def test_between_the_bands_a_note_marked_for_review_and_one_review(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"apply_at": 0.8, "suggest_at": 0.3}, privacy={"redact": True})
    jam = replace(answer("10/20/30", 0.6), alternatives=(("10/20/31", 0.2), ("gone", 0.1)))
    kit.classifier.then(jam)
    ticket = kit.psa.add_ticket("Printer of bob@example.com", JAM, company_name="Contoso")
    event_id = kit.event(ticket)
    result = kit.run(event_id)
    assert result.outcome is Outcome.SUGGESTED and result.wrote == ("note",)
    assert kit.psa.category_writes(ticket) == []
    (note,) = kit.psa.ours(ticket)
    assert "Marked for review" in note
    (review,) = _reviews(kit)
    decision = kit.decision(event_id)
    assert (review.decision_id, review.state, review.ticket_id) == (decision.id, "pending", ticket)
    assert review.title == "Printer of [EMAIL]" and review.excerpt == JAM
    assert (review.category_key, review.category_label) == (
        "10/20/30",
        "Hardware › Printer › Paper jam",
    )
    assert review.confidence == 0.6 and review.company_name == "Contoso"
    assert review.alternatives == [
        {"key": "10/20/31", "label": "Hardware › Printer › Toner", "confidence": 0.2}
    ]
    kit.run(event_id, attempt=2)  # a retry after finishing opens no second review
    assert len(_reviews(kit)) == 1


def test_below_suggest_at_is_recorded_only(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"apply_at": 0.8, "suggest_at": 0.3})
    ticket, event_id = _ticket_event(kit, answer("10/20/30", 0.2))
    result = kit.run(event_id)
    assert result.outcome is Outcome.RECORDED and result.wrote == ()
    assert kit.psa.category_writes(ticket) == [] and kit.psa.ours(ticket) == []
    decision = kit.decision(event_id)
    assert decision.outcome == "recorded" and not decision.wrote_note
    assert "below suggest_at 0.30" in decision.reason
    assert _reviews(kit) == []


def test_shadow_mode_opens_no_review(kit: PipelineKit) -> None:
    kit.with_tenant(policy={"mode": "shadow", "apply_at": 0.8, "suggest_at": 0.3})
    _, event_id = _ticket_event(kit, answer("10/20/30", 0.6))
    assert kit.run(event_id).outcome is Outcome.SHADOWED
    assert _reviews(kit) == []
