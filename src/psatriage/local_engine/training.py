"""Fitting the local engine's model (scikit-learn and SciPy; only ``train`` and ``eval`` load them).

One linear SVM (liblinear, one-vs-rest) per level of the labels on the blocks of ``features``
beside the static embedding. Out-of-fold scores fit each level's softmax temperature and the path
temperature, and give the report's cross-validated accuracy, macro-F1 and calibration error; the
final models are fitted on all kept examples. The settings were chosen on the Endava and CFPB
train splits (docs/PERFORMANCE.md).

What cannot be learned is said, never guessed: tickets left without a word after cleaning are
skipped and counted in the report; categories with fewer than ``min_examples`` tickets are left
to zero-shot and listed; fewer than two learnable categories is a ``DataError`` naming them.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from psatriage.evaluation.measures import accuracy, expected_calibration_error, macro_f1
from psatriage.local_engine import DEFAULT_MIN_EXAMPLES, DataError
from psatriage.local_engine.data import split_path
from psatriage.local_engine.embed import Embedder
from psatriage.local_engine.features import (
    BLOCKS,
    Block,
    Featurizer,
    Matrix,
    Prepared,
    analyzer,
    prepare,
)
from psatriage.local_engine.model import (
    EMBED_WEIGHT,
    Levels,
    TrainedModel,
    TrainingReport,
    softmax,
)

_C: Final = 0.3
_FOLDS: Final = 3
_BLOCK_WEIGHTS: Final = {"words": 1.0, "chars": 1.0, "title": 0.5}
_MAX_CHAR_TERMS: Final = 40_000  # the most frequent character n-grams (memory and speed)
_STOP: Final = " ∎"  # marks a path that ends above this level
_HAS_WORD: Final = re.compile(r"\w\w")
_Job = TypeVar("_Job")
_Result = TypeVar("_Result")


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    embedder: Embedder,
    *,
    label: str = "",
    source: str = "",
    min_examples: int = DEFAULT_MIN_EXAMPLES,
) -> TrainedModel:
    """Fit a model on labeled ticket texts. Raises ``DataError`` when there is too little data."""
    started = time.perf_counter()
    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    where = source or "the data"
    prepared = [prepare(text) for text in texts]
    readable = [i for i, p in enumerate(prepared) if _HAS_WORD.search(p.text)]
    skipped = (
        {"empty after cleaning": len(texts) - len(readable)} if len(readable) < len(texts) else {}
    )
    counts = Counter(labels[i] for i in readable)
    kept = sorted(name for name, n in counts.items() if n >= min_examples)
    rare = {name: n for name, n in sorted(counts.items()) if n < min_examples}
    if len(kept) < 2:
        raise DataError(_too_few(where, counts, kept, min_examples, len(texts) - len(readable)))
    keep = set(kept)
    rows = [i for i in readable if labels[i] in keep]
    tickets = [prepared[i] for i in rows]
    kept_labels = [labels[i] for i in rows]
    blocks, lexical = _fit_blocks(tickets)
    featurizer = Featurizer(blocks, _BLOCK_WEIGHTS)
    vectors = embedder.embed([t.text for t in tickets])
    features = csr_matrix(hstack([lexical, csr_matrix(vectors * EMBED_WEIGHT)], format="csr"))
    paths = _paths(kept)
    targets, levels_of = _level_targets(kept_labels, paths)

    scores, usable = _out_of_fold(features, targets)
    level_t = tuple(
        _fit_temperature(scores[k][usable], _truth(targets[k], names)[usable])
        for k, names in enumerate(levels_of)
    )
    shape = _levels(levels_of, level_t, tuple(kept), paths)
    stacked = np.hstack(scores)
    path_scores = shape.log_probabilities(stacked[usable])
    truth = np.array([kept.index(name) for name in kept_labels], dtype=np.intp)[usable]
    temperature = _fit_temperature(path_scores, truth)
    probabilities = softmax(path_scores / temperature)
    predicted = [kept[i] for i in probabilities.argmax(axis=1)]
    expected = [kept[i] for i in truth]
    confidence = probabilities.max(axis=1)
    correct = [p == t for p, t in zip(predicted, expected, strict=True)]

    fitted = _in_parallel(
        lambda k: _fit(features, targets[k], levels_of[k]), list(range(len(levels_of)))
    )
    coef = np.vstack([c for c, _ in fitted]).astype(np.float16)
    intercept = np.concatenate([i for _, i in fitted]).astype(np.float32)
    report = TrainingReport(
        label=label,
        source=source,
        examples=len(rows),
        classes=len(kept),
        min_examples=min_examples,
        zero_shot=rare,
        cv_accuracy=round(accuracy(expected, predicted), 4),
        cv_macro_f1=round(macro_f1(expected, predicted), 4),
        cv_ece=round(expected_calibration_error(correct, confidence.tolist()), 4),
        temperature=round(temperature, 5),
        seconds=round(time.perf_counter() - started, 2),
        trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        psatriage_version=_own_version(),
        embedder=embedder.name,
        levels=len(levels_of),
        skipped=skipped,
    )
    return TrainedModel(featurizer, coef, intercept, shape, tuple(kept), temperature, report)


def _too_few(
    where: str, counts: Counter[str], kept: list[str], min_examples: int, empty: int
) -> str:
    found = ", ".join(f"{name!r} ({n})" for name, n in counts.most_common(5)) or "none"
    text = (
        f"{where}: training needs at least two categories with {min_examples} or more "
        f"tickets each; found {len(kept)} (categories: {found})"
    )
    if empty:
        text += f"; {empty} tickets had no words left after removing e-mail boilerplate"
    if len(counts) < 2:
        return text + "; fix: label tickets of more than one category"
    return text + f"; fix: label more tickets, or lower --min-examples (now {min_examples})"


def _fit_blocks(tickets: Sequence[Prepared]) -> tuple[list[Block], csr_matrix]:
    """The fitted blocks, and the tickets' lexical features (weights applied)."""
    blocks, parts = [], []
    for name in BLOCKS:
        vectorizer = TfidfVectorizer(
            analyzer=analyzer(name),
            min_df=2 if len(tickets) >= 50 else 1,
            sublinear_tf=True,
            dtype=np.float32,
            max_features=_MAX_CHAR_TERMS if name == "chars" else None,
        )
        try:
            matrix = vectorizer.fit_transform(tickets)
        except ValueError:  # no term at all (e.g. no ticket has a title): the block is empty
            blocks.append(Block(name, {}, np.zeros(0, dtype=np.float32)))
            continue
        blocks.append(Block(name, vectorizer.vocabulary_, vectorizer.idf_))
        parts.append(matrix * _BLOCK_WEIGHTS[name])
    return blocks, csr_matrix(hstack(parts, format="csr"), dtype=np.float32)


def _paths(classes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each class's levels; flat names when most classes have one level (a "/" in a few names
    is then part of the name, not a level)."""
    parts = {name: split_path(name) for name in classes}
    if sum(len(p) > 1 for p in parts.values()) * 2 < len(parts):
        return {name: (name,) for name in classes}
    return parts


def _level_targets(
    labels: Sequence[str], paths: dict[str, tuple[str, ...]]
) -> tuple[list[NDArray[Any]], list[tuple[str, ...]]]:
    """Each example's class at each level (the label's prefix, or a stop mark below its end),
    and each level's classes in order."""
    depth = max(len(p) for p in paths.values())
    targets = [np.array([_prefix(paths[name], k) for name in labels]) for k in range(depth)]
    return targets, [tuple(sorted(set(t.tolist()))) for t in targets]


def _prefix(parts: tuple[str, ...], k: int) -> str:
    return "/".join(parts[: k + 1]) if len(parts) > k else "/".join(parts) + _STOP


def _levels(
    levels_of: Sequence[tuple[str, ...]],
    temperatures: tuple[float, ...],
    classes: tuple[str, ...],
    paths: dict[str, tuple[str, ...]],
) -> Levels:
    names = [name for names in levels_of for name in names]
    level = np.array([k for k, names in enumerate(levels_of) for _ in names], dtype=np.intp)
    offsets = np.cumsum([0] + [len(n) for n in levels_of])
    rows = [
        [offsets[k] + levels_of[k].index(_prefix(paths[c], k)) for k in range(len(levels_of))]
        for c in classes
    ]
    return Levels(tuple(names), level, temperatures, np.array(rows, dtype=np.intp))


def _truth(target: NDArray[Any], names: tuple[str, ...]) -> NDArray[np.intp]:
    position = {name: i for i, name in enumerate(names)}
    return np.array([position[t] for t in target.tolist()], dtype=np.intp)


def _fit(
    features: csr_matrix, labels: NDArray[Any], classes: tuple[str, ...]
) -> tuple[Matrix, Matrix]:
    """Coefficients with one row per class, in ``classes`` order (a single class: a constant)."""
    if len(classes) == 1:
        return np.zeros((1, features.shape[1]), dtype=np.float32), np.zeros(1, dtype=np.float32)
    svm = LinearSVC(C=_C, random_state=0)
    svm.fit(features, labels)
    coef = np.asarray(svm.coef_, dtype=np.float32)
    intercept = np.asarray(svm.intercept_, dtype=np.float32)
    fitted = [str(c) for c in svm.classes_]
    if len(fitted) == 2:  # liblinear's binary case: one row scores the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
    out = np.full((len(classes), features.shape[1]), 0.0, dtype=np.float32)
    bias = np.full(len(classes), -1e4, dtype=np.float32)  # a class this fold never saw
    for row, name in enumerate(fitted):
        index = classes.index(name)
        out[index], bias[index] = coef[row], intercept[row]
    return out, bias


def _out_of_fold(
    features: csr_matrix, targets: Sequence[NDArray[Any]]
) -> tuple[list[Matrix], NDArray[np.bool_]]:
    """Each level's scores of each example by models that did not see it, and which examples
    are usable (their leaf was seen in training)."""
    leaves = targets[-1]
    folds = list(KFold(min(_FOLDS, len(leaves)), shuffle=True, random_state=0).split(leaves))
    levels_of = [tuple(sorted(set(t.tolist()))) for t in targets]
    scores = [np.zeros((len(leaves), len(n)), dtype=np.float32) for n in levels_of]
    usable = np.ones(len(leaves), dtype=bool)
    jobs = [(k, fit_rows, held_rows) for fit_rows, held_rows in folds for k in range(len(targets))]

    def fold(job: tuple[int, NDArray[np.intp], NDArray[np.intp]]) -> None:
        k, fit_rows, held_rows = job
        present = tuple(sorted(set(targets[k][fit_rows].tolist())))
        coef, bias = _fit(features[fit_rows], targets[k][fit_rows], present)
        part = np.full((len(held_rows), len(levels_of[k])), -1e4, dtype=np.float32)
        part[:, [levels_of[k].index(p) for p in present]] = (
            np.asarray(features[held_rows] @ coef.T) + bias
        )
        scores[k][held_rows] = part

    _in_parallel(fold, jobs)
    for fit_rows, held_rows in folds:
        seen = set(leaves[fit_rows].tolist())
        usable[held_rows] = np.array([leaves[r] in seen for r in held_rows])
    return scores, usable


def _in_parallel(work: Callable[[_Job], _Result], jobs: Sequence[_Job]) -> list[_Result]:
    """``work`` on each job, on as many threads as cores (liblinear releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        return list(pool.map(work, jobs))


def _fit_temperature(scores: Matrix, truth: NDArray[np.intp]) -> float:
    """The softmax temperature that minimizes the negative log-likelihood of ``truth``."""
    if len(truth) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        p = softmax(scores / np.exp(log_t))
        return float(-np.log(np.maximum(p[np.arange(len(truth)), truth], 1e-12)).mean())

    found = minimize_scalar(loss, bounds=(np.log(0.01), np.log(10.0)), method="bounded")
    return float(np.exp(found.x))


def _own_version() -> str:
    try:
        return version("psatriage")
    except PackageNotFoundError:
        return "unknown"
