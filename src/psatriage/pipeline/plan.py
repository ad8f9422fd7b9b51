"""A decision on its way to the PSA (``Plan``): what was chosen and checkpointed, and how a
checkpointed row becomes a plan again after a crash."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psatriage import policy
from psatriage.domain import (
    Chosen,
    Classification,
    ConfidenceSource,
    FieldDecision,
    Taxonomy,
    Ticket,
)
from psatriage.store.tables import DecisionRow


@dataclass(frozen=True, slots=True)
class Context:
    """A new decision's ticket, before the model is asked."""

    event_id: int
    ticket: Ticket
    taxonomy: Taxonomy
    previous: str
    checked: policy.Guard
    dry_run: bool
    once: bool


@dataclass(frozen=True, slots=True)
class Plan:
    chosen: Chosen
    classification: Classification
    guard: policy.Guard
    decision_id: int
    previous: str  # the ticket's category before we touched it
    redactions: Mapping[str, int]  # what was masked before the model saw the ticket
    fields: tuple[FieldDecision, ...] = ()  # the ticket fields decided beside the category
    followed: str = ""  # the ticket whose decision an alert storm reused


def checkpointed(row: DecisionRow, category: Mapping[str, Any]) -> Plan:
    return Plan(
        Chosen.from_dict(category),
        classification_from(row),
        policy.Guard(replacing=row.replacing),
        row.id,
        row.previous,
        row.redactions or {},
        tuple(FieldDecision.from_dict(f) for f in row.fields or ()),
        row.followed or "",
    )


def classification_from(row: DecisionRow) -> Classification:
    return Classification(
        key=row.category_key or "",
        confidence=row.confidence or 0.0,
        confidence_source=_SOURCES.get(row.confidence_source, "model"),
        reasoning=row.reasoning,
        engine=row.engine,
        model=row.model,
    )


_SOURCES: dict[str, ConfidenceSource] = {
    "logprobs": "logprobs",
    "self_reported": "self_reported",
    "model": "model",
}
