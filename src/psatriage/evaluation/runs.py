"""One evaluation run: a labeled file, a label level, a split, an engine → predictions.

Shared by ``psatriage eval`` and ``bench/accuracy.py`` so both measure the same thing. Each
ticket goes through the engine's real ``Classifier.classify`` (one ``ClassificationRequest`` per
ticket, with the default prompt), so latency, tokens and cost are what the service would see.

``classify_each`` is the loop any run over labeled tickets uses: a ticket the engine cannot
answer (an invalid answer, a server error after its retries...) is a ``Failure`` of its kind and
the run goes on; only refused credentials stop it, since every later ticket would fail alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psatriage.classifiers.base import ClassificationRequest, Classifier
from psatriage.domain import (
    CallRecorder,
    Category,
    Classification,
    FieldSpec,
    ModelCall,
    Taxonomy,
    Ticket,
)
from psatriage.errors import (
    AuthFailed,
    InvalidAnswer,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.evaluation.measures import Failure, Prediction
from psatriage.local_engine import DEFAULT_MIN_EXAMPLES, DataError
from psatriage.local_engine.data import (
    Example,
    Split,
    labeled,
    read_examples,
    read_taxonomy,
    select,
    taxonomy_from_labels,
)
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.model import TrainedModel
from psatriage.local_engine.training import train
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt

Progress = Callable[[int], None]
Reader = Callable[[Classification], tuple[str, float]]
"""What a run scores of an answer: the value predicted and its confidence."""
Completer = Callable[[Ticket, Classification], Classification]
"""What the service adds to an answer after the call, given the ticket."""


@dataclass
class Setup:
    """What to score and what to train on, read from one file."""

    path: Path
    label: str
    split: Split
    taxonomy: Taxonomy
    scored: list[tuple[Example, str]]
    rest: list[tuple[Example, str]] = field(default_factory=list)


def prepare(path: Path, label: str, split: Split, taxonomy_file: Path | None = None) -> Setup:
    """Read the file, pick the split to score and the rest to train on, build the taxonomy."""
    examples = read_examples(path)
    labeled(examples, label, path)  # an unknown level fails here, naming the file
    scored = select(examples, split)
    other: dict[Split, Split] = {"eval": "train", "train": "eval"}
    rest = select(examples, other[split]) if split in other else []
    scored_pairs = [(e, v) for e in scored if (v := e.labels.get(label))]
    if not scored_pairs:
        raise DataError(f"{path}: the {split} split has no ticket labeled {label!r}")
    rest_pairs = [(e, v) for e in rest if (v := e.labels.get(label))]
    named = read_taxonomy(taxonomy_file) if taxonomy_file is not None else None
    values = [v for _, v in scored_pairs] + [v for _, v in rest_pairs]
    taxonomy = taxonomy_from_labels(values, label, named)
    return Setup(path, label, split, taxonomy, scored_pairs, rest_pairs)


def train_on_rest(setup: Setup, *, min_examples: int = DEFAULT_MIN_EXAMPLES) -> TrainedModel:
    """A model trained on the tickets outside the scored split (the train split for eval)."""
    if not setup.rest:
        raise DataError(
            f"{setup.path}: nothing to train on outside the {setup.split} split; pass --model "
            "or --zero-shot"
        )
    texts = [e.text for e, _ in setup.rest]
    labels = [v for _, v in setup.rest]
    return train(
        texts,
        labels,
        shared_embedder(),
        label=setup.label,
        source=f"{setup.path.name} (all but the {setup.split} split)",
        min_examples=min_examples,
    )


@dataclass
class Run:
    """What a run over labeled tickets gave: the answers, the failures, and why it stopped early
    (``None`` when every ticket was tried)."""

    predictions: list[Prediction] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stopped: str | None = None


STOPPING_KIND = "credentials refused"
"""The failure kind after which a run stops: every later ticket would be refused alike."""


def failure_kind(exc: PsatriageError) -> str:
    """The kind a failure is counted under in a report."""
    if isinstance(exc, InvalidAnswer):
        return "invalid answer"
    if isinstance(exc, TransientError):
        return "server unavailable"
    if isinstance(exc, AuthFailed):
        return STOPPING_KIND
    if isinstance(exc, PermanentError):
        return "request refused"
    return "error"


def score(
    ticket_id: str,
    truth: str,
    classify: Callable[[CallRecorder], Classification],
    read: Reader | None = None,
) -> Prediction | Failure:
    """One labeled ticket: ``classify`` (given where to record its model calls) answers or
    raises. A ``Prediction`` (of ``read(answer)``: the category and its confidence by default),
    or a ``Failure`` of its kind; either with the latency, tokens and cost of all its calls."""
    calls: list[ModelCall] = []
    started = time.perf_counter()
    try:
        result = classify(calls.append)
    except PsatriageError as exc:
        return Failure(
            ticket_id=ticket_id,
            kind=failure_kind(exc),
            message=str(exc),
            latency_ms=(time.perf_counter() - started) * 1000,
            tokens_in=sum(c.tokens_in for c in calls),
            tokens_out=sum(c.tokens_out for c in calls),
            cost_usd=sum(c.cost_usd for c in calls),
        )
    predicted, confidence = (result.key, result.confidence) if read is None else read(result)
    return Prediction(
        truth=truth,
        predicted=predicted,
        confidence=confidence,
        latency_ms=result.latency_ms,
        engine=result.engine,
        tokens_in=sum(c.tokens_in for c in calls),
        tokens_out=sum(c.tokens_out for c in calls),
        cost_usd=sum(c.cost_usd for c in calls),
    )


def classify_each(
    classifier: Classifier[Any],
    labeled: Iterable[tuple[Ticket, str]],
    candidates: tuple[Category, ...],
    *,
    taxonomy_hash: str = "",
    progress: Progress | None = None,
    fields: tuple[FieldSpec, ...] = (),
    read: Reader | None = None,
    complete: Completer | None = None,
) -> Run:
    """Classify each ticket as the service would (default prompt); one ``Prediction`` or one
    ``Failure`` per ticket, each with the latency, tokens and cost of all its calls. ``fields``
    are asked beside the category, ``complete`` adds to an answer what the service adds after
    the call (the local engine's fields) and ``read`` takes the prediction from the answer."""
    prompt = compile_prompt(DEFAULT_PROMPT, name="eval")
    run = Run()
    for ticket, truth in labeled:

        def classify(record: CallRecorder, ticket: Ticket = ticket) -> Classification:
            answer = classifier.classify(
                ClassificationRequest(
                    tenant=classifier.tenant,
                    ticket=ticket,
                    candidates=candidates,
                    prompt=prompt,
                    model=classifier.config.default_model,
                    max_tokens=classifier.config.default_max_tokens,
                    taxonomy_hash=taxonomy_hash,
                    fields=fields,
                    record=record,
                )
            )
            return answer if complete is None else complete(ticket, answer)

        scored = score(ticket.id, truth, classify, read)
        if isinstance(scored, Prediction):
            run.predictions.append(scored)
        else:
            run.failures.append(scored)
            if scored.kind == STOPPING_KIND:
                run.stopped = f"stopped after ticket {ticket.id}: {scored.message}"
                break
        if progress is not None:
            progress(1)
    return run


def evaluate(
    setup: Setup,
    classifier: Classifier[Any],
    *,
    progress: Progress | None = None,
    limit: int | None = None,
) -> Run:
    """Classify each scored ticket of ``setup`` with ``classifier``."""
    labeled = (
        (
            Ticket(
                id=example.id,
                title=example.title,
                description=example.description,
                scope=setup.taxonomy.scope,
            ),
            truth,
        )
        for example, truth in setup.scored[:limit]
    )
    return classify_each(
        classifier,
        labeled,
        setup.taxonomy.active(),
        taxonomy_hash=setup.taxonomy.fingerprint,
        progress=progress,
    )
