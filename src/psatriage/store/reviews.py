"""The review queue: suggestions between ``suggest_at`` and ``apply_at`` waiting for a person.

A review opens with its decision (``open_review``, in the decision's own transaction) and holds
what a person needs to judge it without a call to the PSA: the ticket's redacted title and start,
the suggested category, its confidence and the alternatives. It closes once: accepted,
corrected, dismissed, or ``filled`` by itself when a person categorized the ticket in the PSA.
Closing is a conditional update from ``pending``, so two people acting at once cannot both win.
The service around it (writing to the PSA) is ``psatriage.reviews``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import ReviewRow, ReviewState, utcnow

EXCERPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class ReviewDraft:
    """What a new review holds (title and excerpt already redacted)."""

    decision_id: int
    tenant: str
    ticket_id: str
    company_id: str | None
    company_name: str
    title: str
    excerpt: str
    category: dict[str, Any]  # Chosen.to_dict()
    category_key: str
    category_label: str
    confidence: float
    alternatives: Sequence[dict[str, Any]] = field(default_factory=tuple)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a ticket's text on one line, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def open_review(session: Session, draft: ReviewDraft) -> None:
    """Add the review of a decision unless it already has one (a retried finalization)."""
    existing = session.execute(
        select(ReviewRow.id).where(ReviewRow.decision_id == draft.decision_id)
    ).scalar_one_or_none()
    if existing is not None:
        return
    session.add(
        ReviewRow(
            decision_id=draft.decision_id,
            tenant=draft.tenant,
            ticket_id=draft.ticket_id,
            company_id=draft.company_id,
            company_name=draft.company_name[:255],
            title=draft.title,
            excerpt=draft.excerpt,
            category=draft.category,
            category_key=draft.category_key,
            category_label=draft.category_label,
            confidence=draft.confidence,
            alternatives=list(draft.alternatives),
            state=ReviewState.PENDING.value,
        )
    )


class Reviews:
    """Reading and closing reviews."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, review_id: int) -> ReviewRow | None:
        with self._sessions() as session:
            return session.get(ReviewRow, review_id)

    def search(
        self,
        *,
        tenant: str | None = None,
        state: ReviewState | None = ReviewState.PENDING,
        company: str | None = None,
        ticket_id: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[ReviewRow]:
        """Reviews newest first; ``company`` matches the company's PSA id or name."""
        query = select(ReviewRow).order_by(ReviewRow.id.desc()).limit(limit)
        if tenant:
            query = query.where(ReviewRow.tenant == tenant)
        if state is not None:
            query = query.where(ReviewRow.state == state.value)
        if company:
            query = query.where(
                (ReviewRow.company_id == company) | (ReviewRow.company_name == company)
            )
        if ticket_id:
            query = query.where(ReviewRow.ticket_id == ticket_id)
        if before_id:
            query = query.where(ReviewRow.id < before_id)
        with self._sessions() as session:
            return list(session.execute(query).scalars())

    def pending_for_tickets(self, tenant: str, ticket_ids: Sequence[str]) -> list[ReviewRow]:
        if not ticket_ids:
            return []
        with self._sessions() as session:
            return list(
                session.execute(
                    select(ReviewRow).where(
                        ReviewRow.tenant == tenant,
                        ReviewRow.state == ReviewState.PENDING.value,
                        ReviewRow.ticket_id.in_(list(ticket_ids)),
                    )
                ).scalars()
            )

    def close(
        self,
        review_id: int,
        state: ReviewState,
        *,
        by: str,
        final_key: str | None = None,
        final_label: str = "",
        detail: str = "",
    ) -> bool:
        """Close a pending review; False when it was not pending (someone else closed it)."""
        now = utcnow()
        with self._sessions.begin() as session:
            result = session.execute(
                update(ReviewRow)
                .where(ReviewRow.id == review_id, ReviewRow.state == ReviewState.PENDING.value)
                .values(
                    state=state.value,
                    closed_by=by[:255],
                    closed_at=now,
                    final_key=final_key,
                    final_label=final_label,
                    detail=detail,
                    updated_at=now,
                )
            )
            return bool(getattr(result, "rowcount", 0))

    def reopen(self, review_id: int, state: ReviewState) -> None:
        """Put back a review whose closing write failed (only if it is still ``state``)."""
        with self._sessions.begin() as session:
            session.execute(
                update(ReviewRow)
                .where(ReviewRow.id == review_id, ReviewRow.state == state.value)
                .values(
                    state=ReviewState.PENDING.value,
                    closed_by="",
                    closed_at=None,
                    final_key=None,
                    final_label="",
                    detail="",
                    updated_at=utcnow(),
                )
            )
