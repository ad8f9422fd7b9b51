"""What the tenant does with noise (spam, auto-replies, monitoring alerts, newsletters): set
its configured category and/or routing, or skip it without a write or a note."""

from __future__ import annotations

from dataclasses import dataclass, replace

from psatriage import policy
from psatriage.config.fields import NoiseAction
from psatriage.domain import (
    APPLIED,
    Chosen,
    Classification,
    Decision,
    FieldDecision,
    Outcome,
    Taxonomy,
    Ticket,
)
from psatriage.errors import PermanentError
from psatriage.fields import noise
from psatriage.pipeline.deps import Deps, read_field_values, read_taxonomy
from psatriage.pipeline.plan import Plan
from psatriage.pipeline.writing import write_category


@dataclass(frozen=True, slots=True)
class NoiseContext:
    event_id: int
    ticket: Ticket
    taxonomy: Taxonomy
    previous: str
    kind: str
    dry_run: bool
    once: bool


def act_on_noise(
    deps: Deps,
    at: NoiseContext,
    action: NoiseAction,
    decided: tuple[FieldDecision, ...],
    classification: Classification | None,
    what: str,
) -> Plan | Decision:
    """What the tenant does with noise: set its configured category (then the usual write path),
    routing and/or status (in the same update), or skip it (no write, no note).
    ``classification`` is None without a model call."""
    routing = _noise_routing(deps, at, action.routing) if action.routing else None
    status = _noise_status(deps, at, action.status, routing) if action.status else None
    for found in (routing, status):
        if found is not None:
            decided = (*(d for d in decided if d.name != found.name), found)
    engine = "rules" if classification is None else classification.engine
    reason = f"noise: {what} ({action.action}, {'no model call' if engine == 'rules' else engine})"
    if action.category:
        taxonomy = _landing_tree(deps, at, routing)
        leaf = noise.configured_category(taxonomy, action.category)
        if leaf is None:
            tree = taxonomy.scope_name or taxonomy.scope
            moved = " (where the routing moves the ticket)" if taxonomy is not at.taxonomy else ""
            raise PermanentError(
                f"tenant {deps.tenant.name!r}, key 'fields.noise.{at.kind}.category': "
                f"{action.category!r} is not an active category of {tree}{moved}; fix: name an "
                f"active category of {tree} (key or path)"
            )
        chosen = Chosen(leaf, (), taxonomy.levels)
        ruled = Classification(leaf.key, 1.0, "model", reason, "rules", "")
        if classification is not None:
            ruled = replace(classification, key=leaf.key, confidence=1.0, reasoning=reason)
        decision_id = 0
        if not at.dry_run:
            decision_id = deps.decisions.start_decision(
                event_id=at.event_id,
                tenant=deps.tenant.name,
                ticket_id=at.ticket.id,
                company_id=at.ticket.company_id,
                previous=at.previous,
                chosen=chosen,
                classification=ruled,
                once_per_ticket=at.once,
                fields=[d.to_dict() for d in decided],
                scope=taxonomy.scope,
            ).id
        return Plan(chosen, ruled, policy.Guard(), decision_id, at.previous, {}, decided)
    if at.dry_run:
        return Decision(Outcome.SKIPPED, reason, fields=decided)
    row = deps.decisions.start_decision(
        event_id=at.event_id,
        tenant=deps.tenant.name,
        ticket_id=at.ticket.id,
        company_id=at.ticket.company_id,
        previous=at.previous,
        chosen=None,
        classification=None,
        reason=reason,
        once_per_ticket=at.once,
        fields=[d.to_dict() for d in decided],
    )
    written = [d for d in (routing, status) if d is not None and d.write is not None]
    values = tuple(d.write for d in written if d.write is not None)
    wrote: tuple[str, ...] = ()
    if write_category(deps.tenant, deps.adapter, deps.taxonomies, at.ticket, None, values):
        wrote = tuple(d.name for d in written)  # routing and status in one update
    deps.decisions.finalize_decision(
        row.id, outcome=Outcome.SKIPPED, reason=reason, wrote_category=False, wrote_note=False
    )
    return Decision(Outcome.SKIPPED, reason, row.id, wrote=wrote, fields=decided)


def _landing_tree(deps: Deps, at: NoiseContext, routing: FieldDecision | None) -> Taxonomy:
    """The category tree of where the ticket will be: the board the routing moves it to where
    the board owns the tree (ConnectWise), so board and category are a valid pair; else the
    ticket's own."""
    if routing is None or not deps.adapter.routing_sets_scope:
        return at.taxonomy
    if routing.value_id == at.ticket.scope:
        return at.taxonomy
    moved = replace(at.ticket, scope=routing.value_id, scope_name=routing.value)
    return read_taxonomy(deps, moved)


def _noise_routing(deps: Deps, at: NoiseContext, name: str) -> FieldDecision:
    values = read_field_values(deps, at.ticket, "routing")
    option = next((o for o in values.options if o.name.casefold() == name.casefold()), None)
    if option is None:
        raise PermanentError(
            f"tenant {deps.tenant.name!r}, key 'fields.noise.{at.kind}.routing': {name!r} is not "
            f"an active {values.label.lower()}; fix: name an active one"
        )
    return FieldDecision("routing", values.label, option.name, option.id, APPLIED, 1.0, option)


def _noise_status(
    deps: Deps, at: NoiseContext, name: str, routing: FieldDecision | None
) -> FieldDecision:
    """The configured status, among the active statuses where the ticket will be (a ConnectWise
    board's own, the routed board's when routing moves it)."""
    ticket = at.ticket
    if routing is not None and deps.adapter.routing_sets_scope:
        ticket = replace(ticket, scope=routing.value_id, scope_name=routing.value)
    values = read_field_values(deps, ticket, "status")
    option = next((o for o in values.options if o.name.casefold() == name.casefold()), None)
    if option is None:
        have = ", ".join(repr(o.name) for o in values.options) or "none"
        raise PermanentError(
            f"tenant {deps.tenant.name!r}, key 'fields.noise.{at.kind}.status': {name!r} is not "
            f"an active status of {ticket.scope_name or ticket.scope} (it has {have}); fix: name "
            "one of those"
        )
    return FieldDecision("status", values.label, option.name, option.id, APPLIED, 1.0, option)
