"""Noise: auto-replies skipped without a model call, model-found noise acted on per kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from psatriage.config.fields import FieldsSettings
from psatriage.domain import FieldAnswer, Outcome, Ticket
from psatriage.errors import PermanentError
from psatriage.fields import noise
from tests.fakes.inprocess import ScriptedClassifier, answer
from tests.pipeline_kit import PipelineKit, make_database


@pytest.fixture
def kit(tmp_path: Path) -> PipelineKit:
    return PipelineKit(make_database(tmp_path / "noise.db"))


@pytest.mark.parametrize(
    "title",
    [
        "Automatic reply: Printer jams",
        "Out of Office: back on Monday",
        "RE: Auto-Reply: your ticket",
        "Abwesenheitsnotiz: Drucker",
        "Réponse automatique : imprimante",
        "Undeliverable: Invoice",
    ],
)
def test_rules_recognise_auto_replies_by_title(title: str) -> None:
    settings = FieldsSettings(enabled=("noise",))
    ticket = Ticket(id="1", title=title, description="", scope="1")
    assert noise.by_rules(settings, ticket) == (
        "auto_reply",
        "its title says it is an automatic reply",
    )


@pytest.mark.parametrize("title", ["Reply from the printer vendor", "Office move", "Auto CAD"])
def test_rules_leave_real_requests_alone(title: str) -> None:
    settings = FieldsSettings(enabled=("noise",))
    assert noise.by_rules(settings, Ticket(id="1", title=title, description="", scope="1")) is None


def test_an_auto_reply_is_skipped_without_a_model_call(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ["noise", "priority"]})
    kit.classifier = ScriptedClassifier()  # any call fails the test
    ticket = kit.psa.add_ticket("Automatic reply: Printer jams", "I am away until Monday.")
    event = kit.event(ticket)
    decision = kit.run(event)
    assert decision.outcome is Outcome.SKIPPED
    assert "no model call" in decision.reason
    assert kit.classifier.requests == [] and kit.calls() == []
    assert kit.psa.writes == []  # no category, no note
    row = kit.decision(event)
    assert row.outcome == "skipped" and row.fields and row.fields[0]["value_id"] == "auto_reply"


def test_an_auto_reply_can_be_set_to_a_category_and_a_board(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={
            "enabled": ["noise", "routing"],
            "noise": {
                "auto_reply": {"action": "set", "category": "Security", "routing": "Network"}
            },
        }
    )
    kit.classifier = ScriptedClassifier()
    ticket = kit.psa.add_ticket("Out of office", "Back on Monday.")
    decision = kit.run(kit.event(ticket))
    assert decision.outcome is Outcome.APPLIED
    assert kit.psa.category_writes(ticket) == ["12+board=2"]
    (note,) = kit.psa.ours(ticket)
    assert "Noise: an automatic reply or out-of-office message" in note
    assert "Board: Network" in note
    assert kit.calls() == []


def test_categorize_sends_an_auto_reply_to_the_model(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={"enabled": ["noise"], "noise": {"auto_reply": {"action": "categorize"}}}
    )
    kit.classifier = ScriptedClassifier(answer("10/20/30", fields={"noise": "auto_reply"}))
    ticket = kit.psa.add_ticket("Automatic reply: Printer jams", "Away.")
    assert kit.run(kit.event(ticket)).outcome is Outcome.APPLIED
    assert kit.psa.category_writes(ticket) == ["10/20/30"]


def test_noise_the_model_finds_is_skipped_when_its_band_applies(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={"enabled": ["noise"], "noise": {"spam": {"action": "skip"}}},
        policy={"fields": {"noise": {"apply_at": 0.8}}},
    )
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", fields={"noise": FieldAnswer("spam", 0.95)}),
        answer("10/20/30", fields={"noise": FieldAnswer("spam", 0.4)}),
    )
    sure = kit.psa.add_ticket("Cheap watches", "Buy now")
    unsure = kit.psa.add_ticket("Printer offer", "Paper jam kit")
    assert kit.run(kit.event(sure)).outcome is Outcome.SKIPPED
    assert kit.psa.writes == []
    assert kit.run(kit.event(unsure)).outcome is Outcome.APPLIED  # suggested noise: categorized
    assert "Noise: spam (unsure)\n" in kit.psa.ours(unsure)[0]


def test_a_missing_configured_board_names_tenant_key_and_fix(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={"enabled": ["noise"], "noise": {"auto_reply": {"action": "set", "routing": "Gone"}}}
    )
    ticket = kit.psa.add_ticket("Automatic reply", "Away.")
    with pytest.raises(PermanentError, match=r"'fields.noise.auto_reply.routing': 'Gone'"):
        kit.run(kit.event(ticket))


def test_noise_can_be_given_a_status_alone_in_one_update(kit: PipelineKit) -> None:
    """Spam closed where it lands: no category, no note, the status written on its own."""
    kit.with_tenant(
        fields={"enabled": ["noise"], "noise": {"spam": {"action": "set", "status": "closed"}}}
    )
    kit.classifier = ScriptedClassifier(answer("10/20/30", fields={"noise": "spam"}))
    ticket = kit.psa.add_ticket("Cheap watches", "Buy now")
    decision = kit.run(kit.event(ticket))
    assert decision.outcome is Outcome.SKIPPED and decision.wrote == ("status",)
    assert kit.psa.category_writes(ticket) == ["fields+status=5"]
    assert ("status", "5") in {(v.level, v.id) for v in kit.psa.tickets[ticket].current}
    assert kit.psa.ours(ticket) == []


def test_noise_set_to_a_category_routing_and_status_is_one_update(kit: PipelineKit) -> None:
    auto_reply = {"action": "set", "category": "Security", "routing": "Network", "status": "Closed"}
    kit.with_tenant(fields={"enabled": ["noise", "routing"], "noise": {"auto_reply": auto_reply}})
    kit.classifier = ScriptedClassifier()
    ticket = kit.psa.add_ticket("Out of office", "Back on Monday.")
    decision = kit.run(kit.event(ticket))
    assert decision.outcome is Outcome.APPLIED
    assert kit.psa.category_writes(ticket) == ["12+board=2+status=5"]
    (note,) = kit.psa.ours(ticket)
    assert "Board: Network" in note and "Status: Closed" in note


def test_a_missing_configured_status_names_tenant_key_and_fix(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={"enabled": ["noise"], "noise": {"auto_reply": {"action": "set", "status": "Gone"}}}
    )
    ticket = kit.psa.add_ticket("Automatic reply", "Away.")
    with pytest.raises(
        PermanentError,
        match=r"tenant 'acme', key 'fields.noise.auto_reply.status': 'Gone' is not an active "
        r"status .* \(it has 'New', 'Closed'\); fix: name one of those",
    ):
        kit.run(kit.event(ticket))
