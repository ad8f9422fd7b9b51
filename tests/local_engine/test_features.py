"""The supervised model's features: scored with numpy exactly as scikit-learn fitted them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from psatriage.local_engine.data import ticket_text
from psatriage.local_engine.features import (
    BLOCKS,
    WORD_PATTERN,
    Block,
    Featurizer,
    analyzer,
    chars,
    prepare,
)

TICKETS = [
    prepare(
        ticket_text("Printer jams", "The printer jams, the printer jams!\n\nBest regards,\nAnn")
    ),
    prepare(ticket_text("VPN down", "VPN down again since the update")),
    prepare(ticket_text("", "Drucker druckt nicht, Papierstau im Fach 2")),
]


@pytest.mark.parametrize("name", BLOCKS)
def test_each_block_scores_as_scikit_learn_fitted_it(name: str) -> None:
    fitted = TfidfVectorizer(analyzer=analyzer(name), sublinear_tf=True)
    expected = fitted.fit_transform(TICKETS).toarray()
    block = Block(name, fitted.vocabulary_, fitted.idf_)
    for row, ticket in enumerate(TICKETS):
        columns, values = block.transform(ticket)
        dense = np.zeros(len(block), dtype=np.float32)
        dense[columns] = values
        assert np.allclose(dense, expected[row], atol=1e-6)


def test_words_match_scikit_learns_own_word_analyzer() -> None:
    text = "The printer jams, the printer jams! VPN-Client 2"
    reference = TfidfVectorizer(ngram_range=(1, 2), token_pattern=WORD_PATTERN).build_analyzer()
    assert analyzer("words")(prepare(text)) == reference(prepare(text).text)


def test_characters_match_scikit_learns_char_wb() -> None:
    text = "Papierstau im Fach 2, printer"
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    assert sorted(chars(text)) == sorted(reference(text))


def test_the_title_is_a_block_of_its_own_and_the_body_is_cleaned() -> None:
    ticket = prepare(ticket_text("Laptop", "Screen flickers.\n\nSent from my iPhone"))
    assert ticket.title == "Laptop"
    assert ticket.text == "Laptop\nScreen flickers."
    assert prepare("no line break: all body").title == ""


def test_featurizer_places_blocks_side_by_side_with_their_weights() -> None:
    blocks = []
    for name in BLOCKS:
        fitted = TfidfVectorizer(analyzer=analyzer(name), sublinear_tf=True).fit(TICKETS[:2])
        blocks.append(Block(name, fitted.vocabulary_, fitted.idf_))
    featurizer = Featurizer(blocks, {"title": 0.5})
    columns, values = featurizer.row(TICKETS[0])
    assert featurizer.width == sum(len(b) for b in blocks)
    title = (columns >= featurizer.offsets[2]) & (columns < featurizer.offsets[3])
    assert np.isclose(np.linalg.norm(values[title]), 0.5)
    assert featurizer.known_share(TICKETS[0]) == 1.0
    assert featurizer.known_share(prepare("xyzzy plugh")) == 0.0
