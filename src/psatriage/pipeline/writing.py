"""The PSA writes: the category and the applied ticket fields in one update, then the marked
note. ``write_category`` is the one write path, used by the review queue too."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from psatriage import policy
from psatriage.config.tenant import Tenant
from psatriage.domain import APPLIED, Category, Chosen, LevelValue, Outcome, Ticket
from psatriage.errors import CategoryRejected
from psatriage.pipeline.deps import Deps
from psatriage.pipeline.notes import marker, render_note, writes_note
from psatriage.pipeline.plan import Plan
from psatriage.psa.base import PSAAdapter
from psatriage.taxonomy_cache import TaxonomyCache

log = structlog.get_logger(__name__)


def write_decision(
    deps: Deps,
    ticket: Ticket,
    planned: Plan,
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
    lands_on = ticket  # where the category belongs: the board routing moves the ticket to
    routed = next((d for d in applied if d.name == "routing"), None)
    if routed is not None and deps.adapter.routing_sets_scope:
        lands_on = replace(ticket, scope=routed.value_id, scope_name=routed.value)
    taxonomies = deps.taxonomies
    if write_category(deps.tenant, deps.adapter, taxonomies, ticket, chosen, values, lands_on):
        wrote += ["category"] if category else []
        wrote += [d.name for d in applied]
    if writes_note(choice.action, planned.fields):
        note_marker = marker(planned.decision_id)
        if tries > 1 and deps.adapter.find_note(ticket, note_marker):
            log.info("note already posted", ticket=ticket.id, marker=note_marker)
        else:
            text = render_note(deps.tenant, outcome, planned, note_marker, review=choice.review)
            deps.adapter.add_note(ticket, text)
            wrote.append("note")
    return tuple(wrote)


def write_category(
    tenant: Tenant,
    adapter: PSAAdapter[Any],
    taxonomies: TaxonomyCache,
    ticket: Ticket,
    chosen: Chosen | None,
    values: tuple[LevelValue, ...] = (),
    lands_on: Ticket | None = None,
) -> bool:
    """Write ``chosen`` (unless it is already on the ticket) and the ticket field ``values`` in
    one update; returns whether a write was sent. If the PSA refuses the category, the tree is
    read again (the tree of ``lands_on``, the ticket where the values move it, when they move
    it to another board) and the write retried once if the category is still valid. The
    pipeline's one write path, used by the review queue too."""
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
            tenant.name, adapter, lands_on or ticket, ttl_seconds=tenant.taxonomy.cache_seconds
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
