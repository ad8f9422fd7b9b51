"""Fitting the local engine's model (scikit-learn and SciPy; only ``train`` and ``eval`` load them).

Linear SVMs (liblinear, one-vs-rest) on the blocks of ``features`` beside the static embedding:
one over the first level of the labels, and below it one per parent over that parent's children,
fitted on the tickets of that parent only (the hierarchy makes each fit small: training on 10,000
three-level tickets costs about a third of one model per level over all nodes). Out-of-fold
scores fit each level's softmax temperature, the path temperature and the calibration of the
best category's confidence, and give the report's cross-validated accuracy, macro-F1 and
calibration error; the final models are fitted on all kept examples. The settings were chosen on
the Endava and CFPB train splits (docs/PERFORMANCE.md).

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
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar
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
    calibrate_top,
    softmax,
)

_C: Final = 0.3
_C_BELOW: Final = 0.15  # a parent's model learns from its own tickets only: more regularized
_FOLDS: Final = 3
_BLOCK_WEIGHTS: Final = {"words": 1.0, "chars": 1.0, "title": 0.5}
_MAX_CHAR_TERMS: Final = 40_000  # the most frequent character n-grams (memory and speed)
_STOP: Final = " ∎"  # marks a path that ends above this level
_MIN_CALIBRATION: Final = 50  # out-of-fold decisions needed to fit the confidence calibration
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
    tree = _tree(kept_labels, paths)
    scores, usable = _out_of_fold(features, tree)
    level_t = tuple(
        _fit_level_temperature(scores[k][usable], tree, k, usable) for k in range(tree.depth)
    )
    shape = _levels(tree, level_t, tuple(kept), paths)
    stacked = np.hstack(scores)
    path_scores = shape.log_probabilities(stacked[usable])
    truth = np.array([kept.index(name) for name in kept_labels], dtype=np.intp)[usable]
    temperature = _fit_temperature(path_scores, truth)
    uncalibrated = softmax(path_scores / temperature)
    calibration = _fit_calibration(uncalibrated, truth)
    probabilities = calibrate_top(uncalibrated, *calibration)
    predicted = [kept[i] for i in probabilities.argmax(axis=1)]
    expected = [kept[i] for i in truth]
    confidence = probabilities.max(axis=1)
    correct = [p == t for p, t in zip(predicted, expected, strict=True)]

    everything = np.arange(len(rows), dtype=np.intp)
    fitted = _fit_levels(features, tree, everything)
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
        levels=tree.depth,
        skipped=skipped,
    )
    return TrainedModel(
        featurizer,
        coef,
        intercept,
        shape,
        tuple(kept),
        temperature,
        report,
        EMBED_WEIGHT,
        calibration,
    )


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


@dataclass(frozen=True)
class _Tree:
    """The labels' levels: each example's node at each level (its label's prefix, or a stop mark
    below the label's end), and each level's nodes grouped by parent, in row order."""

    targets: list[NDArray[Any]]  # per level: each example's node
    nodes: list[tuple[str, ...]]  # per level: the nodes, ordered by parent, then name
    parents: list[tuple[str, ...]]  # per level: each node's parent ("" on the first level)

    @property
    def depth(self) -> int:
        return len(self.targets)

    def groups(self, k: int) -> list[tuple[str, list[int]]]:
        """The parents of level ``k`` in order, each with its children's positions."""
        out: dict[str, list[int]] = {}
        for position, parent in enumerate(self.parents[k]):
            out.setdefault(parent, []).append(position)
        return list(out.items())

    def parent_targets(self, k: int) -> NDArray[Any]:
        """Each example's parent at level ``k`` (its node one level up)."""
        if k == 0:
            return np.full(len(self.targets[0]), "", dtype=object)
        return self.targets[k - 1]


def _tree(labels: Sequence[str], paths: dict[str, tuple[str, ...]]) -> _Tree:
    depth = max(len(p) for p in paths.values())
    targets = [np.array([_prefix(paths[name], k) for name in labels]) for k in range(depth)]
    nodes, parents = [], []
    for k in range(depth):
        parent_of = {_prefix(p, k): (_prefix(p, k - 1) if k else "") for p in set(paths.values())}
        ordered = sorted(parent_of, key=lambda node: (parent_of[node], node))
        nodes.append(tuple(ordered))
        parents.append(tuple(parent_of[node] for node in ordered))
    return _Tree(targets, nodes, parents)


def _prefix(parts: tuple[str, ...], k: int) -> str:
    return "/".join(parts[: k + 1]) if len(parts) > k else "/".join(parts) + _STOP


def _levels(
    tree: _Tree,
    temperatures: tuple[float, ...],
    classes: tuple[str, ...],
    paths: dict[str, tuple[str, ...]],
) -> Levels:
    names = [name for nodes in tree.nodes for name in nodes]
    level = np.array([k for k, nodes in enumerate(tree.nodes) for _ in nodes], dtype=np.intp)
    group_ids: dict[tuple[int, str], int] = {}
    group = []
    for k in range(tree.depth):
        for parent in tree.parents[k]:
            group.append(group_ids.setdefault((k, parent), len(group_ids)))
    offsets = np.cumsum([0] + [len(n) for n in tree.nodes])
    position = [{node: i for i, node in enumerate(nodes)} for nodes in tree.nodes]
    rows = [
        [offsets[k] + position[k][_prefix(paths[c], k)] for k in range(tree.depth)] for c in classes
    ]
    return Levels(
        tuple(names),
        level,
        temperatures,
        np.array(rows, dtype=np.intp),
        np.array(group, dtype=np.intp),
    )


def _fit(
    features: csr_matrix, labels: NDArray[Any], classes: tuple[str, ...], c: float = _C
) -> tuple[Matrix, Matrix]:
    """Coefficients with one row per class, in ``classes`` order: a class without examples gets
    a bias that rules it out; with fewer than two classes present the others are all alike."""
    present = set(labels.tolist())
    width = features.shape[1]
    if len(present) < 2:
        bias = np.array([0.0 if c in present or not present else -1e4 for c in classes])
        return np.zeros((len(classes), width), dtype=np.float32), bias.astype(np.float32)
    svm = LinearSVC(C=c, random_state=0)
    svm.fit(features, labels)
    coef = np.asarray(svm.coef_, dtype=np.float32)
    intercept = np.asarray(svm.intercept_, dtype=np.float32)
    fitted = [str(c) for c in svm.classes_]
    if len(fitted) == 2:  # liblinear's binary case: one row scores the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
    out = np.full((len(classes), width), 0.0, dtype=np.float32)
    bias = np.full(len(classes), -1e4, dtype=np.float32)  # a class these examples never show
    for row, name in enumerate(fitted):
        index = classes.index(name)
        out[index], bias[index] = coef[row], intercept[row]
    return out, bias


def _fit_levels(
    features: csr_matrix, tree: _Tree, rows: NDArray[np.intp]
) -> list[tuple[Matrix, Matrix]]:
    """Each level's coefficients and biases (one row per node) from the examples ``rows``: per
    group of siblings, a model over the examples of their parent."""
    jobs = []
    for k in range(tree.depth):
        parent_of = tree.parent_targets(k)[rows]
        for parent, positions in tree.groups(k):
            chosen = rows[parent_of == parent]
            jobs.append((k, positions, chosen))
    jobs.sort(key=lambda job: -len(job[2]) * len(job[1]))  # the biggest fits start first

    def fit(job: tuple[int, list[int], NDArray[np.intp]]) -> tuple[Matrix, Matrix]:
        k, positions, chosen = job
        kids = tuple(tree.nodes[k][i] for i in positions)
        if len(kids) == 1:
            return np.zeros((1, features.shape[1]), np.float32), np.zeros(1, np.float32)
        c = _C if k == 0 else _C_BELOW
        return _fit(features[chosen], tree.targets[k][chosen], kids, c)

    results = _in_parallel(fit, jobs)
    out = []
    for k in range(tree.depth):
        coef = np.zeros((len(tree.nodes[k]), features.shape[1]), dtype=np.float32)
        bias = np.zeros(len(tree.nodes[k]), dtype=np.float32)
        for (level, positions, _), (c, b) in zip(jobs, results, strict=True):
            if level == k:
                coef[positions], bias[positions] = c, b
        out.append((coef, bias))
    return out


def _out_of_fold(features: csr_matrix, tree: _Tree) -> tuple[list[Matrix], NDArray[np.bool_]]:
    """Each level's scores of each example by models that did not see it, and which examples
    are usable (their leaf was seen in training)."""
    leaves = tree.targets[-1]
    folds = list(KFold(min(_FOLDS, len(leaves)), shuffle=True, random_state=0).split(leaves))
    scores = [np.zeros((len(leaves), len(n)), dtype=np.float32) for n in tree.nodes]
    usable = np.ones(len(leaves), dtype=bool)
    for fit_rows, held_rows in folds:
        for k, (coef, bias) in enumerate(_fit_levels(features, tree, fit_rows)):
            scores[k][held_rows] = np.asarray(features[held_rows] @ coef.T) + bias
        seen = set(leaves[fit_rows].tolist())
        usable[held_rows] = np.array([leaves[r] in seen for r in held_rows])
    return scores, usable


def _fit_level_temperature(scores: Matrix, tree: _Tree, k: int, usable: NDArray[np.bool_]) -> float:
    """Level ``k``'s softmax temperature (among siblings) that best predicts its true nodes."""
    position = {node: i for i, node in enumerate(tree.nodes[k])}
    truth = np.array([position[t] for t in tree.targets[k][usable].tolist()], dtype=np.intp)
    group = np.zeros(len(tree.nodes[k]), dtype=np.intp)
    for number, (_, positions) in enumerate(tree.groups(k)):
        group[positions] = number
    level = np.zeros(len(group), dtype=np.intp)

    def loss(log_t: float) -> float:
        shape = Levels(
            tree.nodes[k], level, (float(np.exp(log_t)),), np.zeros((0, 1), dtype=np.intp), group
        )
        logs = shape.node_log_probabilities(scores)
        return float(-logs[np.arange(len(truth)), truth].mean())

    return _minimize(loss) if len(truth) else 1.0


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

    return _minimize(loss)


def _minimize(loss: Callable[[float], float]) -> float:
    found = minimize_scalar(loss, bounds=(np.log(0.01), np.log(10.0)), method="bounded")
    return float(np.exp(found.x))


def _fit_calibration(probabilities: Matrix, truth: NDArray[np.intp]) -> tuple[float, float]:
    """Slope and bias of the best probability's logit that best predict whether it is right
    (logistic regression on out-of-fold decisions); no change when there is too little to fit."""
    best = probabilities.argmax(axis=1)
    right = (best == truth).astype(np.float64)
    if len(truth) < _MIN_CALIBRATION or right.min() == right.max():
        return 1.0, 0.0
    p = np.clip(probabilities[np.arange(len(best)), best].astype(np.float64), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))

    def loss(params: NDArray[np.float64]) -> float:
        z = params[0] * logit + params[1]
        return float(np.mean(np.logaddexp(0, z) - right * z))

    found = minimize(loss, np.array([1.0, 0.0]), method="Nelder-Mead")
    slope, bias = (float(x) for x in found.x)
    return (slope, bias) if slope > 0 else (1.0, 0.0)


def _own_version() -> str:
    try:
        return version("psatriage")
    except PackageNotFoundError:
        return "unknown"
