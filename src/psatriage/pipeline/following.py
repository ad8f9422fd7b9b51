"""Alert storms: a ticket whose normalized text matches one decided in the window reuses that
decision without a model call, and the note names the ticket it followed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import structlog

from psatriage import metrics
from psatriage.domain import APPLIED, Chosen, FieldDecision
from psatriage.pipeline.deps import Deps, read_taxonomy
from psatriage.pipeline.plan import Context, Plan, classification_from
from psatriage.store.tables import utcnow

log = structlog.get_logger(__name__)


def follow_storm(deps: Deps, at: Context, storm: str) -> Plan | None:
    """The decision of the storm this ticket belongs to, reused without a model call; None when
    there is none in the window or its category is not valid here any more."""
    tenant = deps.tenant
    since = utcnow() - timedelta(minutes=tenant.storm_window_minutes)
    leader = deps.decisions.storm_leader(tenant.name, storm, since, other_than=at.ticket.id)
    if leader is None or leader.category is None:
        return None
    chosen = Chosen.from_dict(leader.category)
    decided = tuple(FieldDecision.from_dict(f) for f in leader.fields or ())
    taxonomy = at.taxonomy
    board = next((d.write for d in decided if d.name == "routing" and d.outcome == APPLIED), None)
    if board is not None and deps.adapter.routing_sets_scope and board.id != at.ticket.scope:
        taxonomy = read_taxonomy(deps, replace(at.ticket, scope=board.id, scope_name=board.name))
    leaf = taxonomy.get(chosen.category.key)
    if leaf is None or not leaf.active:
        return None
    followed = leader.followed or leader.ticket_id
    classification = replace(
        classification_from(leader), reasoning=f"Same as ticket {followed} (an alert storm)."
    )
    row = deps.decisions.start_decision(
        event_id=at.event_id,
        tenant=tenant.name,
        ticket_id=at.ticket.id,
        company_id=at.ticket.company_id,
        previous=at.previous,
        chosen=chosen,
        classification=classification,
        replacing=at.checked.replacing,
        once_per_ticket=at.once,
        fields=[d.to_dict() for d in decided],
        storm_key=storm,
        followed=followed,
        scope=taxonomy.scope,
    )
    calls = max(1, len(deps.decisions.calls_for_event(leader.event_id)))
    metrics.CALLS_SAVED.labels(tenant.name, "storm").inc(calls)
    log.info("alert storm: decision reused", ticket=at.ticket.id, followed=followed)
    return Plan(chosen, classification, at.checked, row.id, at.previous, {}, decided, followed)
