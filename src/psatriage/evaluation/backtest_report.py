"""The backtest's report, from its per-ticket results: accuracy per level, the measures of
``evaluation.measures``, the recommended confidence bands, tokens and projected monthly cost, and
taxonomy hygiene. Plain Python; the results are the dictionaries ``evaluation.backtest`` stores.

Bands: ``apply_at`` is the lowest confidence (on a 0.01 grid) at which the decisions at or above
it reach the target precision, with at least ``MIN_SUPPORT`` of them; ``suggest_at`` is the lowest
at which the decisions between it and ``apply_at`` (the review band) are still right
``suggest_target`` of the time. Without an ``apply_at`` the recommended mode is ``suggest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from psatriage.evaluation import fields as field_measures
from psatriage.evaluation import hygiene
from psatriage.evaluation.measures import Failure, Prediction, at_thresholds, report

GRID: Final = tuple(round(step / 100, 2) for step in range(101))
MIN_SUPPORT: Final = 10  # decisions a band needs before its precision is trusted
DAYS_PER_MONTH: Final = 365.25 / 12
DEFAULT_TARGET: Final = 0.95
DEFAULT_SUGGEST_TARGET: Final = 0.5

Result = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Bands:
    """The recommended policy: write at or above ``apply_at``, note for review at or above
    ``suggest_at``, record only below; with the precision and share of tickets in each band."""

    mode: str
    apply_at: float | None
    suggest_at: float | None
    target: float
    suggest_target: float
    apply_precision: float
    apply_share: float
    review_precision: float
    review_share: float
    record_share: float
    reason: str


def recommend(
    correct: Sequence[bool],
    confidence: Sequence[float],
    *,
    target: float = DEFAULT_TARGET,
    suggest_target: float = DEFAULT_SUGGEST_TARGET,
) -> Bands:
    total = len(correct)
    rows = at_thresholds(correct, confidence, GRID)
    apply_at = next(
        (r.threshold for r in rows if r.precision >= target and r.coverage * total >= MIN_SUPPORT),
        None,
    )
    ceiling = 2.0 if apply_at is None else apply_at  # the review band lies below apply_at
    below = [(ok, p) for ok, p in zip(correct, confidence, strict=True) if p < ceiling]
    band = at_thresholds([ok for ok, _ in below], [p for _, p in below], GRID)
    suggest_at = next(
        (
            r.threshold
            for r in band
            if r.precision >= suggest_target and r.coverage * len(below) >= MIN_SUPPORT
        ),
        apply_at,  # no review band is right often enough: below apply_at, record only
    )

    def share(low: float | None, high: float) -> tuple[float, float]:
        picked = [
            ok
            for ok, p in zip(correct, confidence, strict=True)
            if low is not None and low <= p < high
        ]
        precision = sum(picked) / len(picked) if picked else 0.0
        return precision, len(picked) / total if total else 0.0

    apply_precision, apply_share = share(apply_at, 2.0)
    review_precision, review_share = share(suggest_at, ceiling)
    if apply_at is None:
        reason = (
            f"no confidence reaches {target:.0%} precision on {MIN_SUPPORT} or more tickets: "
            "suggest (notes for review) until a trained model or better categories get there"
        )
    else:
        reason = (
            f"at {apply_at:.2f} and above: {apply_share:.0%} of tickets, {apply_precision:.1%} "
            f"of them right (target {target:.0%})"
        )
    return Bands(
        mode="suggest" if apply_at is None else "apply",
        apply_at=apply_at,
        suggest_at=suggest_at,
        target=target,
        suggest_target=suggest_target,
        apply_precision=apply_precision,
        apply_share=apply_share,
        review_precision=review_precision,
        review_share=review_share,
        record_share=max(0.0, 1.0 - apply_share - review_share),
        reason=reason,
    )


def _prefix(path: Sequence[Sequence[str]], levels: int) -> tuple[tuple[str, str], ...]:
    return tuple((step[0], step[1]) for step in path[:levels])


def level_accuracy(answered: Sequence[Result]) -> dict[str, float]:
    """Right at the first level, at the first two, and on the whole path."""
    found = {"first_level": 0, "first_two_levels": 0, "full_path": 0}
    for result in answered:
        truth, chosen = result["truth"]["path"], result["predicted"]["path"]
        found["first_level"] += _prefix(truth, 1) == _prefix(chosen, 1)
        found["first_two_levels"] += _prefix(truth, 2) == _prefix(chosen, 2)
        found["full_path"] += result["truth"]["key"] == result["predicted"]["key"]
    return {name: count / len(answered) if answered else 0.0 for name, count in found.items()}


def cost(
    predictions: Sequence[Prediction], failures: Sequence[Failure], volume: Mapping[str, Any]
) -> dict[str, Any]:
    """Tokens and cost per ticket, and projected per month at the measured ticket volume."""
    spent: list[Prediction | Failure] = [*predictions, *failures]
    scored = len(spent) or 1
    tokens_in = sum(s.tokens_in for s in spent)
    tokens_out = sum(s.tokens_out for s in spent)
    cost_usd = sum(s.cost_usd for s in spent)
    days = max(float(volume.get("days", 0.0)), 1.0)
    monthly = float(volume.get("tickets", 0)) / days * DAYS_PER_MONTH
    return {
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": cost_usd,
        "tokens_per_ticket": (tokens_in + tokens_out) / scored,
        "cost_per_ticket_usd": cost_usd / scored,
        "volume": dict(volume),
        "tickets_per_month": monthly,
        "tokens_per_month": (tokens_in + tokens_out) / scored * monthly,
        "cost_per_month_usd": cost_usd / scored * monthly,
    }


def summarize(
    results: Sequence[Result],
    offered: Mapping[str, str],
    volume: Mapping[str, Any],
    *,
    target: float = DEFAULT_TARGET,
    suggest_target: float = DEFAULT_SUGGEST_TARGET,
) -> dict[str, Any]:
    """The report of a finished backtest (JSON-ready)."""
    answered = [r for r in results if r.get("failure") is None]
    predictions = [
        Prediction(
            truth=r["truth"]["key"],
            predicted=r["predicted"]["key"],
            confidence=r["confidence"],
            latency_ms=r["latency_ms"],
            engine=r["engine"],
            tokens_in=r["tokens_in"],
            tokens_out=r["tokens_out"],
            cost_usd=r["cost_usd"],
        )
        for r in answered
    ]
    failures = [
        Failure(
            ticket_id=r["ticket"],
            kind=r["failure"]["kind"],
            message=r["failure"]["message"],
            latency_ms=r["latency_ms"],
            tokens_in=r["tokens_in"],
            tokens_out=r["tokens_out"],
            cost_usd=r["cost_usd"],
        )
        for r in results
        if r.get("failure") is not None
    ]
    measured = report(predictions, target_precision=target, failures=failures)
    labels = dict(offered)
    for r in results:
        labels[r["truth"]["key"]] = r["truth"]["label"]
        if r.get("predicted"):
            labels[r["predicted"]["key"]] = r["predicted"]["label"]
    bands = recommend(
        [p.truth == p.predicted for p in predictions],
        [p.confidence for p in predictions],
        target=target,
        suggest_target=suggest_target,
    )
    finals = [
        hygiene.FinalCategory(
            key=r["truth"]["key"],
            label=r["truth"]["label"],
            names=tuple(step[2] for step in r["truth"]["path"]),
            placeholder=r["truth"]["placeholder"],
            offered=r["truth"]["offered"],
        )
        for r in results
    ]
    found = hygiene.check(
        finals, offered, [(p.truth, p.predicted) for p in predictions if p.truth != p.predicted]
    )
    return {
        "tickets": len(results),
        "answered": measured.examples,
        "failed": measured.failed,
        "failures": measured.failures,
        "failure_examples": [asdict(f) for f in measured.failure_examples],
        "accuracy": level_accuracy(answered),
        "macro_f1": measured.macro_f1,
        "ece": measured.ece,
        "thresholds": [asdict(row) for row in measured.thresholds],
        "policy": asdict(bands),
        "cost": cost(predictions, failures, volume),
        "engines": measured.engines,
        "latency_p50_ms": measured.latency_p50_ms,
        "latency_p99_ms": measured.latency_p99_ms,
        "classes": [
            asdict(row) | {"key": row.label, "label": labels.get(row.label, row.label)}
            for row in measured.classes
        ],
        "confused": [
            {"truth": labels.get(t, t), "predicted": labels.get(p, p), "count": n}
            for t, p, n in measured.confused
        ],
        "hygiene": found.to_dict(),
        "fields": field_measures.summarize(r.get("fields") or {} for r in answered),
    }
