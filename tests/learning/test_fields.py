"""The local engine's ticket fields: priority, routing and noise learned from a tenant's closed
tickets with the engine's own training, kept per tenant and field in the database, and decided
by the pipeline for the fields an answer leaves out (the local engine answers none)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from psatriage.domain import Outcome, Ticket
from psatriage.learning.dataset import Labeled
from psatriage.learning.fields import FieldModels, field_labels, train_fields, wanted
from psatriage.local_engine.embed import shared_embedder
from tests.fakes.inprocess import ScriptedClassifier, answer
from tests.pipeline_kit import PipelineKit, make_database, make_tenant

# (text, category key, category path, priority id, board id)
URGENT = [
    "The file server is down and nobody can work",
    "Email is down for the whole office",
    "The internet connection is down in the building",
    "All phones are dead and customers cannot call",
    "The network is down on every floor",
    "The payroll server is down before payday",
    "Nobody can log in, the domain controller is down",
    "The VPN is down for every remote worker",
]
ROUTINE = [
    "Please install Acrobat on my laptop when you can",
    "Could you change my desktop wallpaper",
    "I would like a second monitor some time",
    "Please add me to the marketing mailing list",
    "Can you order a spare keyboard for reception",
    "Update my email signature with my new title",
    "Please tidy the cables under my desk next week",
    "Could the company font be installed on my PC",
]
SPAM = [
    "You won the lottery, send your bank details",
    "Cheap luxury watches with a big discount",
    "Double your bitcoin in one week, invest now",
    "Congratulations lucky winner, click this link",
]


def _history() -> list[Labeled]:
    items = [
        Labeled(
            f"u{n}", text, "10/20", "Hardware › Server", fields={"priority": "1", "routing": "2"}
        )
        for n, text in enumerate(URGENT)
    ]
    items += [
        Labeled(
            f"r{n}", text, "11/22", "Software › Requests", fields={"priority": "3", "routing": "1"}
        )
        for n, text in enumerate(ROUTINE)
    ]
    items += [
        Labeled(f"s{n}", text, "14", "Admin › Spam", fields={"priority": "3", "routing": "1"})
        for n, text in enumerate(SPAM)
    ]
    return items


FIELDS = {
    "enabled": ["priority", "routing", "noise"],
    "noise": {"spam": {"action": "set", "category": "Admin › Spam"}},
}


def test_noise_is_learned_from_the_category_a_noise_action_sets() -> None:
    tenant = make_tenant(fields=FIELDS)
    labels = dict(field_labels(tenant, _history(), "noise"))
    assert {labels[t] for t in SPAM} == {"spam"}
    assert {labels[t] for t in URGENT + ROUTINE} == {"request"}
    assert field_labels(make_tenant(fields={"enabled": ["noise"]}), _history(), "noise") == []


def test_a_field_a_company_turns_on_is_learned_too() -> None:
    tenant = make_tenant(companies={"Contoso": {"fields": {"priority": {"enabled": True}}}})
    assert wanted(tenant) == ("priority",)


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    tenant = make_tenant(fields=FIELDS)
    return dict(train_fields(tenant, _history(), shared_embedder(), min_examples=3))


def test_each_enabled_field_is_trained_with_the_local_engine(trained: dict[str, object]) -> None:
    assert set(trained) == {"priority", "routing", "noise"}
    for name, model in trained.items():
        assert not isinstance(model, str), model
        assert model.report.label == name  # type: ignore[attr-defined]


def test_too_little_history_says_why_the_field_is_not_learned() -> None:
    tenant = make_tenant(fields={"enabled": ["priority", "routing"]})
    few = [Labeled("1", "printer", "10", fields={"priority": "1"})]
    result = train_fields(tenant, few, shared_embedder(), min_examples=3)
    assert isinstance(result["priority"], str) and isinstance(result["routing"], str)
    assert "no closed ticket carries it" in str(result["routing"])


def test_models_are_kept_per_tenant_and_answer_a_ticket(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    models = FieldModels(PipelineKit(make_database(tmp_path / "db.sqlite")).sessions)
    assert models.store("acme", trained) == ["noise", "priority", "routing"]  # type: ignore[arg-type]
    assert models.store("acme", {"priority": "too few tickets"}) == []  # the model is kept
    ticket = Ticket("9", "Server down", "The mail server is down and nobody can work", "board")
    found = models.answers("acme", ticket, ["priority", "routing", "noise", "sentiment"])
    assert set(found) == {"priority", "routing", "noise"}
    assert (found["priority"].value, found["routing"].value) == ("1", "2")
    assert found["noise"].value == "request"
    assert 0.0 < (found["priority"].confidence or 0) <= 1.0
    assert models.answers("other", ticket, ["priority"]) == {}


def test_the_pipeline_decides_the_fields_from_the_models_in_the_one_update(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    """The local engine answers only the category: priority and routing come from the tenant's
    field models, judged by their own bands, and are written in the same update as the category;
    noise is recorded."""
    kit = PipelineKit(make_database(tmp_path / "db.sqlite")).with_tenant(fields=FIELDS)
    kit.field_models = FieldModels(kit.sessions)
    kit.field_models.store("acme", trained)  # type: ignore[arg-type]
    kit.classifier = ScriptedClassifier(replace(answer("10/20/30", 0.95), engine="local"))
    ticket_id = kit.psa.add_ticket("Server down", "The file server is down and nobody can work")

    decision = kit.run(kit.event(ticket_id))

    assert decision.outcome is Outcome.APPLIED
    decided = {d.name: d for d in decision.fields}
    assert decided["priority"].value_id == "1" and decided["routing"].value_id == "2"
    assert decided["noise"].value_id == "request"
    assert len([w for w in kit.psa.writes if w[0] == "category"]) == 1
    current = {(v.level, v.id) for v in kit.psa.tickets[ticket_id].current}
    assert {("priority", "1"), ("board", "2")} <= current


def test_an_llm_answer_is_not_completed_by_the_models(
    tmp_path: Path, trained: dict[str, object]
) -> None:
    """A field an LLM answered outside its values is not decided, field models or not."""
    kit = PipelineKit(make_database(tmp_path / "db.sqlite")).with_tenant(fields=FIELDS)
    kit.field_models = FieldModels(kit.sessions)
    kit.field_models.store("acme", trained)  # type: ignore[arg-type]
    kit.classifier = ScriptedClassifier(answer("10/20/30", 0.95, fields={"priority": "99"}))
    ticket_id = kit.psa.add_ticket("Server down", "The file server is down and nobody can work")
    decision = kit.run(kit.event(ticket_id))
    assert [d.name for d in decision.fields] == []
