"""The branches of a category tree: candidates grouped by the path they share.

A branch is a path prefix (``Hardware``, ``Hardware › Printer``) with the candidates under it,
matched by the prefix's ids, not its names. Three things use them: the prompt lists candidates
under their parent path so a prefix is written once (``parents``), the shortlist keeps whole
branches the local engine finds likely (``at_depth``), and on a large tree the model can choose a
branch before a leaf (``split_depth``, ``Branch.as_category``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from psatriage.domain import PATH_SEPARATOR, Category, LevelValue


@dataclass(frozen=True, slots=True)
class Branch:
    """A path prefix and the candidates under it, in their order."""

    path: tuple[LevelValue, ...]
    leaves: tuple[Category, ...]

    @property
    def key(self) -> str:
        """The prefix's ids, as ``/``-joined ids name a leaf."""
        return "/".join(v.id for v in self.path)

    @property
    def label(self) -> str:
        return PATH_SEPARATOR.join(v.name for v in self.path)

    @property
    def description(self) -> str:
        """The description every leaf under it shares, if they all share one."""
        shared = {leaf.description for leaf in self.leaves}
        return shared.pop() if len(shared) == 1 else ""

    def as_category(self) -> Category:
        """The branch as one candidate, for asking the model to choose a branch."""
        return Category(self.key, self.path, self.description)


def at_depth(candidates: Sequence[Category], depth: int) -> list[Branch]:
    """``candidates`` grouped by their first ``depth`` levels, in order of first appearance.

    A leaf whose path is not longer than ``depth`` is its own branch (or shares one with the
    leaves below it). Every candidate is in exactly one branch.
    """
    return _grouped(candidates, lambda leaf: leaf.path[:depth])


def parents(candidates: Sequence[Category]) -> list[Branch]:
    """``candidates`` grouped under their parent path (all levels but the last): one-level leaves
    (an empty parent) first, then the groups in order of first appearance. Every candidate is in
    exactly one group."""
    groups = _grouped(candidates, lambda leaf: leaf.path[:-1])
    return sorted(groups, key=lambda group: bool(group.path))  # stable: the rest keep their order


def listing_order(candidates: Sequence[Category]) -> tuple[Category, ...]:
    """``candidates`` in the order a grouped listing shows them (see ``parents``)."""
    return tuple(leaf for group in parents(candidates) for leaf in group.leaves)


def split_depth(candidates: Sequence[Category]) -> int | None:
    """The depth at which choosing a branch first lists the fewest entries in all (the branches,
    then the leaves of an average branch); ``None`` when no depth splits the candidates."""
    deepest = max((len(c.path) for c in candidates), default=0)
    best: tuple[float, int] | None = None
    for depth in range(1, deepest):
        count = len(at_depth(candidates, depth))
        if 1 < count < len(candidates):
            listed = count + len(candidates) / count
            if best is None or listed < best[0]:
                best = (listed, depth)
    return best[1] if best else None


def _grouped(
    candidates: Sequence[Category], prefix: Callable[[Category], tuple[LevelValue, ...]]
) -> list[Branch]:
    paths: dict[tuple[tuple[str, str], ...], tuple[LevelValue, ...]] = {}
    members: dict[tuple[tuple[str, str], ...], list[Category]] = {}
    for leaf in candidates:
        path = prefix(leaf)
        ids = tuple((v.level, v.id) for v in path)
        paths.setdefault(ids, path)
        members.setdefault(ids, []).append(leaf)
    return [Branch(paths[ids], tuple(leaves)) for ids, leaves in members.items()]
