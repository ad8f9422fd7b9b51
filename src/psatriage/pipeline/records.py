"""What a decision leaves beside itself in the database: the outcome to follow, and the review
of a suggestion."""

from __future__ import annotations

from datetime import timedelta

from psatriage import policy
from psatriage.domain import Outcome, Ticket
from psatriage.pipeline.deps import Deps, read_taxonomy
from psatriage.pipeline.plan import Plan
from psatriage.store.outcomes import OutcomeDraft
from psatriage.store.reviews import ReviewDraft, excerpt
from psatriage.store.tables import utcnow


def outcome_draft(
    deps: Deps,
    ticket: Ticket,
    decision_id: int,
    outcome: Outcome,
    planned: Plan | None = None,
    choice: policy.Choice | None = None,
) -> OutcomeDraft:
    """The outcome to follow for a decision (``planned`` is None for a kept category)."""
    classification = planned.classification if planned else None
    chosen = planned.chosen if planned else None
    return OutcomeDraft(
        decision_id=decision_id,
        tenant=deps.tenant.name,
        ticket_id=ticket.id,
        company_id=ticket.company_id,
        company_name=ticket.company_name or "",
        engine=classification.engine if classification else "",
        model=classification.model if classification else "",
        band=choice.band.value if choice else "",
        confidence=classification.confidence if classification else None,
        decision_outcome=outcome.value,
        chosen=chosen.to_dict() if chosen else None,
        chosen_key=chosen.category.key if chosen else None,
        chosen_label=chosen.category.label if chosen else "",
        wrote=choice is not None and choice.action is policy.Action.APPLY,
        first_check_at=utcnow() + timedelta(hours=deps.tenant.outcomes.check_every_hours),
    )


def review_draft(deps: Deps, ticket: Ticket, planned: Plan) -> ReviewDraft:
    """The review of a suggestion: the ticket redacted, the suggestion and its alternatives."""
    masked, _ = deps.tenant.redactor.ticket(ticket)
    taxonomy = read_taxonomy(deps, ticket)
    alternatives = []
    for key, confidence in planned.classification.alternatives:
        leaf = taxonomy.get(key)
        if leaf is not None:
            alternatives.append({"key": key, "label": leaf.label, "confidence": confidence})
    return ReviewDraft(
        decision_id=planned.decision_id,
        tenant=deps.tenant.name,
        ticket_id=ticket.id,
        company_id=ticket.company_id,
        company_name=ticket.company_name or "",
        title=masked.title,
        excerpt=excerpt(masked.description or masked.initial_note),
        category=planned.chosen.to_dict(),
        category_key=planned.chosen.target.key,
        category_label=planned.chosen.category.label,
        confidence=planned.classification.confidence,
        alternatives=alternatives,
    )
