"""The notes psatriage posts: a decision's note with its marker (looked for before posting on
a retry), and the error note when the model was at fault."""

from __future__ import annotations

import structlog

from psatriage import policy
from psatriage.config.tenant import Tenant
from psatriage.domain import RECORDED, FieldDecision, Outcome
from psatriage.errors import AuthFailed, InvalidAnswer, OverBudget, PsatriageError, TransientError
from psatriage.pipeline.deps import Deps
from psatriage.pipeline.plan import Plan, checkpointed
from psatriage.redact import describe
from psatriage.sanitize import reasoning_for_note
from psatriage.store.tables import DecisionRow

log = structlog.get_logger(__name__)


def marker(decision_id: int) -> str:
    return f"psatriage:{decision_id}"


def error_marker(ticket_id: str) -> str:
    return f"psatriage:error:{ticket_id}"


_NOTED = frozenset({policy.Action.APPLY, policy.Action.SUGGEST})  # the actions that post a note


def writes_note(action: policy.Action, decided: tuple[FieldDecision, ...]) -> bool:
    """Whether a note is written: for the category, or for a field shown in it."""
    return action in _NOTED or any(d.outcome != RECORDED for d in decided)


def note_for(tenant: Tenant, row: DecisionRow) -> str | None:
    """The note a finished decision wrote, from what it recorded and the tenant's note template;
    None when it wrote none (recorded only, a kept category, or not finished)."""
    if not row.final or not row.wrote_note or row.category is None:
        return None
    outcome = Outcome(row.outcome)
    review = outcome is Outcome.SUGGESTED
    return render_note(
        tenant, outcome, checkpointed(row, row.category), marker(row.id), review=review
    )


def render_note(
    tenant: Tenant, outcome: Outcome, planned: Plan, note_marker: str, *, review: bool
) -> str:
    chosen, result = planned.chosen, planned.classification
    return tenant.note.render(
        category={"key": chosen.category.key, "label": chosen.category.label},
        facets=[{"label": label, "value": value.name} for label, value in chosen.facets],
        confidence=result.confidence,
        confidence_source=result.confidence_source,
        reasoning=reasoning_for_note(result.reasoning),
        model=result.model,
        engine=result.engine,
        outcome=outcome.value,
        previous=planned.previous,
        redacted=describe(planned.redactions),
        fields=[d.for_note() for d in planned.fields if d.outcome != RECORDED],
        followed=planned.followed,
        review=review,
        marker=note_marker,
    )


def report_failure(deps: Deps, ticket_id: str, error: PsatriageError) -> bool:
    """Add the error note (once per ticket) if the tenant asked for it and the model was at fault.

    Returns whether a note was posted. Failures to post are logged, never raised: the event is
    already failing with its own reason.
    """
    if not error.model_related:
        return False
    try:
        ticket = deps.adapter.get_ticket(ticket_id)
        if not deps.tenant.effective(ticket.company_id, ticket.company_name).policy.report_errors:
            return False
        note_marker = error_marker(ticket.id)
        if deps.adapter.find_note(ticket, note_marker):
            return False
        text = deps.tenant.error_note.render(error=_public_reason(error), marker=note_marker)
        deps.adapter.add_note(ticket, text)
    except PsatriageError as exc:
        log.warning("could not post the error note", ticket=ticket_id, error=str(exc))
        return False
    return True


def _public_reason(error: PsatriageError) -> str:
    """Why categorizing failed, for a note in the ticket: fixed words, never the model's output
    (which the full reason in the events ledger keeps for operators)."""
    if isinstance(error, OverBudget):
        return "the model budget set for this service desk is used up for now"
    if isinstance(error, InvalidAnswer):
        return "the model did not give a valid category"
    if isinstance(error, TransientError):
        return "the model could not be reached in time"
    if isinstance(error, AuthFailed):
        return "the model service refused psatriage's credentials"
    return "the model request failed"
