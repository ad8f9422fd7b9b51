"""A new decision with the model: routing first where it picks the category tree, then one call
for the category and the enabled fields, each field judged on its own, then the checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import structlog
from sqlalchemy.exc import SQLAlchemyError

from psatriage import budgets, fields, metrics
from psatriage.config.tenant import Effective
from psatriage.domain import (
    APPLIED,
    CallRecorder,
    Category,
    Classification,
    Decision,
    Facet,
    FieldAnswer,
    FieldDecision,
    ModelCall,
    Taxonomy,
    Ticket,
)
from psatriage.errors import PsatriageError
from psatriage.fields import language, noise
from psatriage.learning.fields import LEARNED, LOCAL_ENGINE
from psatriage.pipeline.classification import classify
from psatriage.pipeline.deps import Deps, field_options, read_taxonomy
from psatriage.pipeline.noise_actions import NoiseContext, act_on_noise
from psatriage.pipeline.plan import Context, Plan

log = structlog.get_logger(__name__)


def decide(
    deps: Deps, at: Context, effective: Effective, storm: str | None = None
) -> Plan | Decision:
    """Ask the model (routing first where it picks the tree), judge the fields, checkpoint.

    The model calls are held until the checkpoint and recorded in its transaction; if no
    checkpoint follows (a dry run, noise, an answer refused, another event's decision), they
    are recorded on their own on the way out, as each call was before."""
    held: list[ModelCall] = []

    def hold(call: ModelCall) -> None:
        held.append(call)
        metrics.observe_model_call(call)

    try:
        return _decide(deps, at, effective, storm, hold, held)
    finally:
        if held:
            deps.decisions.record_calls(held, deps.usage)


def _decide(
    deps: Deps,
    at: Context,
    effective: Effective,
    storm: str | None,
    record: CallRecorder,
    held: list[ModelCall],
) -> Plan | Decision:
    ticket, taxonomy, event_id = at.ticket, at.taxonomy, at.event_id
    dry_run, once, previous, checked = at.dry_run, at.once, at.previous, at.checked
    if deps.usage is not None:
        budgets.check(deps.tenant, deps.usage)
    options = field_options(deps, ticket, effective.fields)
    routed: tuple[FieldDecision, ...] = ()
    if "routing" in options and deps.adapter.routing_sets_scope:
        routed = route_first(
            deps, ticket, effective, options.pop("routing"), event_id, record=record
        )
        if routed and routed[0].outcome == APPLIED and routed[0].value_id != ticket.scope:
            # the category is chosen within the chosen board's tree, so the pair is valid
            ticket = replace(ticket, scope=routed[0].value_id, scope_name=routed[0].value)
            taxonomy = read_taxonomy(deps, ticket)
    asked = fields.specs(effective.fields, options)
    classification, chosen, redactions = classify(
        deps, ticket, taxonomy, effective, event_id, record=record, fields=asked
    )
    classification = with_learned_fields(deps, ticket, classification, effective, options)
    spoken = (
        language.detect(effective.fields, ticket)
        if "language" in effective.fields.active()
        else None
    )
    decided = fields.decide(
        effective.fields,
        classification,
        options,
        effective.policy,
        language=spoken,
        title=ticket.title,
    )
    decided = fields.in_order(decided + routed)
    acted = noise.acted_on(effective.fields, decided)
    if acted is not None:
        found = next(d for d in decided if d.name == "noise")
        context = NoiseContext(event_id, ticket, taxonomy, previous, found.value_id, dry_run, once)
        return act_on_noise(deps, context, acted, decided, classification, f"{found.value}")
    decision_id = 0
    if not dry_run:
        decision_id = deps.decisions.start_decision(
            event_id=event_id,
            tenant=deps.tenant.name,
            ticket_id=ticket.id,
            company_id=ticket.company_id,
            previous=previous,
            chosen=chosen,
            classification=classification,
            replacing=checked.replacing,
            once_per_ticket=once,
            redactions=redactions,
            fields=[d.to_dict() for d in decided],
            storm_key=storm,
            scope=ticket.scope,
            calls=held,
            usage=deps.usage,
        ).id
        held.clear()  # recorded with the checkpoint
    return Plan(chosen, classification, checked, decision_id, previous, redactions, decided)


def route_first(
    deps: Deps,
    ticket: Ticket,
    effective: Effective,
    values: Facet,
    event_id: int,
    *,
    record: CallRecorder | None = None,
) -> tuple[FieldDecision, ...]:
    """Routing decided on its own, before the category, where it picks the category tree (a
    ConnectWise board): one model call whose candidates are the routing targets (its model call
    goes to ``record``, as ``classify``'s)."""
    allowed = fields.routing_targets(values, effective.fields.routing.targets)
    if not allowed:
        return ()
    if deps.tenant.classifier_kind == "local":  # its routing model, where it has one
        learned = _learned(deps, ticket, ("routing",)).get("routing")
        option = next((o for o in allowed if learned and o.id == learned.value), None)
        if learned is not None and option is not None:
            outcome = fields.band("routing", learned.confidence, effective.policy)
            return (
                FieldDecision(
                    "routing", values.label, option.name, option.id, outcome, learned.confidence,
                    option,
                ),
            )  # fmt: skip
    targets = Taxonomy(
        scope=f"routing:{values.name}",
        scope_name=values.label,
        levels=(allowed[0].level,),
        leaves=tuple(Category(o.id, (o,)) for o in allowed),
    )
    hint = (
        f"Here each category is a {values.label.lower()}: choose the one that should handle "
        "the ticket."
    )
    scoped = replace(
        effective,
        instructions="\n".join(t for t in (effective.instructions, hint) if t),
        policy=effective.policy.model_copy(update={"excluded": ()}),
    )
    classification, chosen, _ = classify(deps, ticket, targets, scoped, event_id, record=record)
    option = chosen.category.path[0]
    confidence = classification.confidence
    outcome = fields.band("routing", confidence, effective.policy)
    return (
        FieldDecision("routing", values.label, option.name, option.id, outcome, confidence, option),
    )


def with_learned_fields(
    deps: Deps,
    ticket: Ticket,
    classification: Classification,
    effective: Effective,
    options: Mapping[str, Facet],
) -> Classification:
    """An answer of the local engine (the local classifier's, a hybrid's made without the LLM)
    with the fields from the tenant's field models, judged like any answer. An LLM's answer is
    left as it is: a field it answered outside the field's values is not decided."""
    if classification.engine != LOCAL_ENGINE:
        return classification
    active = effective.fields.active()
    missing = [
        name
        for name in LEARNED
        if name in active
        and name not in classification.fields
        and (name in options or name == "noise")
        and not (name == "priority" and "urgency" in classification.fields)
    ]
    if not missing:
        return classification
    learned = _learned(deps, ticket, missing)
    if not learned:
        return classification
    return replace(classification, fields={**classification.fields, **learned})


def _learned(deps: Deps, ticket: Ticket, names: Sequence[str]) -> dict[str, FieldAnswer]:
    if deps.field_models is None:
        return {}
    try:
        return deps.field_models.answers(deps.tenant.name, ticket, names)
    except (
        SQLAlchemyError,
        PsatriageError,
    ) as exc:  # learned fields help; they never stop a ticket
        log.warning("field models unavailable", tenant=deps.tenant.name, error=str(exc))
        return {}
