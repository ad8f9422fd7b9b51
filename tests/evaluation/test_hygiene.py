"""Taxonomy hygiene from a period's final categories and the model's confusions."""

from __future__ import annotations

import pytest

from psatriage.evaluation.hygiene import FinalCategory, check, is_catch_all


def _final(key: str, label: str, **flags: bool) -> FinalCategory:
    return FinalCategory(key, label, tuple(label.split(" › ")), **flags)


@pytest.mark.parametrize(
    ("label", "catch_all"),
    [
        ("Other", True),
        ("Hardware › Other", True),
        ("General", True),
        ("Misc › Printer", True),
        ("Miscellaneous", True),
        ("Uncategorised", True),
        ("Software › N/A", True),
        ("Mothership", False),  # "other" inside a word is not a catch-all
        ("Hardware › Printer", False),
        ("Generalist support", False),
    ],
)
def test_catch_all_values_are_found_by_name_at_any_level(label: str, catch_all: bool) -> None:
    assert is_catch_all(_final("k", label)) is catch_all


def test_the_placeholder_is_a_catch_all_too() -> None:
    assert is_catch_all(_final("14", "Triage", placeholder=True))


def test_hygiene_of_a_period() -> None:
    offered = {
        "1": "Hardware › Printer",
        "2": "Hardware › Laptop",
        "3": "Software",
        "4": "Other",
        "5": "Network",
    }
    finals = (
        [_final("1", "Hardware › Printer")] * 150
        + [_final("2", "Hardware › Laptop")] * 30
        + [_final("4", "Other")] * 18
        + [_final("3", "Software")]  # 0.5%: rare
        + [_final("9", "Retired", offered=False)]
    )
    confusions = [("1", "2")] * 3 + [("2", "1")] * 2 + [("4", "3")]

    found = check(finals, offered, confusions)

    assert (found.tickets, found.categories_offered, found.categories_used) == (200, 5, 5)
    assert found.unused == ["Network"]
    assert [(u.label, u.tickets, u.share) for u in found.rare] == [
        ("Retired", 1, 0.005),
        ("Software", 1, 0.005),
    ]
    assert [(p.first, p.second, p.tickets) for p in found.merge_candidates] == [
        ("Hardware › Laptop", "Hardware › Printer", 5),  # not Other and Software: a catch-all
    ]
    assert found.catch_all_share == 0.09
    assert [(u.label, u.tickets) for u in found.catch_all] == [("Other", 18)]
    assert [(u.label, u.tickets) for u in found.not_offered] == [("Retired", 1)]
    assert found.advice == [
        "1 of 5 categories were never used: deactivate them in the PSA or exclude them "
        "(policy.excluded)",
        "2 categories hold under 1% of tickets: consider folding into the parent",
        "most confused: Hardware › Laptop and Hardware › Printer (5 tickets): merge them or "
        "describe the difference (taxonomy.descriptions)",
        "1 ticket ended in categories the model may not choose (inactive, excluded or gone): "
        "those count as misses",
    ]


def test_a_large_catch_all_share_is_the_first_advice() -> None:
    finals = [_final("4", "General")] * 3 + [_final("1", "Printer")] * 7
    found = check(finals, {"1": "Printer", "4": "General"}, [])
    assert found.catch_all_share == 0.3
    assert found.advice[0].startswith("30% of tickets end in a catch-all category")
    assert check([], {}, []).catch_all_share == 0.0
