"""Accuracy per ticket field (priority, routing, noise...), as the category's is measured.

A scored field is one ticket's true value (``truth``: id and name) and what was decided for it
(``predicted``, None when the answer was outside the field's values and so not decided, which
counts as wrong). ``summarize`` gives, per field: how many tickets were scored and decided, the
accuracy over all scored and over those decided, macro-F1, the calibration error, the
per-value table and the most confused pairs (``psatriage backtest``; ``field_runs`` scores a
field of a labeled file for ``psatriage eval``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psatriage.evaluation.measures import Prediction, report

Scored = Mapping[str, Any]
"""``{"truth": {"id", "name"}, "predicted": {"id", "name"} | None, "confidence": float|None}``"""


def scored(
    truth_id: str, truth_name: str, predicted: tuple[str, str] | None, confidence: float | None
) -> dict[str, Any]:
    """One field of one ticket, JSON-ready (``predicted`` is ``(id, name)``, None: undecided)."""
    return {
        "truth": {"id": truth_id, "name": truth_name},
        "predicted": None if predicted is None else {"id": predicted[0], "name": predicted[1]},
        "confidence": confidence,
    }


def summarize(per_ticket: Iterable[Mapping[str, Scored]], *, shown: int = 20) -> dict[str, Any]:
    """Field name -> its measures, over the tickets' ``{field: scored}`` maps."""
    decided: dict[str, list[Prediction]] = {}
    undecided: dict[str, int] = {}
    for ticket in per_ticket:
        for name, one in ticket.items():
            truth, predicted = one["truth"], one["predicted"]
            if predicted is None:
                undecided[name] = undecided.get(name, 0) + 1
                continue
            # compared by id; a value shown by the truth's name when they match
            same = str(predicted["id"]) == str(truth["id"])
            decided.setdefault(name, []).append(
                Prediction(
                    truth=str(truth["name"]),
                    predicted=str(truth["name"] if same else predicted["name"]),
                    confidence=float(one.get("confidence") or 0.0),
                )
            )
    out: dict[str, Any] = {}
    for name in sorted(set(decided) | set(undecided)):
        predictions = decided.get(name, [])
        measured = report(predictions)
        total = len(predictions) + undecided.get(name, 0)
        right = sum(p.truth == p.predicted for p in predictions)
        out[name] = {
            "tickets": total,
            "decided": len(predictions),
            "accuracy": right / total if total else 0.0,
            "accuracy_decided": measured.accuracy,
            "macro_f1": measured.macro_f1,
            "ece": measured.ece,
            "classes": [
                {
                    "label": c.label,
                    "support": c.support,
                    "precision": c.precision,
                    "recall": c.recall,
                    "f1": c.f1,
                }
                for c in measured.classes[:shown]
            ],
            "confused": [{"truth": t, "predicted": p, "count": n} for t, p, n in measured.confused],
        }
    return out
