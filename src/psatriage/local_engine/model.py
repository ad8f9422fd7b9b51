"""A supervised model of one tenant's categories, its file format, and its scoring (numpy only).

Features: TF-IDF of words and word pairs (sublinear, l2-normalized, scikit-learn's tokenization)
beside the ticket's static embedding (``embed``); a linear score per class; probabilities through
a softmax with one temperature fitted on out-of-fold scores (temperature scaling), so
``confidence`` means "how often a decision this confident was right" on the tenant's history.
Fitting is in ``training`` (scikit-learn); scoring here needs only numpy, so a service that only
predicts never loads scikit-learn or SciPy (about 100 MB).

Categories with fewer than ``min_examples`` tickets are left out of the model: at prediction time
they are scored zero-shot (see ``ranker``), and the training report lists them.

A model is one compressed ``.npz`` file of plain arrays (no pickle): the vocabulary, the IDF
weights, the coefficients, the classes and a JSON header with the format version and the report.
A file of another format version is refused with a message that says to train again.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from psatriage.local_engine import DataError

FORMAT: Final = "psatriage-local-model"
FORMAT_VERSION: Final = 1
EMBED_WEIGHT: Final = 1.0  # the embedding block beside the unit-length TF-IDF row
WORD_PATTERN: Final = r"(?u)\b\w\w+\b"  # scikit-learn's default, so training and scoring agree
_WORDS = re.compile(WORD_PATTERN)

Matrix = NDArray[np.float32]


class Lexical:
    """TF-IDF of words and word pairs, as scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2),
    sublinear_tf=True)`` computes it once fitted, for a fixed vocabulary and IDF weights."""

    def __init__(self, vocabulary: Mapping[str, int], idf: NDArray[np.floating[Any]]) -> None:
        self.vocabulary = dict(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def transform(self, text: str) -> tuple[NDArray[np.intp], Matrix]:
        """The non-zero columns of one text's row and their values."""
        tokens = _WORDS.findall(text.lower())
        terms = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
        counts = Counter(i for term in terms if (i := self.vocabulary.get(term)) is not None)
        if not counts:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32)
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter((1 + math.log(n) for n in counts.values()), np.float32, len(counts))
        values = tf * self.idf[columns]
        norm = float(np.linalg.norm(values))
        return columns, values / norm if norm else values


@dataclass(frozen=True)
class TrainingReport:
    """How a model was trained and how well it did on out-of-fold predictions."""

    label: str
    source: str
    examples: int
    classes: int
    min_examples: int
    zero_shot: dict[str, int]  # categories left to zero-shot: their example counts
    cv_accuracy: float
    cv_macro_f1: float
    cv_ece: float
    temperature: float
    seconds: float
    trained_at: str
    psatriage_version: str
    embedder: str
    version: str = ""  # the store's version name (v0003), set when saved there

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingReport:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainedModel:
    """Linear scores over ``classes`` for ticket texts, and their calibrated probabilities."""

    lexical: Lexical
    coef: Matrix  # (classes, lexical features + embedding dimensions)
    intercept: Matrix  # (classes,)
    classes: tuple[str, ...]
    temperature: float
    report: TrainingReport
    embed_weight: float = EMBED_WEIGHT
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {name: i for i, name in enumerate(self.classes)}

    def index(self, name: str) -> int | None:
        return self._index.get(name)

    def scores(self, texts: Sequence[str], vectors: Matrix) -> Matrix:
        """Raw linear scores, one row per text, one column per class."""
        lexical = len(self.lexical)
        out = vectors @ self.coef[:, lexical:].T * self.embed_weight + self.intercept
        for row, text in enumerate(texts):
            columns, values = self.lexical.transform(text)
            if len(columns):
                out[row] += self.coef[:, columns] @ values
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, texts: Sequence[str], vectors: Matrix) -> Matrix:
        return softmax(self.scores(texts, vectors) / self.temperature)

    # -- the file --------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "embed_weight": self.embed_weight,
            "temperature": self.temperature,
            "words": {"ngram_range": [1, 2], "sublinear_tf": True, "token_pattern": WORD_PATTERN},
            "report": self.report.to_dict(),
        }
        vocabulary = sorted(self.lexical.vocabulary, key=self.lexical.vocabulary.__getitem__)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            np.savez_compressed(
                out,
                header=np.array(json.dumps(header)),
                classes=np.array(self.classes, dtype=str),
                vocabulary=np.array(vocabulary, dtype=str),
                idf=self.lexical.idf,
                coef=self.coef.astype(np.float32),
                intercept=self.intercept.astype(np.float32),
            )
        partial.replace(path)  # readers never see half a file

    @classmethod
    def load(cls, path: Path) -> TrainedModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise DataError(f"model file {path} does not exist") from None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path} is not a psatriage model file ({exc})") from None
        try:
            header = json.loads(str(arrays["header"]))
        except (KeyError, ValueError):
            raise DataError(f"{path} is not a psatriage model file (no header)") from None
        if header.get("format") != FORMAT:
            raise DataError(f"{path} is not a psatriage model file")
        if header.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{path} was written by another version of psatriage (model format "
                f"{header.get('format_version')}, this version reads {FORMAT_VERSION}); "
                "fix: train again with 'psatriage train'"
            )
        report = TrainingReport.from_dict(header["report"])
        try:
            vocabulary = {str(term): i for i, term in enumerate(arrays["vocabulary"].tolist())}
            return cls(
                lexical=Lexical(vocabulary, arrays["idf"]),
                coef=arrays["coef"].astype(np.float32),
                intercept=arrays["intercept"].astype(np.float32),
                classes=tuple(str(c) for c in arrays["classes"].tolist()),
                temperature=float(header["temperature"]),
                report=report,
                embed_weight=float(header["embed_weight"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path} is not a usable psatriage model file ({exc})") from None


def softmax(scores: Matrix) -> Matrix:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)
