"""Ticket fields through the pipeline (fast tier): one call, one update, the note lists them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from psatriage.domain import Category, FieldAnswer, LevelValue, Outcome, Taxonomy, Ticket
from psatriage.errors import TransientError
from tests.fakes.inprocess import TREE, MemoryPSA, ScriptedClassifier, answer
from tests.pipeline_kit import PipelineKit, make_database

ALL = ["priority", "routing", "noise", "sentiment", "summary"]


@pytest.fixture
def kit(tmp_path: Path) -> PipelineKit:
    return PipelineKit(make_database(tmp_path / "fields.db"))


def test_one_call_one_update_and_every_field_in_the_note(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ALL})
    kit.classifier = ScriptedClassifier(
        answer(
            "10/20/30",
            fields={
                "priority": FieldAnswer("1", 0.95),
                "routing": FieldAnswer("2", 0.9),
                "noise": FieldAnswer("request", 0.99),
                "sentiment": "negative",
                "frustrated": "true",
                "summary": "The printer jams on every job.",
            },
        )
    )
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam again, third time today!")
    decision = kit.run(kit.event(ticket))

    assert decision.outcome is Outcome.APPLIED
    assert len(kit.classifier.requests) == 1
    asked = [spec.name for spec in kit.classifier.requests[0].fields]
    assert asked == ["priority", "routing", "noise", "sentiment", "frustrated", "summary"]
    assert kit.psa.category_writes(ticket) == ["10/20/30+priority=1+board=2"]
    assert decision.wrote == ("category", "priority", "routing", "note")
    (note,) = kit.psa.ours(ticket)
    for line in (
        "Priority: High",
        "Board: Network",
        "Noise: a real request",
        "Sentiment: negative, frustrated",
        "Summary: The printer jams on every job.",
    ):
        assert line in note
    stored = kit.decision(kit.event(ticket, "again") - 1)
    assert [f["name"] for f in stored.fields or ()] == [
        "priority",
        "routing",
        "noise",
        "sentiment",
        "summary",
    ]


def test_a_field_answered_outside_its_values_is_not_written(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ["priority", "routing"]})
    # the classifier leaves out what was not one of the values (read_answer); routing is gone
    kit.classifier = ScriptedClassifier(answer("10/20/30", fields={"priority": "3"}))
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam.")
    decision = kit.run(kit.event(ticket))
    assert kit.psa.category_writes(ticket) == ["10/20/30+priority=3"]
    assert [d.name for d in decision.fields] == ["priority"]


def test_each_field_has_its_own_band(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={
            "enabled": ["priority", "routing", "summary"],
        },
        policy={
            "mode": "suggest",
            "fields": {
                "priority": {"mode": "apply", "apply_at": 0.9},
                "routing": {"mode": "shadow"},
                "summary": {"mode": "apply"},
            },
        },
    )
    kit.classifier = ScriptedClassifier(
        answer(
            "10/20/30",
            fields={
                "priority": FieldAnswer("1", 0.6),
                "routing": FieldAnswer("2", 0.99),
                "summary": "Jams.",
            },
        )
    )
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam.")
    decision = kit.run(kit.event(ticket))
    assert decision.outcome is Outcome.SUGGESTED
    assert kit.psa.category_writes(ticket) == []  # nothing applied
    bands = {d.name: d.outcome for d in decision.fields}
    assert bands == {"priority": "suggested", "routing": "recorded", "summary": "applied"}
    (note,) = kit.psa.ours(ticket)
    assert "Priority: High (suggested, not written)" in note
    assert "Board" not in note  # recorded only


def test_fields_are_written_alone_when_the_category_is_not(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={"enabled": ["priority"]},
        policy={
            "min_confidence": 0.99,
            "min_confidence_to_change": 0.99,
            "fields": {"priority": {"apply_at": 0.5}},
        },
    )
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", confidence=0.6, fields={"priority": FieldAnswer("3", 0.97)})
    )
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam.", current=())
    decision = kit.run(kit.event(ticket))
    assert decision.outcome is Outcome.SUGGESTED
    assert kit.psa.category_writes(ticket) == ["fields+priority=3"]
    assert kit.psa.tickets[ticket].current == (LevelValue("priority", "3", "Low"),)


def test_priority_from_the_matrix_with_a_vip_floor_and_frustration(kit: PipelineKit) -> None:
    matrix = {
        u: {i: ("High" if "high" in (u, i) else "Low") for i in ("high", "medium", "low")}
        for u in ("high", "medium", "low")
    }
    kit.with_tenant(
        fields={
            "enabled": ["priority", "sentiment"],
            "priority": {"matrix": matrix, "order": ["High", "Medium", "Low"]},
        },
        companies={"Contoso": {"fields": {"priority": {"at_least": "Medium"}}}},
    )
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", fields={"urgency": "low", "impact": "medium", "sentiment": "neutral"}),
        answer("10/20/30", fields={"urgency": "low", "impact": "low", "sentiment": "neutral"}),
    )
    plain = kit.psa.add_ticket("Printer jams", "Paper jam.")
    vip = kit.psa.add_ticket("Printer jams", "Paper jam.", company_name="Contoso")
    kit.run(kit.event(plain))
    kit.run(kit.event(vip))
    assert [s.name for s in kit.classifier.requests[0].fields][:2] == ["urgency", "impact"]
    assert kit.psa.category_writes(plain) == ["10/20/30+priority=3"]
    assert kit.psa.category_writes(vip) == ["10/20/30+priority=2"]  # Low raised to Medium


def test_frustration_raises_the_priority_one_step(kit: PipelineKit) -> None:
    kit.with_tenant(
        fields={
            "enabled": ["priority", "sentiment"],
            "priority": {"order": ["High", "Medium", "Low"], "frustrated_raises": True},
        }
    )
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", fields={"priority": "3", "sentiment": "negative", "frustrated": "true"})
    )
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam AGAIN.")
    kit.run(kit.event(ticket))
    assert kit.psa.category_writes(ticket) == ["10/20/30+priority=2"]


def test_field_values_are_read_once_through_the_cache(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ["priority", "routing"]})
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", fields={"priority": "1"}), answer("10/20/30", fields={"priority": "1"})
    )
    for _ in range(2):
        kit.run(kit.event(kit.psa.add_ticket("Printer jams", "Paper jam.")))
    assert kit.psa.calls.count("field_values") == 2  # priority and routing, once each


def test_a_retry_after_a_crash_reuses_the_checkpointed_fields(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ["priority"]})
    kit.classifier = ScriptedClassifier(answer("10/20/30", fields={"priority": "1"}))
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam.")
    event = kit.event(ticket)
    kit.psa.fail("add_note", TransientError("PSA down"))
    with pytest.raises(TransientError):
        kit.run(event)
    decision = kit.run(event, attempt=2)  # no second model call: the script has no more steps
    assert [d.name for d in decision.fields] == ["priority"]
    assert "Priority: High" in kit.psa.ours(ticket)[0]


NETWORK = Taxonomy(
    scope="2",
    scope_name="Network",
    levels=("type",),
    leaves=(Category("60", (LevelValue("type", "60", "Outage"),)),),
)


class BoardsPSA(MemoryPSA):
    """A PSA whose routing (the board) owns the category tree, as ConnectWise's does."""

    routing_sets_scope = True

    def get_taxonomy(self, ticket: Ticket) -> Taxonomy:
        self.calls.append(f"get_taxonomy:{ticket.scope}")
        return NETWORK if ticket.scope == "2" else TREE

    def set_category(self, ticket: Ticket, category: Category) -> None:
        board = next((v.id for v in category.path if v.level == "board"), ticket.scope)
        self.taxonomy = NETWORK if board == "2" else TREE
        super().set_category(ticket, category)


def test_routing_that_owns_the_tree_is_decided_first(tmp_path: Path) -> None:
    kit = PipelineKit(make_database(tmp_path / "boards.db"), psa=BoardsPSA())
    kit.with_tenant(fields={"enabled": ["priority", "routing"]})
    kit.classifier = ScriptedClassifier(
        answer("2", 0.9),  # the board
        answer("60", fields={"priority": "1"}),  # the category within the Network board
    )
    ticket = kit.psa.add_ticket("Firewall down", "Nobody can reach the internet.")
    decision = kit.run(kit.event(ticket))
    first, second = kit.classifier.requests
    assert [c.key for c in first.candidates] == ["1", "2"] and not first.fields
    assert [c.key for c in second.candidates] == ["60"]
    assert [s.name for s in second.fields] == ["priority"]
    assert kit.psa.category_writes(ticket) == ["60+priority=1+board=2"]
    assert [(d.name, d.value) for d in decision.fields] == [
        ("priority", "High"),
        ("routing", "Network"),
    ]


def test_a_suggested_board_keeps_the_category_on_the_current_board(tmp_path: Path) -> None:
    kit = PipelineKit(make_database(tmp_path / "boards.db"), psa=BoardsPSA())
    kit.with_tenant(
        fields={"enabled": ["routing"]}, policy={"fields": {"routing": {"apply_at": 0.95}}}
    )
    kit.classifier = ScriptedClassifier(answer("2", 0.6), answer("10/20/30"))
    ticket = kit.psa.add_ticket("Printer jams", "Paper jam.")
    kit.run(kit.event(ticket))
    assert kit.classifier.requests[1].candidates[0].key == "10/20/30"
    assert kit.psa.category_writes(ticket) == ["10/20/30"]
    assert "Board: Network (suggested, not written)" in kit.psa.ours(ticket)[0]


def test_a_board_change_after_our_decision_decides_the_category_again_once(
    tmp_path: Path,
) -> None:
    kit = PipelineKit(make_database(tmp_path / "recheck.db"), psa=BoardsPSA())
    kit.with_tenant(fields={"enabled": ["priority"]})
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", fields={"priority": "1"}), answer("60", reasoning="An outage.")
    )
    ticket = kit.psa.add_ticket("Firewall down", "Nobody can reach the internet.")
    kit.run(kit.event(ticket))
    assert kit.psa.category_writes(ticket) == ["10/20/30+priority=1"]
    same = kit.run(kit.event(ticket, "updated-1"))  # an update on the same board: nothing to do
    assert same.outcome is None and len(kit.classifier.requests) == 1

    stored = kit.psa.tickets[ticket]
    kit.psa.tickets[ticket] = replace(stored, scope="2", scope_name="Network", current=())
    moved = kit.run(kit.event(ticket, "updated-2"))
    assert moved.outcome is Outcome.APPLIED
    second = kit.classifier.requests[1]
    assert [c.key for c in second.candidates] == ["60"] and second.fields == ()
    assert kit.psa.category_writes(ticket)[-1] == "60"
    again = kit.run(kit.event(ticket, "updated-3"))  # once per change
    assert again.outcome is None and len(kit.classifier.requests) == 2


@pytest.mark.parametrize(
    ("title", "rewritten"),
    [("Help", True), ("", True), ("Ticket from john@contoso.example", True), ("Issue!", True),
     ("Printer jams on floor 3", False)],
)  # fmt: skip
def test_a_generic_title_is_rewritten_with_the_summary_when_asked(
    kit: PipelineKit, title: str, rewritten: bool
) -> None:
    kit.with_tenant(fields={"enabled": ["summary"], "summary": {"rewrite_generic_titles": True}})
    kit.classifier = ScriptedClassifier(
        answer("10/20/30", fields={"summary": "Paper jam in the floor 3 printer."})
    )
    ticket = kit.psa.add_ticket(title, "The printer on floor 3 has a paper jam.")
    decision = kit.run(kit.event(ticket))
    expected = "Paper jam in the floor 3 printer." if rewritten else title
    assert kit.psa.tickets[ticket].title == expected
    assert len(kit.psa.category_writes(ticket)) == 1  # one update, title included
    assert ("summary" in decision.wrote) is rewritten


def test_titles_are_left_alone_by_default(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ["summary"]})
    kit.classifier = ScriptedClassifier(answer("10/20/30", fields={"summary": "A jam."}))
    ticket = kit.psa.add_ticket("Help", "The printer has a paper jam.")
    kit.run(kit.event(ticket))
    assert kit.psa.tickets[ticket].title == "Help"
    assert "Summary: A jam." in kit.psa.ours(ticket)[0]
