"""Candidate selection for taxonomies too large for one prompt.

Real boards reach hundreds of type/subtype/item combinations, and structured-output enums have
size limits. When a ticket has more candidates than the tenant's ``taxonomy.shortlist_above``, the
local engine ranks them and the best ``taxonomy.shortlist_size`` go to the classifier. Only leaves
of the taxonomy are ever returned (valid combinations, in the taxonomy's own order); the ticket's
current category stays in, so the model can still keep it.

The ranker is the classifier's own when it has one (``local`` and ``hybrid``: a model trained on
the tenant's history where there is one), else the zero-shot engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from psatriage.domain import Category, Ticket
from psatriage.local_engine.data import ticket_text

if TYPE_CHECKING:
    from psatriage.classifiers.base import Classifier
    from psatriage.config import TaxonomySettings
    from psatriage.local_engine.ranker import Ranker


@runtime_checkable
class HasRanker(Protocol):
    """A classifier that ranks candidates itself (the local engine and the hybrid)."""

    def ranker(self) -> Ranker: ...


def shortlist(
    ranker: Ranker, ticket: Ticket, candidates: tuple[Category, ...], size: int
) -> tuple[Category, ...]:
    """The ``size`` best candidates for ``ticket`` (plus its current category), in their order."""
    if len(candidates) <= size:
        return candidates
    text = ticket_text(ticket.title, ticket.description, ticket.initial_note)
    ranked = ranker.rank(text, candidates)
    keep = {scored.category.key for scored in ranked[:size]}
    current = tuple((v.level, v.id) for v in ticket.current)
    return tuple(
        c
        for c in candidates
        if c.key in keep or (current and tuple((v.level, v.id) for v in c.path) == current)
    )


def for_ticket(
    settings: TaxonomySettings,
    classifier: Classifier[Any],
    ticket: Ticket,
    candidates: tuple[Category, ...],
) -> tuple[Category, ...]:
    """The pipeline's step: shortlist when the tenant's limit is passed, else all candidates."""
    if not settings.shortlist_above or len(candidates) <= settings.shortlist_above:
        return candidates
    ranker = classifier.ranker() if isinstance(classifier, HasRanker) else _zero_shot()
    return shortlist(ranker, ticket, candidates, settings.shortlist_size)


def _zero_shot() -> Ranker:
    # loaded on first need only: most tenants never pass the limit
    from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415
    from psatriage.local_engine.ranker import Ranker  # noqa: PLC0415

    global _shared_ranker  # noqa: PLW0603 - one stateless zero-shot ranker per process
    if _shared_ranker is None:
        _shared_ranker = Ranker(shared_embedder())
    return _shared_ranker


_shared_ranker: Ranker | None = None
