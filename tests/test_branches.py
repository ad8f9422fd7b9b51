"""Branches of a category tree: grouping by shared prefix (by ids, not names), and the depth at
which choosing a branch first lists the fewest entries."""

from __future__ import annotations

from dataclasses import replace

from psatriage.branches import at_depth, listing_order, parents, split_depth
from psatriage.domain import Category
from tests.classifiers.kit import leaf


def board(types: int, subtypes: int, items: int) -> tuple[Category, ...]:
    return tuple(
        leaf(f"{t}/{t}{s}/{t}{s}{i}", f"T{t}", f"S{s}", f"I{i}")
        for t in range(types)
        for s in range(subtypes)
        for i in range(items)
    )


def test_parents_put_one_level_leaves_first_and_keep_every_leaf_once() -> None:
    tree = (
        leaf("1/10/100", "Hardware", "Printer", "Paper jam"),
        leaf("9", "Network"),
        leaf("1/11/110", "Hardware", "Laptop", "Battery"),
        leaf("1/10/101", "Hardware", "Printer", "Toner"),
    )
    groups = parents(tree)
    assert [(g.label, [c.key for c in g.leaves]) for g in groups] == [
        ("", ["9"]),
        ("Hardware › Printer", ["1/10/100", "1/10/101"]),
        ("Hardware › Laptop", ["1/11/110"]),
    ]
    assert sorted(c.key for c in listing_order(tree)) == sorted(c.key for c in tree)
    assert [c.key for c in listing_order(tree)] == ["9", "1/10/100", "1/10/101", "1/11/110"]


def test_branches_are_matched_by_ids_not_names() -> None:
    twins = (leaf("1/10", "Same", "A"), leaf("2/20", "Same", "B"))
    assert [b.key for b in at_depth(twins, 1)] == ["1", "2"]
    assert [b.label for b in at_depth(twins, 1)] == ["Same", "Same"]


def test_a_branch_as_a_candidate_carries_the_description_its_leaves_share() -> None:
    shared = tuple(
        replace(leaf(key, "Hardware", name), description="Devices")
        for key, name in (("1/10", "Printer"), ("1/11", "Laptop"))
    )
    mixed = (*shared, leaf("1/12", "Hardware", "Phone"))
    assert at_depth(shared, 1)[0].as_category() == Category("1", shared[0].path[:1], "Devices")
    assert at_depth(mixed, 1)[0].as_category().description == ""


def test_split_depth_lists_the_fewest_entries() -> None:
    # 20 types x 8 subtypes x 6 items: 20 types then ~48 leaves beat 160 branches then 6
    assert split_depth(board(20, 8, 6)) == 1
    # 3 types x 30 subtypes x 10 items: 90 branches then 10 leaves beat 3 types then 300
    assert split_depth(board(3, 30, 10)) == 2
    assert split_depth(board(1, 1, 50)) is None  # one type, one subtype: nothing to choose
    assert split_depth(tuple(leaf(str(n), f"N{n}") for n in range(300))) is None  # flat


def test_a_leaf_no_deeper_than_the_depth_is_in_its_own_branch() -> None:
    tree = (leaf("1", "Hardware"), leaf("1/10", "Hardware", "Printer"), leaf("2", "Software"))
    assert [[c.key for c in b.leaves] for b in at_depth(tree, 1)] == [["1", "1/10"], ["2"]]
