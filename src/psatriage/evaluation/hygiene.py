"""Taxonomy hygiene: what the closed tickets of a period say about the category tree itself.

"Fix your categories first": a model cannot learn categories nobody uses, nor tell apart two
that people use for the same thing, nor learn anything from tickets filed under "Other". From the
final categories of a period (and, where the model answered, what it chose):

* categories never used — offered to the model, but no ticket ended in them;
* rare categories — under ``rare_share`` (1 %) of the tickets;
* merge candidates — the pairs the model confused most, both directions counted together
  (catch-alls left out);
* catch-all share — tickets that ended in a catch-all value ("Other", "General", "Misc"... by
  name, at any level) or in the PSA's own placeholder;
* not offered — final categories the model could not choose (inactive, excluded or gone).

Plain Python over the backtest's results; no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

CATCH_ALL: Final = re.compile(
    r"\b(other|others|general|generic|misc|miscellaneous|unknown|uncategori[sz]ed|"
    r"unclassified|unsorted|various|n/a|none|default|catch[- ]?all)\b",
    re.IGNORECASE,
)
RARE_SHARE: Final = 0.01


@dataclass(frozen=True, slots=True)
class FinalCategory:
    """The category one ticket ended in: its key, label and level names, whether it is the
    PSA's placeholder, and whether the model was offered it."""

    key: str
    label: str
    names: tuple[str, ...]
    placeholder: bool = False
    offered: bool = True


@dataclass(frozen=True, slots=True)
class Used:
    label: str
    tickets: int
    share: float


@dataclass(frozen=True, slots=True)
class Pair:
    first: str
    second: str
    tickets: int  # confusions in either direction


@dataclass
class Hygiene:
    tickets: int
    categories_offered: int
    categories_used: int
    unused: list[str] = field(default_factory=list)
    rare: list[Used] = field(default_factory=list)
    merge_candidates: list[Pair] = field(default_factory=list)
    catch_all_share: float = 0.0
    catch_all: list[Used] = field(default_factory=list)
    not_offered: list[Used] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_catch_all(final: FinalCategory) -> bool:
    return final.placeholder or any(CATCH_ALL.search(name) for name in final.names)


def check(
    finals: Sequence[FinalCategory],
    offered: Mapping[str, str],
    confusions: Iterable[tuple[str, str]],
    *,
    rare_share: float = RARE_SHARE,
    top: int = 10,
) -> Hygiene:
    """Hygiene of one period: ``finals`` per ticket, ``offered`` the categories the model may
    choose (key -> label), ``confusions`` the (final, chosen) keys where the model was wrong."""
    total = len(finals)
    counts = Counter(f.key for f in finals)
    labels = {**offered, **{f.key: f.label for f in finals}}

    def used(keys: Iterable[str]) -> list[Used]:
        rows = [Used(labels[k], counts[k], counts[k] / total) for k in set(keys)]
        return sorted(rows, key=lambda u: (-u.tickets, u.label))

    catch_all = [f for f in finals if is_catch_all(f)]
    # a catch-all is no merge candidate: it is counted apart, and merging into it helps no one
    vague = {f.key for f in catch_all} | {k for k, v in offered.items() if CATCH_ALL.search(v)}
    pairs: Counter[tuple[str, str]] = Counter()
    for truth, chosen in confusions:
        if truth in vague or chosen in vague:
            continue
        first, second = sorted((labels.get(truth, truth), labels.get(chosen, chosen)))
        pairs[(first, second)] += 1
    result = Hygiene(
        tickets=total,
        categories_offered=len(offered),
        categories_used=len(counts),
        unused=sorted(label for key, label in offered.items() if key not in counts),
        rare=[u for u in used(counts) if u.share < rare_share],
        merge_candidates=[
            Pair(a, b, n)
            for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        ],
        catch_all_share=len(catch_all) / total if total else 0.0,
        catch_all=used(f.key for f in catch_all),
        not_offered=used(f.key for f in finals if not f.offered),
    )
    result.advice = _advice(result)
    return result


def _advice(found: Hygiene) -> list[str]:
    advice = []
    if found.catch_all_share >= 0.1:
        advice.append(
            f"{found.catch_all_share:.0%} of tickets end in a catch-all category: split it into "
            "the categories people mean, or exclude it so the model does not learn to use it"
        )
    if found.unused:
        advice.append(
            f"{len(found.unused)} of {found.categories_offered} categories were never used: "
            "deactivate them in the PSA or exclude them (policy.excluded)"
        )
    if found.rare:
        advice.append(
            f"{_count(len(found.rare), 'category holds', 'categories hold')} under 1% of "
            "tickets: consider folding into the parent"
        )
    if found.merge_candidates:
        top = found.merge_candidates[0]
        advice.append(
            f"most confused: {top.first} and {top.second} "
            f"({_count(top.tickets, 'ticket', 'tickets')}): merge them or describe the difference "
            "(taxonomy.descriptions)"
        )
    if found.not_offered:
        advice.append(
            f"{_count(sum(u.tickets for u in found.not_offered), 'ticket', 'tickets')} ended in "
            "categories the model may not choose (inactive, excluded or gone): those count as "
            "misses"
        )
    return advice


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
