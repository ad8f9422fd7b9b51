"""Candidate selection for taxonomies too large for one prompt.

Real boards reach hundreds of type/subtype/item combinations, and structured-output enums have
size limits. When a ticket has more candidates than the tenant's ``taxonomy.shortlist_above``,
``taxonomy.large_trees`` says how they are narrowed:

``shortlist`` (the default)
    The local engine ranks the leaves. The branches it finds likeliest (leaves under one parent,
    by their summed probability) go whole while they fit in ``taxonomy.shortlist_size``; its best
    remaining leaves fill the rest. One model call. Whole branches hold the right leaf more often
    than the same number of best single leaves (``bench/tokens.py``, docs/PERFORMANCE.md), and
    they list shortly, their shared path written once.
``branch_first``
    The model first chooses a branch among all of them, at the depth that lists fewer entries in
    all (the first level, or the first two), then a category among the chosen branch's leaves:
    a model call each, each recorded, and no leaf left out by a ranker. The second call's
    candidates are only leaves of the chosen branch; one still over the limit is split again,
    and one that cannot be split is shortlisted as above. The confidence is the product of the
    steps'. Only for classifiers without a ranker of their own (an LLM): the local and hybrid
    classifiers rank every leaf themselves, so they always shortlist.

Only leaves of the taxonomy are ever returned (valid combinations, in the taxonomy's own order);
the ticket's current category stays in a shortlist, so the model can still keep it.

The ranker is the classifier's own when it has one (``local`` and ``hybrid``: a model trained on
the tenant's history where there is one), else the zero-shot engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from psatriage.branches import Branch, at_depth, parents, split_depth
from psatriage.domain import Category, Classification, Ticket, Usage
from psatriage.errors import InvalidAnswer
from psatriage.local_engine.data import ticket_text

if TYPE_CHECKING:
    from psatriage.classifiers.base import ClassificationRequest, Classifier
    from psatriage.config import TaxonomySettings
    from psatriage.local_engine.ranker import Ranker, Scored


@runtime_checkable
class HasRanker(Protocol):
    """A classifier that ranks candidates itself (the local engine and the hybrid)."""

    def ranker(self) -> Ranker: ...


def shortlist(
    ranker: Ranker, ticket: Ticket, candidates: tuple[Category, ...], size: int
) -> tuple[Category, ...]:
    """At most ``size`` candidates for ``ticket`` (plus its current category), in their order:
    the likeliest branches whole, then the best single leaves."""
    if len(candidates) <= size:
        return candidates
    text = ticket_text(ticket.title, ticket.description, ticket.initial_note)
    keep = by_branches(ranker.rank(text, candidates), size)
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
    """The pipeline's step: shortlist when the tenant's limit is passed, else all candidates
    (and all of them when the model is to choose a branch first, in ``classify``)."""
    if not _large(settings, candidates) or _branch_first(settings, classifier):
        return candidates
    ranker = classifier.ranker() if isinstance(classifier, HasRanker) else _zero_shot()
    return shortlist(ranker, ticket, candidates, settings.shortlist_size)


def classify(
    settings: TaxonomySettings, classifier: Classifier[Any], request: ClassificationRequest
) -> Classification:
    """The classifier's choice among ``request.candidates``: directly, or with
    ``large_trees = "branch_first"`` on a large tree, a branch first (module docstring)."""
    if not (_large(settings, request.candidates) and _branch_first(settings, classifier)):
        return classifier.classify(request)
    started = time.perf_counter()
    candidates = request.candidates
    steps: list[tuple[Branch, Classification]] = []
    while _large(settings, candidates) and (depth := split_depth(candidates)) is not None:
        branches = {branch.key: branch for branch in at_depth(candidates, depth)}
        offered = tuple(branch.as_category() for branch in branches.values())
        step = classifier.classify(replace(request, candidates=offered, facets=()))
        chosen = branches.get(step.key)
        if chosen is None:  # the classifier already guarantees it
            raise InvalidAnswer(f"the model chose the branch {step.key!r}, which was not offered")
        steps.append((chosen, step))
        candidates = chosen.leaves
    if _large(settings, candidates):  # a flat branch: no level left to choose by
        ticket = request.ticket
        candidates = shortlist(_zero_shot(), ticket, candidates, settings.shortlist_size)
    if steps and len(candidates) == 1 and not request.facets:  # one leaf left: no more asking
        final = replace(steps[-1][1], key=candidates[0].key, confidence=1.0, usage=Usage())
    else:
        final = classifier.classify(replace(request, candidates=candidates))
    return _combined(steps, final, started)


def _combined(
    steps: Sequence[tuple[Branch, Classification]], final: Classification, started: float
) -> Classification:
    """The final answer, with the steps' confidence multiplied in and their usage added."""
    confidence, usage = final.confidence, final.usage
    for _, step in steps:
        confidence *= step.confidence
        usage = Usage(
            usage.tokens_in + step.usage.tokens_in,
            usage.tokens_out + step.usage.tokens_out,
            usage.cost_usd + step.usage.cost_usd,
        )
    within = ", ".join(f"{branch.label} {step.confidence:.2f}" for branch, step in steps)
    return replace(
        final,
        confidence=confidence,
        usage=usage,
        latency_ms=(time.perf_counter() - started) * 1000,
        reasoning=f"{final.reasoning} (chosen within {within})" if steps else final.reasoning,
    )


def by_branches(ranked: Sequence[Scored], size: int) -> set[str]:
    """The keys of the likeliest whole branches that fit in ``size``, then of the best leaves."""
    probability = {scored.category.key: scored.probability for scored in ranked}
    groups = parents([scored.category for scored in ranked])
    groups.sort(key=lambda group: -sum(probability[leaf.key] for leaf in group.leaves))
    keep: set[str] = set()
    for group in groups:
        if len(keep) + len(group.leaves) > size:
            break
        keep.update(leaf.key for leaf in group.leaves)
    for scored in ranked:
        if len(keep) >= size:
            break
        keep.add(scored.category.key)
    return keep


def _large(settings: TaxonomySettings, candidates: Sequence[Category]) -> bool:
    return bool(settings.shortlist_above) and len(candidates) > settings.shortlist_above


def _branch_first(settings: TaxonomySettings, classifier: Classifier[Any]) -> bool:
    return settings.large_trees == "branch_first" and not isinstance(classifier, HasRanker)


def _zero_shot() -> Ranker:
    # loaded on first need only: most tenants never pass the limit
    from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415
    from psatriage.local_engine.ranker import Ranker  # noqa: PLC0415

    global _shared_ranker  # noqa: PLW0603 - one stateless zero-shot ranker per process
    if _shared_ranker is None:
        _shared_ranker = Ranker(shared_embedder())
    return _shared_ranker


_shared_ranker: Ranker | None = None
