"""Building a ConnectWise board's category tree from its types, subtypes, items and their
associations (pure functions over the API's records)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psatriage.domain import LevelValue
from psatriage.psa.wire import lower_keys as _ci

LEVELS = ("type", "subType", "item")
_JSON = dict[str, Any]


def current_levels(ticket: Mapping[str, Any]) -> tuple[LevelValue, ...]:
    values = []
    for level in LEVELS:
        ref = _ci(ticket.get(level.lower()))
        if ref.get("id") is not None:
            values.append(LevelValue(level, str(ref["id"]), str(ref.get("name") or "")))
    return tuple(values)


def by_id(records: Iterable[_JSON]) -> dict[str, _JSON]:
    return {str(record["id"]): record for record in records if record.get("id") is not None}


def _active(level: str, ref: object, known: Mapping[str, _JSON]) -> LevelValue | None:
    """The board's value behind an association reference, if it exists and is active."""
    reference = _ci(ref)
    record = known.get(str(reference.get("id")))
    if record is None or record.get("inactiveFlag") is True:
        return None
    # [UNSURE] an association's item may carry its own _info.inactiveFlag ("True"); honour it too.
    if str(_ci(reference.get("_info")).get("inactiveflag")).lower() == "true":
        return None
    name = record.get("name") or reference.get("name") or ""
    return LevelValue(level, str(record["id"]), str(name))


def association_paths(
    associations: Iterable[_JSON],
    types: Mapping[str, _JSON],
    subtypes: Mapping[str, _JSON],
    items: Mapping[str, _JSON],
) -> list[tuple[LevelValue, ...]]:
    """type > subtype > item leaves whose every value is active (null item: type > subtype)."""
    paths: list[tuple[LevelValue, ...]] = []
    for association in associations:
        entry = _ci(association)
        type_ = _active("type", entry.get("type"), types)
        if type_ is None:
            continue
        if entry.get("subtype") is None:  # no subtype: a type-only leaf (an item needs one)
            paths.append((type_,))
            continue
        subtype = _active("subType", entry.get("subtype"), subtypes)
        if subtype is None:
            continue
        if entry.get("item") is None:
            paths.append((type_, subtype))
            continue
        item = _active("item", entry.get("item"), items)
        if item is not None:
            paths.append((type_, subtype, item))
    return paths


def fallback_paths(
    types: Mapping[str, _JSON], subtypes: Mapping[str, _JSON]
) -> list[tuple[LevelValue, ...]]:
    """A board without associations: each active type times the active subtypes allowed under it.

    [UNSURE] ``typeAssociationIds`` is read as the ids of the types a subtype belongs to.
    """
    paths: list[tuple[LevelValue, ...]] = []
    for type_id, record in types.items():
        if record.get("inactiveFlag") is True:
            continue
        type_ = LevelValue("type", type_id, str(record.get("name") or ""))
        under = [
            (type_, LevelValue("subType", sub_id, str(sub.get("name") or "")))
            for sub_id, sub in subtypes.items()
            if sub.get("inactiveFlag") is not True
            and type_id in {str(i) for i in sub.get("typeAssociationIds") or []}
        ]
        paths.extend(under or [(type_,)])
    return paths
