"""One ticket field of a labeled file, scored as the service decides it (``psatriage eval
--label priority``).

``evaluate`` asks an LLM engine the field in the same call as the category, an ``enum`` of the
field's values (those in the file for priority and routing; the fixed kinds for noise and
sentiment); ``language`` is detected offline, as the service detects it. The local engine scores
a field as it scores the category (a model trained on the field's values, as
``psatriage.learning.fields`` trains one on a tenant's history); a hybrid's ticket its local half
decides gets the field from such a model too (``learned``), as the service completes a local
answer with its field models.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from psatriage import fields
from psatriage.classifiers.base import Classifier
from psatriage.config.fields import FieldsSettings
from psatriage.config.schema import Policy
from psatriage.domain import Category, Classification, Facet, LevelValue, Taxonomy, Ticket
from psatriage.evaluation.measures import Prediction
from psatriage.evaluation.runs import Progress, Run, Setup, classify_each
from psatriage.fields import language
from psatriage.fields.decide import NOISE
from psatriage.learning.fields import LOCAL_ENGINE, learned_answers
from psatriage.local_engine import DataError
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.model import TrainedModel

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
    learned: TrainedModel | None = None,
) -> Run:
    """Score the field ``setup.label`` on the scored tickets: language offline, the others asked
    of ``classifier`` beside the category (among ``categories``, the file's category level
    where it has one, else one placeholder category). An answer of the local engine (a hybrid's
    made without the LLM) takes the field from ``learned``, the local engine's model of it,
    where it did not answer it."""
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

    def complete(ticket: Ticket, answer: Classification) -> Classification:
        if learned is None or answer.engine != LOCAL_ENGINE or name in answer.fields:
            return answer
        found = learned_answers({name: learned}, ticket, shared_embedder())
        return replace(answer, fields={**answer.fields, **found})

    return classify_each(
        classifier,
        tickets,
        candidates,
        taxonomy_hash=categories.fingerprint if categories is not None else "",
        progress=progress,
        fields=fields.specs(settings, offered),
        read=read,
        complete=complete,
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
