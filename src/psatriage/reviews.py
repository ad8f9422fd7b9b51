"""Acting on the review queue: accept, correct or dismiss a suggestion.

``act`` is the one function the API, the CLI and the console call. Accept and correct read the
ticket again and write the category through the pipeline's idempotent write
(``pipeline.write_category``: nothing is sent when the ticket already has it), so a review
writes at most once however often it is asked. A review whose ticket a person has categorized in
the PSA meanwhile closes itself as ``filled`` instead of overwriting the person. Every action is
recorded in the audit log with who did it, and accepted, corrected and filled reviews become
labeled examples of the tenant (``store.examples``).

Errors (the edges turn them into a status or an exit code)::

    PsatriageError
    ├── UnknownReview      no review has this id                      (404 / exit 1)
    ├── ReviewClosed       it is no longer pending                    (409 / exit 1)
    └── UnknownCategory    ``correct`` names no valid category key    (400 / exit 1)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from psatriage import pipeline, policy
from psatriage.config.tenant import Tenant
from psatriage.domain import PATH_SEPARATOR, Category, Chosen, Taxonomy, Ticket
from psatriage.errors import PermanentError, PsatriageError
from psatriage.local_engine.data import ticket_text
from psatriage.psa.base import PSAAdapter
from psatriage.store.decisions import Decisions
from psatriage.store.examples import ExampleSource, add_example
from psatriage.store.outcomes import Outcomes
from psatriage.store.reviews import Reviews
from psatriage.store.tables import ReviewRow, ReviewState
from psatriage.store.users import Audit
from psatriage.taxonomy_cache import TaxonomyCache

log = structlog.get_logger(__name__)


class UnknownReview(PsatriageError):
    """No review has this id."""


class ReviewClosed(PsatriageError):
    """The review is no longer pending."""


class UnknownCategory(PsatriageError):
    """The category key of a correction is not a valid category of the ticket."""


class Action(enum.StrEnum):
    ACCEPT = "accept"
    CORRECT = "correct"
    DISMISS = "dismiss"


@dataclass(frozen=True)
class Desk:
    """What acting on reviews needs (``Runtime.review_desk()`` builds the service's)."""

    reviews: Reviews
    decisions: Decisions
    audit: Audit
    taxonomies: TaxonomyCache
    tenant: Callable[[str], Tenant]
    adapter: Callable[[str], PSAAdapter[Any]]
    sessions: sessionmaker[Session]  # where labeled examples are stored
    outcomes: Outcomes


def act(
    desk: Desk,
    review_id: int,
    action: Action,
    *,
    by: str,
    category_key: str | None = None,
) -> ReviewRow:
    """Accept, correct (with ``category_key``) or dismiss a pending review, as ``by``; returns
    the closed review. Raises the errors above, and the PSA's (``TransientError``...) when the
    write fails, in which case the review stays pending."""
    row = desk.reviews.get(review_id)
    if row is None:
        raise UnknownReview(f"no review with the id {review_id}")
    _still_pending(row)
    if action is Action.DISMISS:
        return _close(desk, row, ReviewState.DISMISSED, by=by, detail="dismissed")
    if action is Action.CORRECT and not category_key:
        raise UnknownCategory("a correction needs the category key to write")
    tenant = desk.tenant(row.tenant)
    adapter = desk.adapter(row.tenant)
    ticket = adapter.get_ticket(row.ticket_id)
    taxonomy = desk.taxonomies.get(
        tenant.name, adapter, ticket, ttl_seconds=tenant.taxonomy.cache_seconds
    )
    suggested = Chosen.from_dict(row.category)
    if _person_categorized(desk, row, ticket, taxonomy, suggested):
        closed = close_as_filled(desk, row, tenant, ticket, taxonomy)
        raise ReviewClosed(
            f"review {row.id}: a person already set the category {closed.final_label} in the "
            "PSA; the review closed as filled"
        )
    if action is Action.ACCEPT:
        chosen, state = suggested, ReviewState.ACCEPTED
    else:
        assert category_key is not None
        chosen = _correction(tenant, ticket, taxonomy, suggested, category_key)
        state = ReviewState.CORRECTED
    if not desk.reviews.close(
        row.id, state, by=by, final_key=chosen.target.key, final_label=chosen.category.label
    ):
        _still_pending(desk.reviews.get(row.id) or row)
    try:
        wrote = pipeline.write_category(tenant, adapter, desk.taxonomies, ticket, chosen)
    except PsatriageError:
        desk.reviews.reopen(row.id, state)
        raise
    desk.decisions.mark_written(row.decision_id)
    if action is Action.ACCEPT:  # the sweep now follows what we wrote
        desk.outcomes.wrote(row.decision_id)
    else:
        desk.outcomes.corrected(row.decision_id, chosen.category.key, chosen.category.label, by)
    log.info("review closed", review=row.id, state=state.value, by=by, wrote=wrote)
    source: ExampleSource = "review_accept" if action is Action.ACCEPT else "review_correct"
    learn(desk.sessions, tenant, ticket, row.decision_id, chosen.category, source)
    return _closed(desk, row, state, by=by, detail=chosen.category.label)


def close_as_filled(
    desk: Desk, row: ReviewRow, tenant: Tenant, ticket: Ticket, taxonomy: Taxonomy
) -> ReviewRow:
    """Close a pending review because a person categorized its ticket in the PSA; what the
    person chose becomes a labeled example (a fill)."""
    values = taxonomy.tree_values(ticket)
    leaf = taxonomy.find_by_ids(values)
    label = PATH_SEPARATOR.join(v.name for v in values)
    by = "psa"
    desk.reviews.close(
        row.id,
        ReviewState.FILLED,
        by=by,
        final_key=leaf.key if leaf else None,
        final_label=label,
        detail=f"a person set {label} in the PSA",
    )
    if leaf is not None:
        learn(desk.sessions, tenant, ticket, row.decision_id, leaf, "fill")
    return _closed(desk, row, ReviewState.FILLED, by=by, detail=label)


def learn(
    sessions: sessionmaker[Session],
    tenant: Tenant,
    ticket: Ticket,
    decision_id: int | None,
    category: Category,
    source: ExampleSource,
) -> None:
    """Keep the ticket, redacted, with the category a person gave it: a labeled example."""
    masked, _ = tenant.redactor.ticket(ticket)
    add_example(
        sessions,
        tenant=tenant.name,
        company=ticket.company_id or ticket.company_name,
        ticket_id=ticket.id,
        text=ticket_text(masked.title, masked.description, masked.initial_note),
        category_key=category.key,
        category_path=category.label,
        source=source,
        decision_id=decision_id,
    )


def _person_categorized(
    desk: Desk, row: ReviewRow, ticket: Ticket, taxonomy: Taxonomy, suggested: Chosen
) -> bool:
    """Whether the ticket now has a category that is neither ours nor the one it had when we
    decided (that is, a person set it since)."""
    values = taxonomy.tree_values(ticket)
    if not values or suggested.is_on(ticket):
        return False
    decision = desk.decisions.get(row.decision_id)
    before = decision.previous if decision is not None else ""
    return PATH_SEPARATOR.join(v.name for v in values) != before


def _correction(
    tenant: Tenant, ticket: Ticket, taxonomy: Taxonomy, suggested: Chosen, key: str
) -> Chosen:
    """The category a correction writes: a live, active, not excluded leaf of the ticket's
    tree, named by its key or by its path as listed (any case), with the suggestion's other
    fields (queue, priority...)."""
    rules = tenant.effective(ticket.company_id, ticket.company_name).policy
    leaves = policy.candidates(rules, taxonomy)
    folded = key.casefold()
    leaf = next((c for c in leaves if c.key == key), None) or next(
        (c for c in leaves if c.label.casefold() == folded), None
    )
    if leaf is None:
        where = taxonomy.scope_name or taxonomy.scope
        raise UnknownCategory(
            f"{key!r} is not a category tenant {tenant.name!r} may use on ticket {ticket.id} "
            f"({where}); fix: pick a key from `psatriage taxonomy show --tenant {tenant.name}`"
        )
    return Chosen(leaf, suggested.facets, taxonomy.levels)


def _still_pending(row: ReviewRow) -> None:
    if row.state != ReviewState.PENDING.value:
        when = row.closed_at.isoformat(timespec="seconds") if row.closed_at else "earlier"
        raise ReviewClosed(
            f"review {row.id} is already {row.state} (by {row.closed_by or 'psatriage'}, {when})"
        )


def _close(desk: Desk, row: ReviewRow, state: ReviewState, *, by: str, detail: str) -> ReviewRow:
    if not desk.reviews.close(row.id, state, by=by, detail=detail):
        _still_pending(desk.reviews.get(row.id) or row)
    return _closed(desk, row, state, by=by, detail=detail)


def _closed(desk: Desk, row: ReviewRow, state: ReviewState, *, by: str, detail: str) -> ReviewRow:
    desk.audit.record(
        by,
        f"review_{state.value}",
        target=f"review {row.id}",
        detail=f"tenant {row.tenant}, ticket {row.ticket_id}: {detail}",
    )
    closed = desk.reviews.get(row.id)
    if closed is None:  # reviews are never deleted; a database restored mid-action
        raise PermanentError(f"review {row.id} disappeared")
    return closed
