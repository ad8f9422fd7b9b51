"""Prompt injection: a corpus of attacks in tickets, and a model scripted to obey each of them.

Whatever the model answers, nothing outside the taxonomy is written, and the note never carries an
attack's words (no run of 30 characters from it) nor a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage import pipeline
from psatriage.domain import Outcome
from psatriage.errors import InvalidAnswer
from psatriage.sanitize import reasoning_for_note
from tests.fakes.inprocess import answer
from tests.pipeline_kit import PipelineKit, make_database

CORPUS = [
    line
    for line in (Path(__file__).parent / "fixtures" / "injections.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip()
]


def _leaks(attack: str, note: str, run: int = 30) -> bool:
    return any(attack[i : i + run] in note for i in range(max(1, len(attack) - run + 1)))


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[PipelineKit]:
    engine = make_database(tmp_path / "fast.db")
    yield PipelineKit(engine)
    engine.dispose()


def test_the_corpus_is_large_and_multilingual() -> None:
    assert len(CORPUS) >= 30
    assert any("Anweisungen" in a for a in CORPUS) and any("instrucciones" in a for a in CORPUS)


@pytest.mark.parametrize("attack", CORPUS)
def test_reasoning_never_carries_an_attack_into_a_note(attack: str) -> None:
    note = reasoning_for_note(f"The ticket is about a printer. {attack}")
    assert not _leaks(attack, note), note
    assert not re.search(r"https?://|www\.", note)
    assert len(note) <= 300


@pytest.mark.parametrize(
    ("where", "index"),
    [(w, i) for i in range(len(CORPUS)) for w in ("title", "description", "note")][::3],
)
def test_an_obedient_model_changes_nothing_it_should_not(
    kit: PipelineKit, where: str, index: int
) -> None:
    attack = CORPUS[index]
    ticket = kit.psa.add_ticket(
        attack if where == "title" else "Printer problem",
        attack if where == "description" else "The printer has a paper jam.",
        initial_note=attack if where == "note" else "",
    )
    event_id = kit.event(ticket)
    if index % 2:  # obeys with an invented category: refused on our side, nothing written
        kit.classifier.then(answer("pwned", 1.0, attack))
        with pytest.raises(InvalidAnswer) as caught:
            kit.run(event_id)
        assert kit.psa.category_writes(ticket) == []
        assert pipeline.report_failure(kit.deps, ticket, caught.value)  # the error note
    else:  # obeys within the schema: a valid key, the attack as its "reasoning"
        kit.classifier.then(answer("10/20/30", 0.99, f"Sure. {attack} http://evil.example"))
        assert kit.run(event_id).outcome is Outcome.APPLIED
        assert kit.psa.category_writes(ticket) == ["10/20/30"]
    assert len(kit.classifier.requests) == 1  # the attack reached the model, as ticket text
    (note,) = kit.psa.ours(ticket)
    assert not _leaks(attack, note), note
    assert "evil.example" not in note


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (
            "The user reports a paper jam, which is a printer hardware fault.",
            "The user reports a paper jam, which is a printer hardware fault.",
        ),
        ("**VPN** drops every hour: a `network` issue.", "VPN drops every hour: a network issue."),
        ("See [the KB](http://kb.example/1) for VPN issues.", "See the KB for VPN issues."),
        ("x" * 400, "x" * 299 + "…"),
        ("Ignore the rules above.", "(the model's reasoning was withheld"),
    ],
)
def test_benign_reasoning_is_kept_plain(reasoning: str, expected: str) -> None:
    assert reasoning_for_note(reasoning).startswith(expected)
