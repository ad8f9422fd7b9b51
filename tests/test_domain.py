from __future__ import annotations

import pytest

from psatriage.domain import Category, LevelValue, Taxonomy, Ticket


def _leaf(key: str, *names: str, active: bool = True) -> Category:
    ids = key.split("/")
    levels = ("type", "subType", "item")
    return Category(
        key=key,
        path=tuple(LevelValue(levels[i], ids[i], name) for i, name in enumerate(names)),
        active=active,
    )


def test_taxonomy_round_trips_and_looks_up() -> None:
    taxonomy = Taxonomy(
        scope="1",
        scope_name="Help Desk",
        levels=("type", "subType", "item"),
        leaves=(_leaf("8/1/2", "Hardware", "Printer", "Jam"), _leaf("9", "Admin", active=False)),
        defaults=frozenset({("type", "9")}),
    )
    again = Taxonomy.from_dict(taxonomy.to_dict())
    assert again == taxonomy
    assert again.fingerprint == taxonomy.fingerprint
    assert taxonomy.get("8/1/2") is not None
    assert taxonomy.get("nope") is None
    assert [c.key for c in taxonomy.active()] == ["8/1/2"]
    assert taxonomy.find_by_ids(taxonomy.leaves[0].path) == taxonomy.leaves[0]
    assert taxonomy.leaves[0].label == "Hardware › Printer › Jam"


def test_fingerprint_changes_with_any_leaf() -> None:
    one = Taxonomy("1", "b", ("type",), (_leaf("1", "A"),))
    two = Taxonomy("1", "b", ("type",), (_leaf("1", "B"),))
    assert one.fingerprint != two.fingerprint


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Taxonomy("1", "b", ("type",), (_leaf("1", "A"), _leaf("1", "B")))


def test_ticket_current_label() -> None:
    ticket = Ticket(
        id="1",
        title="t",
        description="d",
        scope="1",
        current=(LevelValue("type", "8", "Hardware"), LevelValue("subType", "1", "Printer")),
    )
    assert ticket.current_label == "Hardware › Printer"
