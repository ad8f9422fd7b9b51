"""Categories whose tickets are short, frequent and alike: the cheapest to automate.

"Alike" is measured on the (redacted) titles: each title becomes its set of words (lower-case,
three letters or more, common words and numbers left out), and a category's similarity is the
mean Jaccard overlap of those sets over pairs of its tickets (at most ``SAMPLE`` tickets, taken
evenly). Tickets that say the same thing in the same words score near 1; unrelated ones near 0.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations

from psatriage.reports.models import AlikeRow
from psatriage.store.facts import Fact

MIN_TICKETS = 5  # frequent: at least this many tickets in the period
SHORT_HOURS = 0.5  # short: a median of at most this many hours per ticket
MIN_SIMILARITY = 0.3  # alike: mean word overlap of at least this
SAMPLE = 60
EXAMPLES = 3
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_COMMON = frozenset(
    {
        "the", "and", "for", "not", "with", "from", "this", "that", "can", "cannot", "can't", "our",
        "you", "your", "are", "was", "were", "has", "have", "had", "but", "please", "help", "issue",
        "problem", "ticket", "request", "need", "needs", "new", "any", "all", "get", "got",
    }
)  # fmt: skip


def words(title: str) -> frozenset[str]:
    """The words of a title that say what it is about."""
    return frozenset(w for w in (m.lower() for m in _WORD.findall(title)) if w not in _COMMON)


def similarity(titles: Sequence[str]) -> float:
    """Mean Jaccard overlap of the titles' words over pairs (0 with fewer than two titles)."""
    step = max(1, len(titles) // SAMPLE)
    sets = [words(t) for t in titles[::step][:SAMPLE]]
    pairs = [(a, b) for a, b in combinations(sets, 2) if a or b]
    if not pairs:
        return 0.0
    return sum(len(a & b) / len(a | b) for a, b in pairs) / len(pairs)


def alike_categories(
    groups: Mapping[str, Sequence[Fact]],
    *,
    hours_available: bool,
    per_year: Callable[[float], float],
    skip: str,
) -> list[AlikeRow]:
    """The categories of ``groups`` (category → its facts; ``skip`` is the no-category group)
    that are frequent, short (when hours are available) and alike, most tickets first."""
    rows = []
    for name, facts in groups.items():
        if name == skip or len(facts) < MIN_TICKETS:
            continue
        known = [f.hours for f in facts if f.hours is not None] if hours_available else []
        median = statistics.median(known) if known else None
        if median is not None and median > SHORT_HOURS:
            continue
        score = similarity([f.title for f in facts])
        if score < MIN_SIMILARITY:
            continue
        hours = sum(known) if hours_available else None
        rows.append(
            AlikeRow(
                category=name,
                tickets=len(facts),
                median_hours=None if median is None else round(median, 2),
                similarity=round(score, 3),
                examples=_examples([f.title for f in facts]),
                hours_a_year=None if hours is None else per_year(hours),
                tickets_a_year=per_year(len(facts)),
            )
        )
    return sorted(rows, key=lambda r: (-r.tickets, -r.similarity, r.category))


def criteria() -> dict[str, float]:
    return {
        "alike_min_tickets": MIN_TICKETS,
        "alike_max_median_hours": SHORT_HOURS,
        "alike_min_similarity": MIN_SIMILARITY,
    }


def _examples(titles: Sequence[str]) -> list[str]:
    """The most frequent titles (by their words), as first written."""
    first: dict[frozenset[str], str] = {}
    counts: Counter[frozenset[str]] = Counter()
    for title in titles:
        key = words(title)
        first.setdefault(key, title)
        counts[key] += 1
    return [first[key] for key, _ in counts.most_common(EXAMPLES)]
