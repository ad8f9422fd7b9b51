"""Autotask picklists (``{Entity}/entityInformation/fields``) and the taxonomy built from them.

The tree is *issue type › sub-issue type*: each sub-issue type names its issue type in
``parentValue``; only active values whose parent is active make leaves, and an issue type without
active sub-issue types is a leaf by itself. Picklist values are kept as strings (samples mix
strings and integers) and written as integers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from psatriage.domain import Category, Facet, LevelValue, Taxonomy
from psatriage.errors import CategoryRejected, ConfigError, PermanentError
from psatriage.psa.autotask.config import FACET_LABELS, PORTAL_VISIBLE, AutotaskConfig
from psatriage.psa.autotask.hooks import text_of
from psatriage.psa.wire import lower_keys as ci

log = structlog.get_logger(__name__)

LEVELS = ("issueType", "subIssueType")
SCOPE, SCOPE_NAME = "tickets", "Tickets"


@dataclass(frozen=True, slots=True)
class Pick:
    """One picklist value as ``entityInformation/fields`` lists it."""

    id: str
    label: str
    active: bool
    default: bool = False
    parent: str = ""


Picklists = dict[str, tuple[Pick, ...]]


def parse_picklists(data: object) -> Picklists:
    """Picklist fields by name (the first entry wins when a name repeats); values as strings."""
    lists: Picklists = {}
    fields = ci(data).get("fields")
    for field in fields if isinstance(fields, list) else []:
        entry = ci(field)
        name = text_of(entry.get("name"))
        values = entry.get("picklistvalues")
        if not name or name in lists or not isinstance(values, list):
            continue
        if entry.get("ispicklist") is False:
            continue
        picks = []
        for raw in _sorted(values):
            value = ci(raw)
            pick_id = text_of(value.get("value")).strip()
            if pick_id:
                picks.append(
                    Pick(
                        id=pick_id,
                        label=text_of(value.get("label")),
                        active=value.get("isactive") is not False,
                        default=value.get("isdefaultvalue") is True,
                        parent=text_of(value.get("parentvalue")).strip(),
                    )
                )
        lists[name] = tuple(picks)
    return lists


def _sorted(values: Iterable[object]) -> list[object]:
    """By ``sortOrder`` as Autotask shows them (stable for equal or missing orders)."""

    def order(value: object) -> int:
        raw = ci(value).get("sortorder")
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else 0

    return sorted(values, key=order)


def find_pick(lists: Picklists, level: str, value: str) -> Pick | None:
    return next((p for p in lists.get(level, ()) if p.id == value), None)


def label_of(lists: Picklists, level: str, value: str) -> str:
    pick = find_pick(lists, level, value)
    return pick.label if pick is not None else f"#{value}"


def check_active(lists: Picklists, level: str, value: str) -> None:
    pick = find_pick(lists, level, value)
    if pick is None or not pick.active:
        raise CategoryRejected(f"{value} is not an active value of the {level} picklist")


def taxonomy_from(lists: Picklists, facet_names: Iterable[str]) -> Taxonomy:
    """The active leaves of the tree, the chosen facets and the picklists' default values."""
    leaves: list[Category] = []
    for issue in (p for p in lists.get("issueType", ()) if p.active):
        top = LevelValue("issueType", issue.id, issue.label)
        children = [p for p in lists.get("subIssueType", ()) if p.active and p.parent == issue.id]
        for sub in children:
            path = (top, LevelValue("subIssueType", sub.id, sub.label))
            leaves.append(Category(key=f"{issue.id}/{sub.id}", path=path))
        if not children:
            leaves.append(Category(key=issue.id, path=(top,)))
    names = tuple(facet_names)
    facets = []
    for name in names:
        if name not in lists:
            raise PermanentError(f"Autotask lists no picklist for the ticket field {name!r}")
        options = tuple(LevelValue(name, p.id, p.label) for p in lists[name] if p.active)
        facets.append(Facet(name=name, label=FACET_LABELS[name], options=options))
    defaults = frozenset(
        (level, p.id) for level in (*LEVELS, *names) for p in lists.get(level, ()) if p.default
    )
    return Taxonomy(
        scope=SCOPE,
        scope_name=SCOPE_NAME,
        levels=LEVELS,
        leaves=tuple(leaves),
        defaults=defaults,
        facets=tuple(facets),
    )


def note_picks(lists: Picklists, config: AutotaskConfig, tenant: str) -> tuple[int, int]:
    """``(publish, noteType)`` of our notes from the ``TicketNotes`` picklists, by label.

    The publish value must be an active internal one (never the portal's); a note type that is
    not found falls back to the picklist's default.
    """
    wanted = config.note_publish.casefold()
    publish = next(
        (p for p in lists.get("publish", ()) if p.active and p.label.casefold() == wanted), None
    )
    if publish is None or publish.label.casefold() == PORTAL_VISIBLE:
        internal = [p.label for p in lists.get("publish", ()) if p.active]
        raise ConfigError(
            f"tenant {tenant!r}, key 'connection.note_publish': Autotask has no active "
            f"publish value {config.note_publish!r}; fix: use one of "
            f"{[label for label in internal if label.casefold() != PORTAL_VISIBLE]}"
        )
    types = [p for p in lists.get("noteType", ()) if p.active]
    note_type = next((p for p in types if p.label.casefold() == config.note_type.casefold()), None)
    if note_type is None:
        # [UNSURE] which note type a tenant has; the picklist's default is the safe fallback.
        note_type = next((p for p in types if p.default), types[0] if types else None)
        if note_type is None:
            raise PermanentError("Autotask lists no active note type for ticket notes")
        log.warning(
            "note type not found; using another", wanted=config.note_type, used=note_type.label
        )
    return int(publish.id), int(note_type.id)
