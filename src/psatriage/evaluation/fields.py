"""Accuracy per ticket field (priority, routing, noise...), as the category's is measured.

``evaluate`` scores one field of a labeled file (``psatriage eval --label priority``) as the
service decides it with an LLM: asked in the same call as the category, an ``enum`` of the
field's values (those in the file for priority and routing; the fixed kinds for noise and
sentiment); ``language`` is detected offline, as the service detects it. The local engine scores
a field as it scores the category (a model trained on the field's values: ``psatriage.learning.
fields``).

A scored field is one ticket's true value (``truth``: id and name) and what was decided for it
(``predicted``, None when the answer was outside the field's values and so not decided, which
counts as wrong). ``summarize`` gives, per field: how many tickets were scored and decided, the
accuracy over all scored and over those decided, macro-F1, the calibration error, the
per-value table and the most confused pairs (``psatriage backtest`` and ``psatriage eval``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from psatriage import fields
from psatriage.classifiers.base import Classifier
from psatriage.config.fields import FieldsSettings
from psatriage.config.schema import Policy
from psatriage.domain import Category, Classification, Facet, LevelValue, Taxonomy, Ticket
from psatriage.evaluation.measures import Prediction, report
from psatriage.evaluation.runs import Progress, Run, Setup, classify_each
from psatriage.fields import language
from psatriage.fields.decide import NOISE
from psatriage.local_engine import DataError

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


FILE_FIELDS: Final = ("priority", "routing", "noise", "sentiment", "language")
"""The label levels of a data file that ``psatriage eval`` scores as ticket fields."""
_FIXED: Final[Mapping[str, tuple[str, ...]]] = {
    "noise": tuple(v.id for v in NOISE),
    "sentiment": ("negative", "neutral", "positive"),
}
UNDECIDED: Final = "(not decided)"
_PLACEHOLDER: Final = Category("ticket", (LevelValue("category", "ticket", "Ticket"),))


def evaluate(
    setup: Setup,
    classifier: Classifier[Any] | None,
    *,
    categories: Taxonomy | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
) -> Run:
    """Score the field ``setup.label`` on the scored tickets: language offline, the others asked
    of ``classifier`` beside the category (among ``categories``, the file's category level
    where it has one, else one placeholder category)."""
    name = setup.label
    if name not in FILE_FIELDS:
        raise DataError(f"{name!r} is not a ticket field; fields: {', '.join(FILE_FIELDS)}")
    values = check_values(setup)
    fixed = _FIXED.get(name)
    tickets = [
        (Ticket(id=e.id, title=e.title, description=e.description, scope="eval"), truth)
        for e, truth in setup.scored[:limit]
    ]
    if name == "language":
        return _languages(tickets, progress)
    if classifier is None:
        raise DataError(f"the {name} field needs an engine to ask")
    options = tuple(LevelValue(name, v, v) for v in (fixed or values))
    offered = {name: Facet(name, name.title(), options)}
    settings = FieldsSettings(enabled=(name,))
    candidates = categories.active() if categories is not None else (_PLACEHOLDER,)

    def read(answer: Classification) -> tuple[str, float]:
        decided = fields.decide(settings, answer, offered, Policy())
        if not decided:
            return UNDECIDED, 0.0
        value_id = decided[0].value_id.split(",")[0]  # sentiment: "negative,frustrated"
        confidence = decided[0].confidence
        return value_id, answer.confidence if confidence is None else confidence

    return classify_each(
        classifier,
        tickets,
        candidates,
        taxonomy_hash=categories.fingerprint if categories is not None else "",
        progress=progress,
        fields=fields.specs(settings, offered),
        read=read,
    )


def check_values(setup: Setup) -> tuple[str, ...]:
    """The field's values in the file; raises when noise or sentiment names a value the service
    never decides."""
    values = tuple(leaf.key for leaf in setup.taxonomy.leaves)
    fixed = _FIXED.get(setup.label)
    if fixed is not None and not set(values) <= set(fixed):
        wrong = sorted(set(values) - set(fixed))
        raise DataError(
            f"{setup.path}: {setup.label} values {wrong} are not among {', '.join(fixed)}; the "
            "service decides only those"
        )
    return values


def _languages(tickets: list[tuple[Ticket, str]], progress: Progress | None) -> Run:
    settings = FieldsSettings(enabled=("language",))
    run = Run()
    for ticket, truth in tickets:
        started = time.perf_counter()
        found = language.detect(settings, ticket)
        code, confidence = found if found is not None else (UNDECIDED, 0.0)
        latency = (time.perf_counter() - started) * 1000
        run.predictions.append(Prediction(truth, code, confidence, latency, "offline"))
        if progress is not None:
            progress(1)
    return run
