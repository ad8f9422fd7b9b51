"""Zero-shot scoring: a ticket against each candidate's path names and description.

A candidate's text is its path's names and its description; its score is the cosine between that
text's static embedding and the ticket's, both taken from the mean of the candidates' vectors
(what every candidate shares, such as "account" on a bank's board or "computer" on an IT board,
would otherwise pull each ticket towards the most generic candidate). A softmax with a fixed
temperature turns scores into probabilities. With no training data nothing can calibrate them:
they rank well enough to shortlist and to break a tie, but a zero-shot confidence is a
similarity, not a frequency (``psatriage eval`` measures how far apart the two are on labeled
data).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

import numpy as np

from psatriage.domain import Category, Facet, LevelValue
from psatriage.local_engine import DEFAULT_TEMPERATURE
from psatriage.local_engine.embed import Embedder, Vectors
from psatriage.local_engine.model import softmax

_CACHE_SIZE: Final = 20_000


def category_text(category: Category) -> str:
    names = " ".join(v.name for v in category.path)
    return f"{names}. {category.description}" if category.description else names


class ZeroShot:
    """Similarity of texts to candidates; candidate vectors are cached (taxonomies repeat)."""

    def __init__(self, embedder: Embedder, temperature: float = DEFAULT_TEMPERATURE) -> None:
        self.embedder = embedder
        self.temperature = temperature
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(self, texts: Sequence[str]) -> Vectors:
        """Embeddings of label texts, from the cache where possible."""
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            fresh = self.embedder.embed(missing)
            with self._lock:
                for text, row in zip(missing, fresh, strict=True):
                    self._cache[text] = row
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for text in texts:
                row = self._cache.get(text)
                if row is None:  # evicted by another thread meanwhile
                    row = self.embedder.embed([text])[0]
                rows.append(row)
        return np.vstack(rows) if rows else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def similarities(self, tickets: Vectors, candidates: Sequence[Category]) -> Vectors:
        """Cosine of each ticket vector (rows) with each candidate (columns), both seen from the
        candidates' mean: what the candidates share (every IT category's "computer", "issue")
        is taken out, so what sets one apart decides (a ticket without a vector stays zero)."""
        labels = self.vectors([category_text(c) for c in candidates])
        if len(candidates) < 2:
            return np.asarray(tickets @ labels.T, dtype=np.float32)
        centre = labels.mean(axis=0)
        out = _unit(tickets - centre) @ _unit(labels - centre).T
        out[~tickets.any(axis=1)] = 0.0
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, tickets: Vectors, candidates: Sequence[Category]) -> Vectors:
        return softmax(self.similarities(tickets, candidates) / self.temperature)

    def choose_option(self, ticket: Vectors, facet: Facet) -> tuple[LevelValue, float]:
        """The facet option (queue, priority...) whose name is closest to the ticket."""
        texts = [f"{facet.label} {option.name}" for option in facet.options]
        scores = softmax((ticket[None, :] @ self.vectors(texts).T) / self.temperature)[0]
        best = int(scores.argmax())
        return facet.options[best], float(scores[best])


def _unit(vectors: Vectors) -> Vectors:
    """Rows scaled to unit length (an all-zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
