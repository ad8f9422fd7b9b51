"""The pipeline's choice for a ticket, writing nothing: the candidates, the redacted ticket,
the labeled examples, the classifier behind the breaker, and the check of its answer."""

from __future__ import annotations

import structlog
from sqlalchemy.exc import SQLAlchemyError

from psatriage import metrics, model_turns, policy, shortlist
from psatriage.classifiers.base import ClassificationRequest
from psatriage.config.tenant import Effective, Tenant
from psatriage.domain import (
    CallRecorder,
    Category,
    Chosen,
    Classification,
    FieldSpec,
    LevelValue,
    ModelCall,
    Taxonomy,
    Ticket,
)
from psatriage.errors import InvalidAnswer, PermanentError, PsatriageError
from psatriage.local_engine.data import ticket_text
from psatriage.pipeline.deps import Deps
from psatriage.prompts import PromptExample

log = structlog.get_logger(__name__)


def classify(
    deps: Deps,
    ticket: Ticket,
    taxonomy: Taxonomy,
    effective: Effective,
    event_id: int = 0,
    *,
    record: CallRecorder | None = None,
    fields: tuple[FieldSpec, ...] = (),
) -> tuple[Classification, Chosen, dict[str, int]]:
    """The pipeline's choice for a ticket, writing nothing to the PSA: the candidates (active, not
    excluded, with the tenant's descriptions; shortlisted on large trees), the redacted ticket,
    the classifier and the check of its answer. Each model call goes to ``record`` (default: the
    decisions table and the metrics). Returns the answer, what it chose and what was masked."""
    tenant = deps.tenant
    candidates = tuple(
        _with_description(tenant, leaf) for leaf in policy.candidates(effective.policy, taxonomy)
    )
    if not candidates:
        raise PermanentError(
            f"no categories to choose from on {ticket.scope_name or ticket.scope} "
            "(all inactive or excluded)"
        )
    # large trees: only the local engine's best leaves go to the classifier (psatriage.shortlist)
    candidates = shortlist.for_ticket(tenant.taxonomy, deps.classifier, ticket, candidates)

    def store(call: ModelCall) -> None:
        deps.decisions.record_call(call, deps.usage)  # one transaction with the budget meter
        metrics.observe_model_call(call)

    masked, redactions = tenant.redactor.ticket(ticket)
    request = ClassificationRequest(
        tenant=tenant.name,
        ticket=masked,
        candidates=candidates,
        prompt=tenant.prompt,
        model=effective.model,
        max_tokens=effective.max_tokens,
        instructions=effective.instructions,
        company=ticket.company_name or "",
        taxonomy_hash=taxonomy.fingerprint,
        facets=taxonomy.facets,
        fields=fields,
        redactions=redactions,
        event_id=event_id or None,
        record=record or store,
        examples=_examples(deps, masked, candidates),
    )
    try:
        with model_turns.turn():  # a worker's turn at the classifier (psatriage.model_turns)
            classification = deps.breaker.call(
                lambda: shortlist.classify(tenant.taxonomy, deps.classifier, request)
            )
        return classification, _validated(classification, candidates, taxonomy), redactions
    except PsatriageError as exc:
        exc.model_related = True
        raise


def _with_description(tenant: Tenant, leaf: Category) -> Category:
    description = tenant.describe(leaf)
    if description == leaf.description:
        return leaf
    return Category(leaf.key, leaf.path, description, leaf.active)


def _examples(
    deps: Deps, masked: Ticket, candidates: tuple[Category, ...]
) -> tuple[PromptExample, ...]:
    """The tenant's labeled examples most like the ticket, for a classifier that asks an LLM
    (none for the local engine, which learns them by retraining)."""
    learning = deps.tenant.learning
    if deps.examples is None or learning.examples <= 0 or deps.tenant.classifier_kind == "local":
        return ()
    try:
        return deps.examples.for_ticket(
            deps.tenant.name,
            text=ticket_text(masked.title, masked.description, masked.initial_note),
            company=masked.company_id,
            candidates={c.key for c in candidates},
            k=learning.examples,
            chars=learning.example_chars,
            redactor=deps.tenant.redactor,
        )
    except (SQLAlchemyError, PsatriageError) as exc:  # examples help; they never stop a ticket
        log.warning("labeled examples unavailable", tenant=deps.tenant.name, error=str(exc))
        return ()


def _validated(
    result: Classification, candidates: tuple[Category, ...], taxonomy: Taxonomy
) -> Chosen:
    """Checked again on our side: never write an invented category or facet value."""
    category = next((c for c in candidates if c.key == result.key), None)
    if category is None:
        raise InvalidAnswer(f"the model chose {result.key!r}, which is not a candidate")
    facets: list[tuple[str, LevelValue]] = []
    for facet in taxonomy.facets:
        value = facet.get(result.facets.get(facet.name, ""))
        if value is None:
            raise InvalidAnswer(f"the model chose no valid {facet.label} ({facet.name})")
        facets.append((facet.label, value))
    return Chosen(category, tuple(facets), taxonomy.levels)
