"""The requester's language, detected offline from the profiles the package ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from psatriage.config.fields import FieldsSettings
from psatriage.domain import Ticket
from psatriage.fields import language
from tests.fakes.inprocess import ScriptedClassifier, answer
from tests.pipeline_kit import PipelineKit, make_database

SETTINGS = FieldsSettings(enabled=("language",))


@pytest.mark.parametrize(
    ("title", "description", "code"),
    [
        ("Drucker", "Der Drucker im zweiten Stock hat schon wieder einen Papierstau.", "de"),
        ("Printer", "My printer on the second floor has a paper jam again.", "en"),
        ("Imprimante", "L'imprimante du deuxième étage ne marche plus depuis ce matin.", "fr"),
        ("Impresora", "La impresora del segundo piso no funciona desde esta mañana.", "es"),
    ],
)
def test_detects_the_language_of_title_and_description(
    title: str, description: str, code: str
) -> None:
    found = language.detect(
        SETTINGS, Ticket(id="1", title=title, description=description, scope="")
    )
    assert found is not None and found[0] == code and found[1] > 0.9


def test_a_short_ticket_is_not_judged() -> None:
    assert (
        language.detect(SETTINGS, Ticket(id="1", title="Printer", description="", scope="")) is None
    )


def test_the_same_text_gives_the_same_answer() -> None:
    ticket = Ticket(
        id="1", title="VPN", description="Die VPN Verbindung bricht ständig ab.", scope=""
    )
    assert {language.detect(SETTINGS, ticket) for _ in range(5)} == {
        language.detect(SETTINGS, ticket)
    }


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="no language profile for \\['xx'\\]"):
        FieldsSettings.model_validate({"language": {"candidates": ["en", "xx"]}})


def test_the_note_shows_the_language_without_a_model_field(tmp_path: Path) -> None:
    kit = PipelineKit(make_database(tmp_path / "language.db"))
    kit.with_tenant(fields={"enabled": ["language"]})
    kit.classifier = ScriptedClassifier(answer("10/20/30"))
    ticket = kit.psa.add_ticket("Drucker", "Der Drucker hat schon wieder einen Papierstau.")
    decision = kit.run(kit.event(ticket))
    assert kit.classifier.requests[0].fields == ()  # nothing asked of the model
    assert [(d.name, d.value) for d in decision.fields] == [("language", "de")]
    assert "Language: de" in kit.psa.ours(ticket)[0]
