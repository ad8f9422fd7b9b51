"""One ticket's decision flow, top to bottom: read, guard, classify, decide, write, record.

``categorize`` is called by the worker for a claimed event (and by ``psatriage categorize``). It is
safe to run again for the same event after a crash at any point: the decision is checkpointed before
anything is written, a category already on the ticket is not written twice, and the note carries a
marker that is looked for before posting on a retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import Connection

from psatriage import policy
from psatriage.config.fields import FieldsSettings
from psatriage.config.tenant import Effective
from psatriage.domain import PATH_SEPARATOR, Decision, Outcome, Ticket
from psatriage.fields import noise, storms
from psatriage.pipeline.deciding import decide
from psatriage.pipeline.deps import Deps, read_taxonomy
from psatriage.pipeline.following import follow_storm
from psatriage.pipeline.noise_actions import NoiseContext, act_on_noise
from psatriage.pipeline.notes import writes_note
from psatriage.pipeline.plan import Context, Plan, checkpointed
from psatriage.pipeline.records import outcome_draft, review_draft
from psatriage.pipeline.writing import write_decision
from psatriage.store.decisions import AlreadyDecided
from psatriage.store.tables import DecisionRow

Closing = Callable[[Outcome, str, Connection], object]
"""Runs in the transaction that makes a decision final: (outcome, reason, connection)."""


def categorize(
    event_id: int,
    ticket_id: str,
    tries: int,
    deps: Deps,
    *,
    dry_run: bool = False,
    explain_kept: bool = False,
    once_per_ticket: bool = True,
    snapshot: Mapping[str, Any] | None = None,
    close: Closing | None = None,
) -> Decision:
    """Categorize one ticket for one event. Raises the error tree on failure.

    ``dry_run`` decides without writing anything (to the PSA or the decisions table);
    ``explain_kept`` (with ``dry_run``) still asks the model about a ticket the policy keeps, to
    show what it would have chosen (the outcome stays kept);
    ``once_per_ticket`` ends the event as already decided when another event decided the ticket;
    ``snapshot`` is the ticket as the event's delivery carried it, still fresh (it saves a read);
    ``tries`` is how many times the event was taken, this time included: after the first, an
    earlier try may have written, so the note is looked for before it is posted;
    ``close`` runs in the transaction that makes a new decision final, with its outcome and
    reason (the worker closes the event there: one write turn where there were two).
    """
    if snapshot is not None:  # the caller's to judge (``jobs.fresh_snapshot``: first claim only)
        ticket = deps.adapter.ticket_from_snapshot(ticket_id, snapshot)
    else:
        ticket = deps.adapter.get_ticket(ticket_id)
    effective = deps.tenant.effective(ticket.company_id, ticket.company_name)
    checkpoint = holder = None
    if not dry_run:
        checkpoint, holder = deps.decisions.checkpoint_and_holder(
            event_id, deps.tenant.name, ticket.id
        )
    if checkpoint is None and holder is not None and once_per_ticket:
        if not _moved_away(deps, ticket, holder):
            return Decision(None, f"already decided by event {holder.event_id}")
        # moved to another tree after our decision: the category is decided again there,
        # the other fields stay as they were
        effective = replace(effective, fields=FieldsSettings())
        once_per_ticket = False
    if checkpoint is not None:
        planned = resume(deps, checkpoint, ticket)
    else:
        try:
            planned = _plan_new(
                deps,
                event_id,
                ticket,
                effective,
                dry_run=dry_run,
                once=once_per_ticket,
                explain_kept=dry_run and explain_kept,
            )
        except AlreadyDecided as exc:  # another event won the race for this ticket
            return Decision(None, str(exc))
    if isinstance(planned, Decision):
        return planned

    choice = policy.choose_action(effective.policy, planned.classification, planned.guard)
    outcome = _OUTCOMES[choice.action]
    if dry_run:
        return Decision(
            outcome,
            choice.reason,
            None,
            planned.chosen,
            planned.classification,
            fields=planned.fields,
        )
    wrote = write_decision(deps, ticket, planned, choice, outcome, tries)
    deps.decisions.finalize_decision(
        planned.decision_id,
        outcome=outcome,
        reason=choice.reason,
        wrote_category=choice.action is policy.Action.APPLY,
        wrote_note=writes_note(choice.action, planned.fields),
        review=review_draft(deps, ticket, planned) if choice.review else None,
        tracked=outcome_draft(deps, ticket, planned.decision_id, outcome, planned, choice),
        then=None if close is None else partial(close, outcome, choice.reason),
    )
    return Decision(
        outcome,
        choice.reason,
        planned.decision_id,
        planned.chosen,
        planned.classification,
        wrote,
        planned.fields,
    )


def _moved_away(deps: Deps, ticket: Ticket, holder: DecisionRow) -> bool:
    """Whether the ticket left the category tree our written category belongs to (a person moved
    it to another ConnectWise board), our category is not valid where it is now, and it was not
    decided again there yet: once per change."""
    if not holder.wrote_category or holder.category is None or holder.scope in (None, ticket.scope):
        return False
    if deps.decisions.rechecked(deps.tenant.name, ticket.id, ticket.scope) is not None:
        return False
    leaf = read_taxonomy(deps, ticket).get(str(holder.category["key"]))
    return leaf is None or not leaf.active


_OUTCOMES = {
    policy.Action.APPLY: Outcome.APPLIED,
    policy.Action.SUGGEST: Outcome.SUGGESTED,
    policy.Action.SHADOW: Outcome.SHADOWED,
    policy.Action.RECORD: Outcome.RECORDED,
}


def resume(deps: Deps, checkpoint: DecisionRow, ticket: Ticket) -> Plan | Decision:
    """Pick up a decision an earlier attempt checkpointed (the model is not asked again)."""
    if checkpoint.category is None:  # a "kept" or skipped noise whose event was not closed
        outcome = Outcome.SKIPPED if checkpoint.fields else Outcome.KEPT
        deps.decisions.finalize_decision(
            checkpoint.id,
            outcome=outcome,
            reason=checkpoint.reason,
            wrote_category=False,
            wrote_note=False,
            tracked=outcome_draft(deps, ticket, checkpoint.id, outcome)
            if outcome is Outcome.KEPT
            else None,
        )
        return Decision(outcome, checkpoint.reason, checkpoint.id)
    return checkpointed(checkpoint, checkpoint.category)


def _plan_new(
    deps: Deps,
    event_id: int,
    ticket: Ticket,
    effective: Effective,
    *,
    dry_run: bool,
    once: bool,
    explain_kept: bool = False,
) -> Plan | Decision:
    """Guard, classify and checkpoint a new decision."""
    tenant, rules = deps.tenant, effective.policy
    taxonomy = read_taxonomy(deps, ticket)
    previous = PATH_SEPARATOR.join(v.name for v in taxonomy.tree_values(ticket))
    recognised = noise.by_rules(effective.fields, ticket)
    if recognised is not None:
        kind, why = recognised
        action = effective.fields.noise.action_for(kind)
        if action.action != "categorize":
            found = noise.ruled(kind, why)
            context = NoiseContext(event_id, ticket, taxonomy, previous, kind, dry_run, once)
            return act_on_noise(deps, context, action, (found,), None, f"{found.value}, {why}")
    checked = policy.guard(rules, ticket, taxonomy)
    at = Context(event_id, ticket, taxonomy, previous, checked, dry_run, once)
    if checked.keep:
        if explain_kept:  # a dry run: what the model would have chosen, kept all the same
            would = decide(deps, at, effective)
            if isinstance(would, Plan):
                return Decision(
                    Outcome.KEPT, checked.keep, None, would.chosen, would.classification
                )
        if dry_run:
            return Decision(Outcome.KEPT, checked.keep)
        row = deps.decisions.start_decision(
            event_id=event_id,
            tenant=tenant.name,
            ticket_id=ticket.id,
            company_id=ticket.company_id,
            previous=previous,
            chosen=None,
            classification=None,
            reason=checked.keep,
            once_per_ticket=once,
            scope=ticket.scope,
        )
        return resume(deps, row, ticket)
    if not tenant.storm_window_minutes or dry_run or not once:  # storms: new tickets only
        return decide(deps, at, effective)
    storm = storms.key(ticket)
    with storms.LOCK.hold(f"{tenant.name}:{storm}"):  # one storm's tickets wait for its first
        return follow_storm(deps, at, storm) or decide(deps, at, effective, storm)
