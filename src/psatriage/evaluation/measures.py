"""Accuracy measures for ``psatriage eval`` and for training reports: plain Python, no I/O.

``report(predictions)`` gives everything the eval command shows: accuracy, macro-F1, a
per-class precision/recall table, the most confused pairs, precision and coverage at confidence
thresholds (and the lowest threshold that reaches a target precision), the expected calibration
error, latency percentiles, and tokens and cost for engines that call an LLM. Tickets the
engine could not answer are ``Failure``s: counted by kind, their calls' latency, tokens and cost
included in the totals, and left out of the accuracy measures (which cover answered tickets).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

THRESHOLDS: Final = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One scored example: the true label, what the engine chose, and what it cost."""

    truth: str
    predicted: str
    confidence: float
    latency_ms: float = 0.0
    engine: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    """A ticket the engine gave no answer for: what kind of error, its message, and the calls'
    cost (failed calls take time and may be billed)."""

    ticket_id: str
    kind: str
    message: str
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class ClassRow:
    label: str
    support: int
    predicted: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    threshold: float
    coverage: float  # share of examples at or above the threshold
    precision: float  # accuracy among them


@dataclass(frozen=True)
class Report:
    examples: int
    accuracy: float
    macro_f1: float
    ece: float
    target_precision: float
    threshold_for_target: float | None
    thresholds: list[ThresholdRow]
    classes: list[ClassRow]
    confused: list[tuple[str, str, int]]
    latency_p50_ms: float
    latency_p99_ms: float
    tokens_in: int
    tokens_out: int
    cost_usd: float
    engines: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # kind -> tickets
    failure_examples: list[Failure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["confused"] = [{"truth": t, "predicted": p, "count": n} for t, p, n in self.confused]
        return data


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    if not truth:
        return 0.0
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


def per_class(truth: Sequence[str], predicted: Sequence[str]) -> list[ClassRow]:
    """Precision, recall and F1 of every label that is true or predicted at least once."""
    support, chosen = Counter(truth), Counter(predicted)
    hits = Counter(t for t, p in zip(truth, predicted, strict=True) if t == p)
    rows = []
    for label in sorted(set(support) | set(chosen)):
        precision = hits[label] / chosen[label] if chosen[label] else 0.0
        recall = hits[label] / support[label] if support[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(ClassRow(label, support[label], chosen[label], precision, recall, f1))
    rows.sort(key=lambda r: (-r.support, r.label))
    return rows


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """The mean F1 over the labels that occur in ``truth`` (a label that is only ever predicted
    lowers the precision of nothing here, but its wrong answers lower the recall of the true
    labels)."""
    rows = [r for r in per_class(truth, predicted) if r.support]
    return sum(r.f1 for r in rows) / len(rows) if rows else 0.0


def confused_pairs(
    truth: Sequence[str], predicted: Sequence[str], top: int = 10
) -> list[tuple[str, str, int]]:
    """The most frequent (true, predicted) mistakes."""
    pairs = Counter((t, p) for t, p in zip(truth, predicted, strict=True) if t != p)
    return [(t, p, n) for (t, p), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))][:top]


def at_thresholds(
    correct: Sequence[bool], confidence: Sequence[float], thresholds: Sequence[float] = THRESHOLDS
) -> list[ThresholdRow]:
    rows = []
    total = len(correct)
    for threshold in thresholds:
        kept = [c for c, p in zip(correct, confidence, strict=True) if p >= threshold]
        rows.append(
            ThresholdRow(
                threshold,
                len(kept) / total if total else 0.0,
                sum(kept) / len(kept) if kept else 0.0,
            )
        )
    return rows


def threshold_for_precision(
    correct: Sequence[bool], confidence: Sequence[float], target: float, *, min_support: int = 10
) -> float | None:
    """The lowest confidence threshold whose decisions reach ``target`` precision (None if none
    does with at least ``min_support`` decisions): writing above it would be that precise."""
    ranked = sorted(zip(confidence, correct, strict=True), key=lambda pair: -pair[0])
    best: float | None = None
    hits = 0
    for count, (threshold, ok) in enumerate(ranked, start=1):
        hits += ok
        next_lower = ranked[count][0] if count < len(ranked) else -1.0
        if next_lower == threshold:
            continue  # a threshold keeps every tie
        if count >= min_support and hits / count >= target:
            best = threshold
    return best


def expected_calibration_error(
    correct: Sequence[bool], confidence: Sequence[float], bins: int = 10
) -> float:
    """The gap between confidence and accuracy, averaged over equal-width confidence bins and
    weighted by how many decisions fall in each."""
    if not correct:
        return 0.0
    totals = [0] * bins
    hits = [0.0] * bins
    sums = [0.0] * bins
    for ok, p in zip(correct, confidence, strict=True):
        index = min(bins - 1, max(0, int(p * bins)))
        totals[index] += 1
        hits[index] += ok
        sums[index] += p
    gap = sum(abs(hits[i] - sums[i]) for i in range(bins) if totals[i])
    return gap / len(correct)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def report(
    predictions: Sequence[Prediction],
    *,
    target_precision: float = 0.9,
    failures: Sequence[Failure] = (),
    examples_per_kind: int = 3,
) -> Report:
    truth = [p.truth for p in predictions]
    predicted = [p.predicted for p in predictions]
    confidence = [p.confidence for p in predictions]
    correct = [p.truth == p.predicted for p in predictions]
    latencies = [p.latency_ms for p in predictions] + [f.latency_ms for f in failures]
    kinds = Counter(f.kind for f in failures)
    shown: Counter[str] = Counter()
    examples = []
    for failure in failures:
        if shown[failure.kind] < examples_per_kind:
            shown[failure.kind] += 1
            examples.append(failure)
    spent: list[Prediction | Failure] = [*predictions, *failures]
    return Report(
        examples=len(predictions),
        accuracy=accuracy(truth, predicted),
        macro_f1=macro_f1(truth, predicted),
        ece=expected_calibration_error(correct, confidence),
        target_precision=target_precision,
        threshold_for_target=threshold_for_precision(correct, confidence, target_precision),
        thresholds=at_thresholds(correct, confidence),
        classes=per_class(truth, predicted),
        confused=confused_pairs(truth, predicted),
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
        tokens_in=sum(p.tokens_in for p in spent),
        tokens_out=sum(p.tokens_out for p in spent),
        cost_usd=sum(p.cost_usd for p in spent),
        engines=dict(Counter(p.engine for p in predictions if p.engine)),
        failed=len(failures),
        failures=dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        failure_examples=examples,
    )
