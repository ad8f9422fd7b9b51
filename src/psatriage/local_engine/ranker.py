"""Ranking candidates for a ticket: a trained model where it knows the category, zero-shot where
it does not.

Model classes are matched to candidates by key, else by path names (so a model trained on label
paths such as ``Hardware/Printer`` serves a taxonomy whose keys are PSA ids). When every candidate
is known, the ranking is the model's probabilities over the candidates. When some are not (a
category added after training, or one with too few examples), they share a slice of the
probability: ``unseen_weight`` (the prior share of tickets in such categories) scaled by how much
more than uniform zero-shot favours them, at most 0.9; the known ones keep the rest in the model's
proportions. Without a model it is zero-shot alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from psatriage.domain import Category, Facet, LevelValue
from psatriage.local_engine import DEFAULT_TEMPERATURE, DEFAULT_UNSEEN_WEIGHT
from psatriage.local_engine.embed import Embedder, Vectors
from psatriage.local_engine.features import prepare
from psatriage.local_engine.model import TrainedModel
from psatriage.local_engine.zeroshot import ZeroShot

_MAX_UNSEEN: Final = 0.9  # the known categories always keep some probability
_SEPARATORS = re.compile(r"\s*(?:[>›/]|\s›\s)\s*")

Source = Literal["model", "zero-shot", "unreadable"]


@dataclass(frozen=True, slots=True)
class Scored:
    category: Category
    probability: float
    source: Source


class Ranker:
    """Probabilities over candidates for ticket texts."""

    def __init__(
        self,
        embedder: Embedder,
        model: TrainedModel | None = None,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        unseen_weight: float = DEFAULT_UNSEEN_WEIGHT,
    ) -> None:
        self.embedder = embedder
        self.model = model
        self.zero_shot = ZeroShot(embedder, temperature)
        self.unseen_weight = unseen_weight

    def __repr__(self) -> str:
        trained = self.model.report.version or "trained" if self.model else "zero-shot"
        return f"Ranker({trained})"

    @property
    def name(self) -> str:
        """What is recorded as the model: the embedder, and the trained model's version."""
        if self.model is None:
            return f"zero-shot:{self.embedder.name}"
        return f"trained:{self.model.report.version or self.model.report.trained_at}"

    def rank(self, text: str, candidates: Sequence[Category]) -> list[Scored]:
        """Every candidate with its probability, most probable first; every candidate equally
        likely, source ``unreadable``, for a ticket without a word the engine can read."""
        probabilities, sources = self.probabilities([text], candidates)
        if not self.readable(text):
            sources = ["unreadable"] * len(candidates)
        order = np.argsort(-probabilities[0], kind="stable")
        return [
            Scored(candidates[i], float(probabilities[0, i]), sources[i]) for i in order.tolist()
        ]

    def readable(self, text: str) -> bool:
        """Whether the engine can read anything of ``text``: a token of the embedding, or a
        term of the trained model (a script or language neither covers is not guessed at)."""
        ticket = prepare(text)
        if self.embedder.embed([ticket.text]).any():
            return True
        return self.model is not None and len(self.model.featurizer.row(ticket)[0]) > 0

    def probabilities(
        self, texts: Sequence[str], candidates: Sequence[Category]
    ) -> tuple[Vectors, list[Source]]:
        """A (texts x candidates) matrix whose rows sum to 1, and each column's source."""
        tickets = [prepare(text) for text in texts]
        vectors = self.embedder.embed([t.text for t in tickets])
        if not candidates:
            return np.zeros((len(texts), 0), dtype=np.float32), []
        columns = self._columns(candidates)
        known = [i for i, c in enumerate(columns) if c is not None]
        classes = [c for c in columns if c is not None]
        sources: list[Source] = ["model" if c is not None else "zero-shot" for c in columns]
        if self.model is None or not known:
            return self.zero_shot.probabilities(vectors, candidates), sources
        probabilities = self.model.probabilities(tickets, vectors)[:, classes]
        trained = probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-30)
        blind = ~vectors.any(axis=1) & np.array(
            [len(self.model.featurizer.row(t)[0]) == 0 for t in tickets]
        )
        trained[blind] = 1 / len(known)  # nothing to go on: no category is favoured
        if len(known) == len(candidates):
            return trained, sources
        unknown = [i for i, c in enumerate(columns) if c is None]
        guessed = self.zero_shot.probabilities(vectors, candidates)
        share = guessed[:, unknown].sum(axis=1, keepdims=True)
        # the prior share of unseen categories, raised when zero-shot favours them over uniform
        uniform = len(unknown) / len(candidates)
        weight = np.minimum(_MAX_UNSEEN, self.unseen_weight * share / uniform)
        out = np.zeros((len(texts), len(candidates)), dtype=np.float32)
        out[:, known] = trained * (1 - weight)
        out[:, unknown] = guessed[:, unknown] / np.maximum(share, 1e-12) * weight
        return out, sources

    def choose_option(self, text: str, facet: Facet) -> tuple[LevelValue, float]:
        vector = self.embedder.embed([prepare(text).text])[0]
        return self.zero_shot.choose_option(vector, facet)

    def _columns(self, candidates: Sequence[Category]) -> list[int | None]:
        """For each candidate, the model's class index (by key, else by path names)."""
        if self.model is None:
            return [None] * len(candidates)
        model = self.model
        by_name = {_normalized(name): i for i, name in enumerate(model.classes)}
        columns: list[int | None] = []
        for candidate in candidates:
            index = model.index(candidate.key)
            if index is None:
                index = by_name.get(_normalized(" > ".join(v.name for v in candidate.path)))
            columns.append(index)
        return columns


def _normalized(label: str) -> str:
    return " > ".join(p.casefold() for p in _SEPARATORS.split(label.strip()) if p)
