"""One ticket's path, top to bottom: read, guard, classify, decide, write, record.

``categorize`` is called by the worker for a claimed event (and by ``psatriage categorize``). It is
safe to run again for the same event after a crash at any point: the decision is checkpointed before
anything is written, a category already on the ticket is not written twice, and the note carries a
marker that is looked for before posting on a retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from psatriage import budgets, fields, metrics, policy, shortlist
from psatriage.breaker import CircuitBreaker
from psatriage.classifiers.base import ClassificationRequest, Classifier
from psatriage.config.fields import STORED_FIELDS, FieldsSettings, NoiseAction
from psatriage.config.tenant import Effective, Tenant
from psatriage.domain import (
    APPLIED,
    PATH_SEPARATOR,
    RECORDED,
    CallRecorder,
    Category,
    Chosen,
    Classification,
    ConfidenceSource,
    Decision,
    Facet,
    FieldDecision,
    FieldSpec,
    LevelValue,
    ModelCall,
    Outcome,
    Taxonomy,
    Ticket,
)
from psatriage.errors import (
    AuthFailed,
    CategoryRejected,
    InvalidAnswer,
    OverBudget,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.fields import language, noise, storms
from psatriage.learning.similar import SimilarExamples
from psatriage.local_engine.data import ticket_text
from psatriage.prompts import PromptExample
from psatriage.psa.base import PSAAdapter
from psatriage.redact import describe
from psatriage.sanitize import reasoning_for_note
from psatriage.store.decisions import AlreadyDecided, Decisions
from psatriage.store.outcomes import OutcomeDraft
from psatriage.store.reviews import ReviewDraft, excerpt
from psatriage.store.tables import DecisionRow, utcnow
from psatriage.store.usage import Usage
from psatriage.taxonomy_cache import TaxonomyCache

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deps:
    """What the pipeline needs for one tenant."""

    tenant: Tenant
    adapter: PSAAdapter[Any]
    classifier: Classifier[Any]
    decisions: Decisions
    taxonomies: TaxonomyCache
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    examples: SimilarExamples | None = None  # labeled examples for an LLM's prompt
    usage: Usage | None = None  # the tenant's model budget meter; None: no budget is kept


def marker(decision_id: int) -> str:
    return f"psatriage:{decision_id}"


def error_marker(ticket_id: str) -> str:
    return f"psatriage:error:{ticket_id}"


def categorize(
    event_id: int,
    ticket_id: str,
    tries: int,
    deps: Deps,
    *,
    dry_run: bool = False,
    once_per_ticket: bool = True,
    snapshot: Mapping[str, Any] | None = None,
) -> Decision:
    """Categorize one ticket for one event. Raises the error tree on failure.

    ``dry_run`` decides without writing anything (to the PSA or the decisions table);
    ``once_per_ticket`` ends the event as already decided when another event decided the ticket;
    ``snapshot`` is the ticket as the event's delivery carried it, still fresh (it saves a read);
    ``tries`` is how many times the event was taken, this time included: after the first, an
    earlier try may have written, so the note is looked for before it is posted.
    """
    checkpoint = None if dry_run else deps.decisions.decision_for_event(event_id)
    if snapshot is not None and checkpoint is None:
        ticket = deps.adapter.ticket_from_snapshot(ticket_id, snapshot)
    else:  # an earlier try got as far as deciding: it may have written, read the ticket as it is
        ticket = deps.adapter.get_ticket(ticket_id)
    effective = deps.tenant.effective(ticket.company_id, ticket.company_name)
    if checkpoint is None and not dry_run and once_per_ticket:
        holder = deps.decisions.ticket_holder(deps.tenant.name, ticket.id)
        if holder is not None:
            if not _moved_away(deps, ticket, holder):
                return Decision(None, f"already decided by event {holder.event_id}")
            # moved to another tree after our decision: the category is decided again there,
            # the other fields stay as they were
            effective = replace(effective, fields=FieldsSettings())
            once_per_ticket = False
    if checkpoint is not None:
        planned = _resume(deps, checkpoint, ticket)
    else:
        try:
            planned = _plan(
                deps, event_id, ticket, effective, dry_run=dry_run, once=once_per_ticket
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
    wrote = _write(deps, ticket, planned, choice, outcome, tries)
    deps.decisions.finalize_decision(
        planned.decision_id,
        outcome=outcome,
        reason=choice.reason,
        wrote_category=choice.action is policy.Action.APPLY,
        wrote_note=_notes(choice.action, planned.fields),
        review=_review(deps, ticket, planned) if choice.review else None,
        tracked=_tracked(deps, ticket, planned.decision_id, outcome, planned, choice),
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
    leaf = _taxonomy(deps, ticket).get(str(holder.category["key"]))
    return leaf is None or not leaf.active


_OUTCOMES = {
    policy.Action.APPLY: Outcome.APPLIED,
    policy.Action.SUGGEST: Outcome.SUGGESTED,
    policy.Action.SHADOW: Outcome.SHADOWED,
    policy.Action.RECORD: Outcome.RECORDED,
}
_NOTED = frozenset({policy.Action.APPLY, policy.Action.SUGGEST})  # the actions that post a note


def _tracked(
    deps: Deps,
    ticket: Ticket,
    decision_id: int,
    outcome: Outcome,
    planned: _Plan | None = None,
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


def _review(deps: Deps, ticket: Ticket, planned: _Plan) -> ReviewDraft:
    """The review of a suggestion: the ticket redacted, the suggestion and its alternatives."""
    masked, _ = deps.tenant.redactor.ticket(ticket)
    taxonomy = _taxonomy(deps, ticket)
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


@dataclass(frozen=True, slots=True)
class _Plan:
    chosen: Chosen
    classification: Classification
    guard: policy.Guard
    decision_id: int
    previous: str  # the ticket's category before we touched it
    redactions: Mapping[str, int]  # what was masked before the model saw the ticket
    fields: tuple[FieldDecision, ...] = ()  # the ticket fields decided beside the category
    followed: str = ""  # the ticket whose decision an alert storm reused


def _resume(deps: Deps, checkpoint: DecisionRow, ticket: Ticket) -> _Plan | Decision:
    """Pick up a decision an earlier attempt checkpointed (the model is not asked again)."""
    if checkpoint.category is None:  # a "kept" or skipped noise whose event was not closed
        outcome = Outcome.SKIPPED if checkpoint.fields else Outcome.KEPT
        deps.decisions.finalize_decision(
            checkpoint.id,
            outcome=outcome,
            reason=checkpoint.reason,
            wrote_category=False,
            wrote_note=False,
            tracked=_tracked(deps, ticket, checkpoint.id, outcome)
            if outcome is Outcome.KEPT
            else None,
        )
        return Decision(outcome, checkpoint.reason, checkpoint.id)
    return _checkpointed(checkpoint, checkpoint.category)


def _checkpointed(row: DecisionRow, category: Mapping[str, Any]) -> _Plan:
    return _Plan(
        Chosen.from_dict(category),
        _classification_from(row),
        policy.Guard(replacing=row.replacing),
        row.id,
        row.previous,
        row.redactions or {},
        tuple(FieldDecision.from_dict(f) for f in row.fields or ()),
        row.followed or "",
    )


def _plan(
    deps: Deps, event_id: int, ticket: Ticket, effective: Effective, *, dry_run: bool, once: bool
) -> _Plan | Decision:
    """Guard, classify and checkpoint a new decision."""
    tenant, rules = deps.tenant, effective.policy
    taxonomy = _taxonomy(deps, ticket)
    previous = PATH_SEPARATOR.join(v.name for v in taxonomy.tree_values(ticket))
    recognised = noise.by_rules(effective.fields, ticket)
    if recognised is not None:
        kind, why = recognised
        action = effective.fields.noise.action_for(kind)
        if action.action != "categorize":
            found = noise.ruled(kind, why)
            context = _NoiseContext(event_id, ticket, taxonomy, previous, kind, dry_run, once)
            return _noise(deps, context, action, (found,), None, f"{found.value}, {why}")
    checked = policy.guard(rules, ticket, taxonomy)
    if checked.keep:
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
        return _resume(deps, row, ticket)
    at = _Context(event_id, ticket, taxonomy, previous, checked, dry_run, once)
    if not tenant.storm_window_minutes or dry_run or not once:  # storms: new tickets only
        return _decide(deps, at, effective)
    storm = storms.key(ticket)
    with storms.LOCK.hold(f"{tenant.name}:{storm}"):  # one storm's tickets wait for its first
        return _follow(deps, at, storm) or _decide(deps, at, effective, storm)


@dataclass(frozen=True, slots=True)
class _Context:
    """A new decision's ticket, before the model is asked."""

    event_id: int
    ticket: Ticket
    taxonomy: Taxonomy
    previous: str
    checked: policy.Guard
    dry_run: bool
    once: bool


def _follow(deps: Deps, at: _Context, storm: str) -> _Plan | None:
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
        taxonomy = _taxonomy(deps, replace(at.ticket, scope=board.id, scope_name=board.name))
    leaf = taxonomy.get(chosen.category.key)
    if leaf is None or not leaf.active:
        return None
    followed = leader.followed or leader.ticket_id
    classification = replace(
        _classification_from(leader), reasoning=f"Same as ticket {followed} (an alert storm)."
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
    return _Plan(chosen, classification, at.checked, row.id, at.previous, {}, decided, followed)


def _decide(
    deps: Deps, at: _Context, effective: Effective, storm: str | None = None
) -> _Plan | Decision:
    """Ask the model (routing first where it picks the tree), judge the fields, checkpoint."""
    ticket, taxonomy, event_id = at.ticket, at.taxonomy, at.event_id
    dry_run, once, previous, checked = at.dry_run, at.once, at.previous, at.checked
    if deps.usage is not None:
        budgets.check(deps.tenant, deps.usage)
    options = field_options(deps, ticket, effective.fields)
    routed: tuple[FieldDecision, ...] = ()
    if "routing" in options and deps.adapter.routing_sets_scope:
        routed = _route_first(deps, ticket, effective, options.pop("routing"), event_id)
        if routed and routed[0].outcome == APPLIED and routed[0].value_id != ticket.scope:
            # the category is chosen within the chosen board's tree, so the pair is valid
            ticket = replace(ticket, scope=routed[0].value_id, scope_name=routed[0].value)
            taxonomy = _taxonomy(deps, ticket)
    asked = fields.specs(effective.fields, options)
    classification, chosen, redactions = classify(
        deps, ticket, taxonomy, effective, event_id, fields=asked
    )
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
        context = _NoiseContext(event_id, ticket, taxonomy, previous, found.value_id, dry_run, once)
        return _noise(deps, context, acted, decided, classification, f"{found.value}")
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
        ).id
    return _Plan(chosen, classification, checked, decision_id, previous, redactions, decided)


@dataclass(frozen=True, slots=True)
class _NoiseContext:
    event_id: int
    ticket: Ticket
    taxonomy: Taxonomy
    previous: str
    kind: str
    dry_run: bool
    once: bool


def _noise(
    deps: Deps,
    at: _NoiseContext,
    action: NoiseAction,
    decided: tuple[FieldDecision, ...],
    classification: Classification | None,
    what: str,
) -> _Plan | Decision:
    """What the tenant does with noise: set its configured category (then the usual write path)
    and/or routing, or skip it (no write, no note). ``classification`` is None without a model
    call."""
    routing = _noise_routing(deps, at, action.routing) if action.routing else None
    if routing is not None:
        decided = (*(d for d in decided if d.name != "routing"), routing)
    engine = "rules" if classification is None else classification.engine
    reason = f"noise: {what} ({action.action}, {'no model call' if engine == 'rules' else engine})"
    if action.category:
        leaf = noise.configured_category(at.taxonomy, action.category)
        if leaf is None:
            raise PermanentError(
                f"tenant {deps.tenant.name!r}, key 'fields.noise.{at.kind}.category': "
                f"{action.category!r} is not an active category on "
                f"{at.ticket.scope_name or at.ticket.scope}; fix: name an active category"
            )
        chosen = Chosen(leaf, (), at.taxonomy.levels)
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
                scope=at.taxonomy.scope,
            ).id
        return _Plan(chosen, ruled, policy.Guard(), decision_id, at.previous, {}, decided)
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
    wrote: tuple[str, ...] = ()
    if routing is not None and routing.write is not None:
        write_category(
            deps.tenant, deps.adapter, deps.taxonomies, at.ticket, None, (routing.write,)
        )
        wrote = ("routing",)
    deps.decisions.finalize_decision(
        row.id, outcome=Outcome.SKIPPED, reason=reason, wrote_category=False, wrote_note=False
    )
    return Decision(Outcome.SKIPPED, reason, row.id, wrote=wrote, fields=decided)


def _noise_routing(deps: Deps, at: _NoiseContext, name: str) -> FieldDecision:
    values = _field_values(deps, at.ticket, "routing")
    option = next((o for o in values.options if o.name.casefold() == name.casefold()), None)
    if option is None:
        raise PermanentError(
            f"tenant {deps.tenant.name!r}, key 'fields.noise.{at.kind}.routing': {name!r} is not "
            f"an active {values.label.lower()}; fix: name an active one"
        )
    return FieldDecision("routing", values.label, option.name, option.id, APPLIED, 1.0, option)


def _route_first(
    deps: Deps, ticket: Ticket, effective: Effective, values: Facet, event_id: int
) -> tuple[FieldDecision, ...]:
    """Routing decided on its own, before the category, where it picks the category tree (a
    ConnectWise board): one model call whose candidates are the routing targets."""
    allowed = fields.routing_targets(values, effective.fields.routing.targets)
    if not allowed:
        return ()
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
    classification, chosen, _ = classify(deps, ticket, targets, scoped, event_id)
    option = chosen.category.path[0]
    confidence = classification.confidence
    outcome = fields.band("routing", confidence, effective.policy)
    return (
        FieldDecision("routing", values.label, option.name, option.id, outcome, confidence, option),
    )


def field_options(deps: Deps, ticket: Ticket, settings: FieldsSettings) -> dict[str, Facet]:
    """The live values of the enabled stored fields (priority, routing), through the cache."""
    return {
        name: _field_values(deps, ticket, name)
        for name in settings.active()
        if name in STORED_FIELDS
    }


def _field_values(deps: Deps, ticket: Ticket, name: str, *, refresh: bool = False) -> Facet:
    return deps.taxonomies.field_values(
        deps.tenant.name,
        deps.adapter,
        ticket,
        name,
        ttl_seconds=deps.tenant.taxonomy.cache_seconds,
        refresh=refresh,
    )


def _notes(action: policy.Action, decided: tuple[FieldDecision, ...]) -> bool:
    """Whether a note is written: for the category, or for a field shown in it."""
    return action in _NOTED or any(d.outcome != RECORDED for d in decided)


def _write(
    deps: Deps,
    ticket: Ticket,
    planned: _Plan,
    choice: policy.Choice,
    outcome: Outcome,
    tries: int,
) -> tuple[str, ...]:
    """The PSA writes, in one update: the category and the applied fields (unless already there);
    then the marked note (unless posted)."""
    wrote: list[str] = []
    category = choice.action is policy.Action.APPLY and not planned.chosen.is_on(ticket)
    current = {(v.level, v.id) for v in ticket.current}
    applied = [
        d
        for d in planned.fields
        if d.outcome == APPLIED
        and d.write is not None
        and (d.write.level, d.write.id) not in current
    ]
    values = tuple(d.write for d in applied if d.write is not None)
    chosen = planned.chosen if category else None
    if write_category(deps.tenant, deps.adapter, deps.taxonomies, ticket, chosen, values):
        wrote += ["category"] if category else []
        wrote += [d.name for d in applied]
    if _notes(choice.action, planned.fields):
        note_marker = marker(planned.decision_id)
        if tries > 1 and deps.adapter.find_note(ticket, note_marker):
            log.info("note already posted", ticket=ticket.id, marker=note_marker)
        else:
            text = _note(deps.tenant, outcome, planned, note_marker, review=choice.review)
            deps.adapter.add_note(ticket, text)
            wrote.append("note")
    return tuple(wrote)


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


def _taxonomy(deps: Deps, ticket: Ticket) -> Taxonomy:
    return deps.taxonomies.get(
        deps.tenant.name,
        deps.adapter,
        ticket,
        ttl_seconds=deps.tenant.taxonomy.cache_seconds,
    )


def _with_description(tenant: Tenant, leaf: Category) -> Category:
    description = tenant.describe(leaf)
    if description == leaf.description:
        return leaf
    return Category(leaf.key, leaf.path, description, leaf.active)


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
        classification = deps.breaker.call(
            lambda: shortlist.classify(tenant.taxonomy, deps.classifier, request)
        )
        return classification, _validated(classification, candidates, taxonomy), redactions
    except PsatriageError as exc:
        exc.model_related = True
        raise


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


def write_category(
    tenant: Tenant,
    adapter: PSAAdapter[Any],
    taxonomies: TaxonomyCache,
    ticket: Ticket,
    chosen: Chosen | None,
    values: tuple[LevelValue, ...] = (),
) -> bool:
    """Write ``chosen`` (unless it is already on the ticket) and the ticket field ``values`` in
    one update; returns whether a write was sent. If the PSA refuses the category, the tree is
    read again and the write retried once if the category is still valid. The pipeline's one
    write path, used by the review queue too."""
    if chosen is not None and chosen.is_on(ticket):
        chosen = None
    if chosen is None and not values:
        return False
    target = (chosen.target if chosen else Category("fields", ())).with_facets(values)
    try:
        adapter.set_category(ticket, target)
    except CategoryRejected as first:
        if chosen is None:
            raise
        fresh = taxonomies.refresh(
            tenant.name, adapter, ticket, ttl_seconds=tenant.taxonomy.cache_seconds
        )
        leaf = fresh.get(chosen.category.key)
        facets = {f.name: f for f in fresh.facets}
        still_valid = (
            leaf is not None
            and leaf.active
            and all(
                v.level in facets and facets[v.level].get(v.id) is not None
                for _, v in chosen.facets
            )
        )
        if not still_valid:
            raise CategoryRejected(
                f"the PSA rejected {chosen.category.label} and it is no longer in the category "
                f"tree (taxonomy refreshed): {first}"
            ) from first
        adapter.set_category(ticket, target)
    return True


def note_for(tenant: Tenant, row: DecisionRow) -> str | None:
    """The note a finished decision wrote, from what it recorded and the tenant's note template;
    None when it wrote none (recorded only, a kept category, or not finished)."""
    if not row.final or not row.wrote_note or row.category is None:
        return None
    outcome = Outcome(row.outcome)
    review = outcome is Outcome.SUGGESTED
    return _note(tenant, outcome, _checkpointed(row, row.category), marker(row.id), review=review)


def _note(
    tenant: Tenant, outcome: Outcome, planned: _Plan, note_marker: str, *, review: bool
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


def _classification_from(row: DecisionRow) -> Classification:
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
