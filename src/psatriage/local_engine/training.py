"""Fitting the local engine's model (scikit-learn and SciPy; only ``train`` and ``eval`` load them).

A linear SVM (liblinear, one-vs-rest) on TF-IDF of words and word pairs beside the static
embedding; three-fold out-of-fold scores fit the softmax temperature and give the report's
cross-validated accuracy, macro-F1 and calibration error; the final model is fitted on all kept
examples. The regularization was chosen once on the Endava and CFPB train splits.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from psatriage.evaluation.measures import accuracy, expected_calibration_error, macro_f1
from psatriage.local_engine import DEFAULT_MIN_EXAMPLES, DataError
from psatriage.local_engine.embed import Embedder
from psatriage.local_engine.model import (
    EMBED_WEIGHT,
    WORD_PATTERN,
    Lexical,
    Matrix,
    TrainedModel,
    TrainingReport,
    softmax,
)

_C: Final = 0.3
_FOLDS: Final = 3


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
    counts = Counter(labels)
    kept = sorted(name for name, n in counts.items() if n >= min_examples)
    rare = {name: n for name, n in sorted(counts.items()) if n < min_examples}
    if len(kept) < 2:
        raise DataError(
            f"{source or 'the data'}: training needs at least two categories with "
            f"{min_examples} or more examples each; found {len(kept)}"
        )
    keep = set(kept)
    rows = [i for i, name in enumerate(labels) if name in keep]
    kept_texts = [texts[i] for i in rows]
    kept_labels = np.array([labels[i] for i in rows])
    words = TfidfVectorizer(
        min_df=2 if len(rows) >= 50 else 1,
        ngram_range=(1, 2),
        sublinear_tf=True,
        token_pattern=WORD_PATTERN,
        dtype=np.float32,
    )
    words.fit(kept_texts)
    vectors = embedder.embed(kept_texts)
    features = _features(words, kept_texts, vectors, EMBED_WEIGHT)

    scores, truth = _out_of_fold(features, kept_labels)
    temperature = _fit_temperature(scores, truth)
    probabilities = softmax(scores / temperature)
    classes = tuple(kept)
    predicted = [classes[i] for i in probabilities.argmax(axis=1)]
    expected = [classes[i] for i in truth]
    confidence = probabilities.max(axis=1)
    correct = [p == t for p, t in zip(predicted, expected, strict=True)]

    coef, intercept = _fit(features, kept_labels, classes)
    report = TrainingReport(
        label=label,
        source=source,
        examples=len(rows),
        classes=len(classes),
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
    )
    lexical = Lexical(words.vocabulary_, words.idf_)
    return TrainedModel(lexical, coef, intercept, classes, temperature, report)


def _features(
    words: TfidfVectorizer, texts: Sequence[str], vectors: Matrix, weight: float
) -> csr_matrix:
    lexical = words.transform(texts)
    return csr_matrix(hstack([lexical, csr_matrix(vectors * weight)], format="csr"))


def _fit(
    features: csr_matrix, labels: NDArray[Any], classes: tuple[str, ...]
) -> tuple[Matrix, Matrix]:
    """Coefficients with one row per class, in ``classes`` order (two rows for two classes)."""
    svm = LinearSVC(C=_C, random_state=0)
    svm.fit(features, labels)
    coef = np.asarray(svm.coef_, dtype=np.float32)
    intercept = np.asarray(svm.intercept_, dtype=np.float32)
    fitted = [str(c) for c in svm.classes_]
    if len(fitted) == 2:  # liblinear's binary case: one row scores the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
    order = [fitted.index(name) for name in classes]
    return coef[order], intercept[order]


def _out_of_fold(features: csr_matrix, labels: NDArray[Any]) -> tuple[Matrix, NDArray[np.intp]]:
    """Scores of each example by a model that did not see it (all classes, -inf if unknown)."""
    classes = sorted(set(labels.tolist()))
    position = {name: i for i, name in enumerate(classes)}
    folds = min(_FOLDS, len(labels))
    scores = np.zeros((len(labels), len(classes)), dtype=np.float32)
    usable = np.ones(len(labels), dtype=bool)
    for fit_rows, held_rows in KFold(folds, shuffle=True, random_state=0).split(labels):
        seen = sorted(set(labels[fit_rows].tolist()))
        if len(seen) < 2:
            usable[held_rows] = False
            continue
        coef, intercept = _fit(features[fit_rows], labels[fit_rows], tuple(seen))
        part = np.full((len(held_rows), len(classes)), -1e4, dtype=np.float32)
        part[:, [position[s] for s in seen]] = np.asarray(features[held_rows] @ coef.T) + intercept
        scores[held_rows] = part
        known = set(seen)
        usable[held_rows] &= np.array([labels[r] in known for r in held_rows])
    truth = np.array([position[name] for name in labels.tolist()], dtype=np.intp)
    return scores[usable], truth[usable]


def _fit_temperature(scores: Matrix, truth: NDArray[np.intp]) -> float:
    """The softmax temperature that minimizes the out-of-fold negative log-likelihood."""
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
