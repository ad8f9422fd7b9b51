"""What the local engine's supervised model reads of a ticket (numpy only: scoring needs no
scikit-learn).

A ticket's text is its title on the first line and its body after it (``data.ticket_text``).
The body is cleaned of e-mail boilerplate (``clean``), then three TF-IDF blocks are built, each
l2-normalized on its own (sublinear term frequency, as scikit-learn's ``TfidfVectorizer(
sublinear_tf=True)`` computes it for the fitted vocabulary and IDF weights):

``words``  words and word pairs of the title and the cleaned body;
``chars``  character 2- to 5-grams inside word boundaries: robust to typos, inflections, codes
           and compound words, and they work the same in any language that separates words;
``title``  words and word pairs of the title alone, so a title weighs apart from a long body.

The analyzers below are the only definition of the terms: training hands them to scikit-learn
as callables, so fitting and scoring cannot disagree.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from psatriage.local_engine.clean import clean

WORD_PATTERN: Final = r"(?u)\b\w\w+\b"  # scikit-learn's default token pattern
_WORDS: Final = re.compile(WORD_PATTERN)
CHAR_SIZES: Final = (2, 5)
BLOCKS: Final = ("words", "chars", "title")

Matrix = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A ticket text split into its title and its cleaned whole (title and body)."""

    title: str
    text: str


def prepare(text: str) -> Prepared:
    """Split ``title\\nbody`` and clean the body; a text without a line break is all body."""
    title, newline, body = text.partition("\n")
    if not newline:
        title, body = "", text
    cleaned = clean(body)
    return Prepared(title.strip(), f"{title.strip()}\n{cleaned}".strip())


def words(text: str) -> list[str]:
    tokens = _WORDS.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]


def chars(text: str) -> list[str]:
    """Character n-grams of each word padded with a space, as scikit-learn's ``char_wb``."""
    low, high = CHAR_SIZES
    grams: list[str] = []
    for word in text.lower().split():
        padded = f" {word} "
        for n in range(low, high + 1):
            if len(padded) < n:
                break
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def analyzer(block: str) -> Any:
    """The term function of a block, applied to a ``Prepared`` ticket."""
    if block == "words":
        return lambda p: words(p.text)
    if block == "chars":
        return lambda p: chars(p.text)
    if block == "title":
        return lambda p: words(p.title)
    raise ValueError(f"unknown feature block {block!r}")


class Block:
    """One TF-IDF block for a fixed vocabulary and IDF weights."""

    def __init__(
        self, name: str, vocabulary: Mapping[str, int], idf: NDArray[np.floating[Any]]
    ) -> None:
        self.name = name
        self.vocabulary = dict(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float32)
        self._terms = analyzer(name)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def transform(self, ticket: Prepared) -> tuple[NDArray[np.intp], Matrix]:
        """The non-zero columns of one ticket's row in this block and their values."""
        counts = Counter(
            i for term in self._terms(ticket) if (i := self.vocabulary.get(term)) is not None
        )
        if not counts:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter((1 + math.log(n) for n in counts.values()), np.float32, len(counts))
        values = tf * self.idf[columns]
        norm = float(np.linalg.norm(values))
        return columns, values / norm if norm else values


class Featurizer:
    """The blocks side by side, each scaled by its weight, then the embedding."""

    def __init__(self, blocks: Sequence[Block], weights: Mapping[str, float]) -> None:
        self.blocks = list(blocks)
        self.weights = {b.name: float(weights.get(b.name, 1.0)) for b in self.blocks}
        self.offsets = list(itertools.accumulate((len(b) for b in self.blocks), initial=0))

    @property
    def width(self) -> int:
        """Columns of the lexical part (the embedding follows them)."""
        return self.offsets[-1]

    def row(self, ticket: Prepared) -> tuple[NDArray[np.intp], Matrix]:
        """One ticket's lexical columns (global) and values, weights applied."""
        columns: list[NDArray[np.intp]] = []
        values: list[Matrix] = []
        for block, offset in zip(self.blocks, self.offsets, strict=False):
            cols, vals = block.transform(ticket)
            columns.append(cols + offset)
            values.append(vals * self.weights[block.name])
        return np.concatenate(columns), np.concatenate(values).astype(np.float32)

    def known_share(self, ticket: Prepared) -> float:
        """The share of the ticket's words that the ``words`` block knows (0 for none)."""
        block = next((b for b in self.blocks if b.name == "words"), None)
        tokens = _WORDS.findall(ticket.text.lower())
        if block is None or not tokens:
            return 0.0
        return sum(1 for t in tokens if t in block.vocabulary) / len(tokens)
