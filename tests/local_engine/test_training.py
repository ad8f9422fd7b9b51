"""Training the local engine: path scoring, several languages, and input it cannot learn from."""

from __future__ import annotations

from pathlib import Path

import pytest

from psatriage.domain import Category, LevelValue
from psatriage.local_engine import DataError
from psatriage.local_engine.data import read_examples, select, taxonomy_from_labels
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.ranker import Ranker
from psatriage.local_engine.training import train

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "local"
PATHS = {
    "Hardware/Printer/Paper jam": ["paper jam in the printer tray", "printer jams on every page"],
    "Hardware/Printer/Toner": ["printer toner is empty", "toner cartridge low on the printer"],
    "Hardware/Laptop/Battery": ["laptop battery drains fast", "laptop battery will not charge"],
    "Accounts/Password/Reset": ["forgot my password please reset", "password reset for my login"],
}


def _hierarchical() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, phrases in PATHS.items():
        for i in range(4):
            texts.append(f"ticket {i}\n{phrases[i % 2]} since monday number {i}")
            labels.append(label)
    return texts, labels


def test_paths_are_scored_level_by_level() -> None:
    texts, labels = _hierarchical()
    model = train(texts, labels, shared_embedder(), label="category")
    assert model.report.levels == 3
    assert "Hardware" in model.levels.names and "Hardware/Printer" in model.levels.names
    ranker = Ranker(shared_embedder(), model)
    taxonomy = taxonomy_from_labels(labels, "category")
    ranked = ranker.rank("Printer\nthe toner cartridge is empty", taxonomy.leaves)
    assert ranked[0].category.key == "Hardware/Printer/Toner"
    assert abs(sum(s.probability for s in ranked) - 1) < 1e-5


def test_a_slash_in_a_few_flat_names_is_not_a_level() -> None:
    texts, labels = _hierarchical()
    flat = dict(zip(PATHS, ["Jam", "Toner", "Battery", "Pass/word"], strict=True))
    model = train(texts, [flat[label] for label in labels], shared_embedder())
    assert model.report.levels == 1


def test_tickets_in_five_languages_are_learned_from_a_mixed_history() -> None:
    examples = read_examples(FIXTURES / "multilingual.jsonl")
    model = train(
        [e.text for e in examples],
        [e.labels["category"] or "" for e in examples],
        shared_embedder(),
    )
    ranker = Ranker(shared_embedder(), model)
    candidates = taxonomy_from_labels(model.classes, "category").leaves
    unseen = {  # phrased unlike the fixture
        "Der Drucker zieht kein Papier ein": "Hardware/Printer",
        "Je n'arrive plus à me connecter, mot de passe oublié": "Accounts/Password",
        "La VPN no funciona desde casa": "Network/VPN",
        "Wachtwoord vergeten, kan niet inloggen": "Accounts/Password",
        "printer out of toner": "Hardware/Printer",
    }
    for text, expected in unseen.items():
        assert ranker.rank(f"\n{text}", candidates)[0].category.key == expected, text


def test_a_script_the_engine_cannot_read_makes_every_category_equally_likely() -> None:
    examples = select(read_examples(FIXTURES / "multilingual.jsonl"), "all")
    labels = [e.labels["category"] or "" for e in examples]
    model = train([e.text for e in examples], labels, shared_embedder())
    ranker = Ranker(shared_embedder(), model)
    candidates = taxonomy_from_labels(labels, "category").leaves
    for engine in (ranker, Ranker(shared_embedder())):
        ranked = engine.rank("เครื่องพิมพ์กระดาษติด", candidates)  # Thai: "printer paper jam"
        assert {s.source for s in ranked} == {"unreadable"}
        assert [s.probability for s in ranked] == pytest.approx([1 / 3] * 3)
    assert ranker.rank("Drucker druckt nicht", candidates)[0].source == "model"


def test_one_category_is_refused_with_its_name_and_the_fix() -> None:
    with pytest.raises(DataError, match=r"found 1 \(categories: 'Printer' \(4\)\).*fix: label"):
        train(
            ["a printer", "b printer", "c printer", "d printer"], ["Printer"] * 4, shared_embedder()
        )


def test_a_category_with_a_single_example_is_left_to_zero_shot() -> None:
    texts, labels = _hierarchical()
    model = train([*texts, "phishing mail"], [*labels, "Security/Phishing/Mail"], shared_embedder())
    assert model.report.zero_shot == {"Security/Phishing/Mail": 1}
    assert "Security/Phishing/Mail" not in model.classes
    phishing = Category(
        "Security/Phishing/Mail",
        (LevelValue("l1", "Security", "Security"), LevelValue("l2", "Phishing", "Phishing")),
    )
    ranked = Ranker(shared_embedder(), model, unseen_weight=1.0).rank(
        "\nphishing mail asking for my bank password", [phishing]
    )
    assert ranked[0].source == "zero-shot"


def test_tickets_empty_after_cleaning_are_skipped_and_counted() -> None:
    texts, labels = _hierarchical()
    model = train(
        [*texts, "\nSent from my iPhone", "<name>"], [*labels, "x", "y"], shared_embedder()
    )
    assert model.report.skipped == {"empty after cleaning": 1}
    with pytest.raises(DataError, match="no words left after removing e-mail boilerplate"):
        train(["<name>", "\nXXXX", "<tel_num>"], ["a", "b", "c"], shared_embedder(), min_examples=1)
