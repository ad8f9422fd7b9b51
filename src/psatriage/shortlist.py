"""Candidate selection for taxonomies too large for one prompt.

Real boards reach hundreds of type/subtype/item combinations, and structured-output enums have
size limits. When a ticket has more candidates than the tenant's ``taxonomy.shortlist_above``,
``taxonomy.large_trees`` says how they are narrowed:

``shortlist`` (the default)
    The local engine ranks the leaves; one model call. With a model trained on the tenant's
    history (``by_history``), its probabilities are weighed with that history: the leaves it was
    trained on keep its ranking (tempered: a square root, so a noisy history's second choices
    are not crowded out by one sure guess), the categories it saw too rarely to learn share their
    share of the history, by count and by how likely the model finds their first level, and the
    categories never seen share what a Good-Turing estimate leaves for the unseen (the share of
    the history's categories seen once), by zero-shot and by how likely their branch is. Every
    leaf at least a tenth as likely as a uniform guess is kept, at most
    ``taxonomy.shortlist_above``: a sure ranking keeps few, an unsure one many. Without a trained
    model (zero-shot, ``by_branches``), the branches it finds likeliest (leaves under one parent,
    by their summed probability) go whole while they fit in ``taxonomy.shortlist_size``, and its
    best remaining leaves fill the rest. What each gives, in recall of the right leaf and prompt
    tokens, is measured by ``bench/tokens.py`` (docs/PERFORMANCE.md).
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

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from psatriage.branches import Branch, at_depth, parents, split_depth
from psatriage.domain import Category, Classification, LevelValue, Ticket, Usage
from psatriage.errors import InvalidAnswer
from psatriage.local_engine.data import ticket_text

if TYPE_CHECKING:
    from psatriage.classifiers.base import ClassificationRequest, Classifier
    from psatriage.config import TaxonomySettings
    from psatriage.local_engine.model import TrainingReport
    from psatriage.local_engine.ranker import Ranker, Scored


@runtime_checkable
class HasRanker(Protocol):
    """A classifier that ranks candidates itself (the local engine and the hybrid)."""

    def ranker(self) -> Ranker: ...


def shortlist(
    ranker: Ranker,
    ticket: Ticket,
    candidates: tuple[Category, ...],
    size: int,
    most: int | None = None,
) -> tuple[Category, ...]:
    """The candidates for ``ticket`` (plus its current category), in their order: with a trained
    ranker the likely ones by its weighed history, at most ``most`` (``by_history``), else at
    most ``size``, the likeliest branches whole, then the best single leaves."""
    most = size if most is None else most
    if len(candidates) <= min(size, most):
        return candidates
    text = ticket_text(ticket.title, ticket.description, ticket.initial_note)
    ranked = ranker.rank(text, candidates)
    keep = by_history(ranked, ranker.model.report, most) if ranker.model is not None else None
    if keep is None:
        keep = by_branches(ranked, size)
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
    return shortlist(ranker, ticket, candidates, settings.shortlist_size, settings.shortlist_above)


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


# the shortlist with a trained model (``by_history``); measured in bench/tokens.py
KEEP_OF_UNIFORM = 0.1  # a leaf is kept when at least this many times as likely as uniform
TEMPER = 0.5  # the model's probabilities to this power
BRANCH_FLOOR = 0.01  # added to a branch's probability, so an unlikely branch's leaves still rank


def by_history(
    ranked: Sequence[Scored],
    report: TrainingReport,
    most: int,
    *,
    keep: float = KEEP_OF_UNIFORM,
    temper: float = TEMPER,
) -> set[str] | None:
    """The keys of the leaves at least ``keep`` times as likely as a uniform guess by
    ``weighed``, likeliest first, at most ``most``; ``None`` when the model knows none of the
    candidates (or cannot read the ticket): there is no history to weigh."""
    scores = weighed(ranked, report, temper=temper)
    if scores is None:
        return None
    floor = keep / len(ranked)
    kept = [key for key, score in scores.items() if score >= floor]
    return set(sorted(kept, key=lambda key: -scores[key])[:most])


def weighed(
    ranked: Sequence[Scored], report: TrainingReport, *, temper: float = TEMPER
) -> dict[str, float] | None:
    """Each leaf's probability, the trained model's weighed with the history it was trained on
    (the module docstring); ``None`` when the model knows none of the leaves."""
    known = {s.category.key: s.probability for s in ranked if s.source == "model"}
    if not known:
        return None
    names = {_normalized(name): n for name, n in report.zero_shot.items()}
    rare: dict[str, int] = {}
    unseen: dict[str, float] = {}
    for s in ranked:
        if s.category.key in known:
            continue
        n = report.zero_shot.get(s.category.key) or names.get(
            _normalized(" > ".join(v.name for v in s.category.path))
        )
        if n:
            rare[s.category.key] = n
        else:
            unseen[s.category.key] = s.probability
    total = report.examples + sum(report.zero_shot.values())
    once = max(1, sum(1 for n in report.zero_shot.values() if n == 1))
    unseen_share = once / total if unseen else 0.0
    rare_share = sum(rare.values()) / total
    scores = _spread(
        {key: p**temper for key, p in known.items()}, max(0.0, 1 - rare_share - unseen_share)
    )
    path = {s.category.key: s.category.path for s in ranked}
    first = _mass(scores, lambda key: path[key][:1])
    scores |= _spread(
        {key: n * (first.get(_ids(path[key][:1]), 0.0) + BRANCH_FLOOR) for key, n in rare.items()},
        rare_share,
    )
    parent = _mass(scores, lambda key: path[key][:-1])
    scores |= _spread(
        {
            key: p * (parent.get(_ids(path[key][:-1]), 0.0) + BRANCH_FLOOR)
            for key, p in unseen.items()
        },
        unseen_share,
    )
    return scores


def _spread(weights: dict[str, float], share: float) -> dict[str, float]:
    """``weights`` scaled to sum to ``share`` (evenly where they are all zero)."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, share / len(weights)) if weights else {}
    return {key: share * w / total for key, w in weights.items()}


def _mass(
    scores: dict[str, float], prefix: Callable[[str], tuple[LevelValue, ...]]
) -> dict[tuple[tuple[str, str], ...], float]:
    """The summed ``scores`` under each path prefix, normalized to sum to one."""
    total = sum(scores.values()) or 1.0
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for key, score in scores.items():
        ids = _ids(prefix(key))
        out[ids] = out.get(ids, 0.0) + score / total
    return out


def _ids(path: tuple[LevelValue, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((v.level, v.id) for v in path)


def _normalized(label: str) -> str:
    return " > ".join(p.casefold() for p in _SEPARATORS.split(label.strip()) if p)


_SEPARATORS = re.compile(r"\s*(?:[>›/]|\s›\s)\s*")


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
