"""A supervised model of one tenant's categories, its file format, and its scoring (numpy only).

Features (``features``): TF-IDF blocks of words, character n-grams and the title, beside the
ticket's static embedding (``embed``). A category path is scored level by level: the first level
(``Hardware``) by one linear model over all its values, each lower level by one model per parent
choosing among that parent's children (``Hardware/Printer`` against ``Hardware/Laptop``), each
turned into log-probabilities by a softmax among siblings with the level's own temperature. A
path's score is the sum of its levels' (a path is only as likely as its levels together: the
product of each level's probability given the one above), and a last temperature, fitted on
out-of-fold scores, turns path scores into probabilities. Last, the best category's probability
is calibrated (a slope and a bias of its logit, fitted on out-of-fold decisions; the others are
rescaled and keep their order), so ``confidence`` means "how often a decision this confident was
right" on the tenant's history. Flat labels have one level.

Fitting is in ``training`` (scikit-learn); scoring here needs only numpy, so a service that only
predicts never loads scikit-learn or SciPy (about 100 MB). Categories with fewer than
``min_examples`` tickets are left out: at prediction time they are scored zero-shot (see
``ranker``), and the training report lists them.

A model is one compressed ``.npz`` file of plain arrays (no pickle): each block's vocabulary and
IDF weights, the coefficients (float16), the nodes of every level and their sibling groups, each
path's rows and a JSON header with the format version, the temperatures, the calibration and the
report. Format 2 (one group per level, no calibration) is still read; a file of another format
version is refused with a message that says to train again.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from psatriage.local_engine import DataError
from psatriage.local_engine.features import BLOCKS, Block, Featurizer, Matrix, Prepared

FORMAT: Final = "psatriage-local-model"
FORMAT_VERSION: Final = 3  # 3: sibling groups per level, calibration of the best's confidence
READABLE_VERSIONS: Final = (2, 3)
EMBED_WEIGHT: Final = 1.0  # the embedding block beside the unit-length TF-IDF blocks


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
    levels: int = 1
    skipped: dict[str, int] = field(default_factory=dict)  # tickets left out, by reason
    version: str = ""  # the store's version name (v0003), set when saved there

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingReport:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Levels:
    """The nodes of every level stacked as rows, grouped by parent, and each leaf's row per level.

    A level's nodes are scored in groups of siblings (the children of one parent, whose model
    chose among them alone); the first level is one group. Rows are ordered by level, then group,
    so each group's rows are contiguous. A model file of format 2 has one group per level.
    """

    names: tuple[str, ...]  # one per row: the level's label prefix
    level: NDArray[np.intp]  # the level of each row
    temperatures: tuple[float, ...]  # one per level
    paths: NDArray[np.intp]  # (leaves, levels): a leaf's row at each level
    group: NDArray[np.intp] | None = None  # each row's group of siblings (0, 1, ...), in order

    def __post_init__(self) -> None:
        if self.group is None:
            self.group = self.level.copy()
        self._starts = np.flatnonzero(np.r_[True, np.diff(self.group) != 0])
        self._row_temperature = np.array(
            [self.temperatures[k] for k in self.level.tolist()], dtype=np.float32
        )

    @property
    def groups(self) -> NDArray[np.intp]:
        assert self.group is not None
        return self.group

    def node_log_probabilities(self, scores: Matrix) -> Matrix:
        """Each row's log-probability among its siblings, one row per text."""
        if scores.shape[1] == 0:
            return scores
        scaled = scores / self._row_temperature
        top = np.maximum.reduceat(scaled, self._starts, axis=1)
        shifted = scaled - top[:, self.groups]
        total = np.log(np.add.reduceat(np.exp(shifted), self._starts, axis=1))
        return np.asarray(shifted - total[:, self.groups], dtype=np.float32)

    def log_probabilities(self, scores: Matrix) -> Matrix:
        """Each leaf's summed log-probability of its levels, one row per text."""
        logs = self.node_log_probabilities(scores)
        out = np.zeros((scores.shape[0], self.paths.shape[0]), dtype=np.float32)
        for k in range(self.paths.shape[1]):
            rows = self.paths[:, k]
            present = rows >= 0
            out[:, present] += logs[:, rows[present]]
        return out


def calibrate_top(probabilities: Matrix, slope: float, bias: float) -> Matrix:
    """Each row's best probability ``p`` mapped to ``sigmoid(slope * logit(p) + bias)``, the
    others rescaled to keep the row's sum and order (the best stays first)."""
    if (slope == 1.0 and bias == 0.0) or probabilities.shape[1] < 2:
        return probabilities
    out = np.array(probabilities, dtype=np.float64)
    rows = np.arange(out.shape[0])
    best = out.argmax(axis=1)
    p = np.clip(out[rows, best], 1e-6, 1 - 1e-6)
    mapped = 1 / (1 + np.exp(-(slope * np.log(p / (1 - p)) + bias)))
    second = np.partition(out, -2, axis=1)[:, -2]
    rest = np.maximum(1 - out[rows, best], 1e-12)
    mapped = np.maximum(mapped, second / (rest + second))  # the best stays the best
    out *= ((1 - mapped) / rest)[:, None]
    out[rows, best] = mapped
    return np.asarray(out, dtype=np.float32)


@dataclass
class TrainedModel:
    """Calibrated probabilities over ``classes`` (the leaf labels) for ticket texts."""

    featurizer: Featurizer
    coef: NDArray[np.float16]  # (rows of every level, lexical features + embedding dimensions)
    intercept: Matrix  # (rows,)
    levels: Levels
    classes: tuple[str, ...]
    temperature: float  # of the path scores
    report: TrainingReport
    embed_weight: float = EMBED_WEIGHT
    calibration: tuple[float, float] = (1.0, 0.0)  # slope and bias of the best's logit
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {name: i for i, name in enumerate(self.classes)}

    def index(self, name: str) -> int | None:
        return self._index.get(name)

    def scores(self, tickets: Sequence[Prepared], vectors: Matrix) -> Matrix:
        """Raw linear scores, one row per ticket, one column per row of ``levels``."""
        width = self.featurizer.width
        out = (vectors * self.embed_weight) @ self.coef[:, width:].T.astype(np.float32)
        out += self.intercept
        for row, ticket in enumerate(tickets):
            columns, values = self.featurizer.row(ticket)
            if len(columns):
                out[row] += self.coef[:, columns].astype(np.float32) @ values
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, tickets: Sequence[Prepared], vectors: Matrix) -> Matrix:
        """Calibrated probabilities, one row per ticket, one column per class."""
        paths = self.levels.log_probabilities(self.scores(tickets, vectors))
        return calibrate_top(softmax(paths / self.temperature), *self.calibration)

    # -- the file --------------------------------------------------------------------------------

    def _arrays(self) -> dict[str, Any]:
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "embed_weight": self.embed_weight,
            "temperature": self.temperature,
            "level_temperatures": list(self.levels.temperatures),
            "calibration": list(self.calibration),
            "blocks": [b.name for b in self.featurizer.blocks],
            "block_weights": self.featurizer.weights,
            "report": self.report.to_dict(),
        }
        arrays: dict[str, Any] = {
            "header": np.array(json.dumps(header)),
            "classes": np.array(self.classes, dtype=str),
            "row_names": np.array(self.levels.names, dtype=str),
            "row_levels": self.levels.level.astype(np.int32),
            "row_groups": self.levels.groups.astype(np.int32),
            "paths": self.levels.paths.astype(np.int32),
            "coef": self.coef.astype(np.float16),
            "intercept": self.intercept.astype(np.float32),
        }
        for block in self.featurizer.blocks:
            terms = sorted(block.vocabulary, key=block.vocabulary.__getitem__)
            arrays[f"vocabulary_{block.name}"] = np.array(terms, dtype=str)
            arrays[f"idf_{block.name}"] = block.idf
        return arrays

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            np.savez_compressed(out, **self._arrays())
        partial.replace(path)  # readers never see half a file

    def to_bytes(self) -> bytes:
        """The model file's content (what the database keeps per model version)."""
        out = io.BytesIO()
        np.savez_compressed(out, **self._arrays())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "the stored model") -> TrainedModel:
        return cls._read(io.BytesIO(data), name)

    @classmethod
    def load(cls, path: Path) -> TrainedModel:
        return cls._read(path, str(path))

    @classmethod
    def _read(cls, source: Path | io.BytesIO, path: str) -> TrainedModel:
        try:
            with np.load(source, allow_pickle=False) as data:
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
        if header.get("format_version") not in READABLE_VERSIONS:
            raise DataError(
                f"{path} was written by another version of psatriage (model format "
                f"{header.get('format_version')}, this version reads "
                f"{' and '.join(str(v) for v in READABLE_VERSIONS)}); "
                "fix: train again with 'psatriage train'"
            )
        try:
            blocks = [_block(name, arrays) for name in header["blocks"]]
            return cls(
                featurizer=Featurizer(blocks, header["block_weights"]),
                coef=arrays["coef"].astype(np.float16),
                intercept=arrays["intercept"].astype(np.float32),
                levels=Levels(
                    names=tuple(str(n) for n in arrays["row_names"].tolist()),
                    level=arrays["row_levels"].astype(np.intp),
                    temperatures=tuple(float(t) for t in header["level_temperatures"]),
                    paths=arrays["paths"].astype(np.intp),
                    group=arrays["row_groups"].astype(np.intp) if "row_groups" in arrays else None,
                ),
                classes=tuple(str(c) for c in arrays["classes"].tolist()),
                temperature=float(header["temperature"]),
                report=TrainingReport.from_dict(header["report"]),
                embed_weight=float(header["embed_weight"]),
                calibration=_pair(header.get("calibration", (1.0, 0.0))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path} is not a usable psatriage model file ({exc})") from None


def _block(name: str, arrays: Mapping[str, Any]) -> Block:
    if name not in BLOCKS:
        raise ValueError(f"unknown feature block {name!r}")
    vocabulary = {str(t): i for i, t in enumerate(arrays[f"vocabulary_{name}"].tolist())}
    return Block(name, vocabulary, arrays[f"idf_{name}"])


def _pair(value: Any) -> tuple[float, float]:
    slope, bias = value
    return float(slope), float(bias)


def softmax(scores: Matrix) -> Matrix:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


def log_softmax(scores: Matrix) -> Matrix:
    shifted = scores - scores.max(axis=1, keepdims=True)
    return np.asarray(
        shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), dtype=np.float32
    )
