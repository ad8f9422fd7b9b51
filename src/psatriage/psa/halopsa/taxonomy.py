"""HaloPSA's category tree as psatriage sees it: pure functions, no I/O.

A Halo ticket has four category fields; one of them (``category_N``/``categoryid_N``, N set by
the tenant, 1 by default) is the tree. Each ticket type allows some of that field's values
(``allowall_categoryN`` / ``allowed_categoryN``). A value's text may hold a hierarchy,
``Hardware>Printer`` [UNSURE: the format is not in a public sample]; each part becomes a level of
the path: ``category_1`` = "Hardware", ``category_1.2`` = "Printer". Only the last part is a Halo
record, so the other parts use their text (``Hardware``) as id, and a leaf's key is its record id
(``"17"``), or ``"<ticket type id>/<record id>"`` when the model also sets the ticket type, which
is then the first level (``tickettype_id``). The type is a tree level rather than a facet because
the categories a ticket may have depend on its type.

Scopes (``Ticket.scope``, the taxonomy cache key): the ticket type id (``"12"``), or ``"all"`` when
the model sets the type; with the priority facet, ``";sla=<id>"`` is added, since priorities are
per SLA.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psatriage.domain import Category, Facet, LevelValue, Taxonomy
from psatriage.errors import CategoryRejected, PermanentError
from psatriage.psa.base import TITLE_LEVEL
from psatriage.psa.halopsa.wire import as_int, is_false, is_true, positive

TYPE_LEVEL = "tickettype_id"
PRIORITY_FACET = "priorityid"
TEAM_LEVEL = "team_id"  # the routing field: the ticket's team
STATUS_LEVEL = "status_id"  # the ticket's status (a noise action may set it)
ALL_TYPES = "all"


@dataclass(frozen=True, slots=True)
class Scope:
    type_id: int | None  # None: every ticket type (the model sets the type)
    sla_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> Scope:
        head, _, tail = text.partition(";")
        sla = None
        if tail:
            name, _, value = tail.partition("=")
            sla = positive(value) if name == "sla" else None
            if sla is None:
                raise PermanentError(f"{text!r} is not a HaloPSA taxonomy scope")
        if head == ALL_TYPES:
            return cls(None, sla)
        type_id = positive(head)
        if type_id is None:
            raise PermanentError(f"{text!r} is not a HaloPSA taxonomy scope (a ticket type id)")
        return cls(type_id, sla)

    def __str__(self) -> str:
        head = ALL_TYPES if self.type_id is None else str(self.type_id)
        return head if self.sla_id is None else f"{head};sla={self.sla_id}"


@dataclass(frozen=True, slots=True)
class CategoryValue:
    """One active value of the category field (a ``CategoryDetail``)."""

    id: int
    value: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class TicketType:
    """A ticket type and the category values it allows in the tenant's category field.

    ``allowed`` is None when every value is allowed (``allowall_categoryN``) or when Halo did not
    say: the server-side ``tickettype_id`` filter then decides for one type; for the all-types
    tree, a type whose details name no rule is taken to allow every value [UNSURE].
    """

    id: int
    name: str
    allowed: frozenset[int] | None = None
    default_category: str = ""
    default_sla: int | None = None
    selectable: bool = True

    def allows(self, category_id: int) -> bool:
        return self.allowed is None or category_id in self.allowed

    @classmethod
    def from_record(cls, record: Mapping[str, Any], field_no: int) -> TicketType:
        allowed: frozenset[int] | None = None
        listed = record.get(f"allowed_category{field_no}")
        if not is_true(record.get(f"allowall_category{field_no}")) and isinstance(listed, list):
            allowed = frozenset(
                cid
                for entry in listed
                if isinstance(entry, Mapping) and (cid := positive(entry.get("category_id")))
            )
        hidden = (
            is_false(record.get("visible"))
            or is_false(record.get("agentscanselect"))
            or is_true(record.get("inactive"))
        )
        return cls(
            id=positive(record.get("id")) or 0,
            name=str(record.get("name") or ""),
            allowed=allowed,
            default_category=str(record.get(f"default_category_{field_no}") or ""),
            default_sla=positive(record.get("default_sla")),
            selectable=not hidden,
        )

    @staticmethod
    def rules_known(record: Mapping[str, Any], field_no: int) -> bool:
        """Whether a (list) record says which categories the type allows."""
        return f"allowall_category{field_no}" in record or f"allowed_category{field_no}" in record


def category_values(records: Iterable[Mapping[str, Any]]) -> dict[int, CategoryValue]:
    """Active values by id, in Halo's order; hidden or inactive ones left out.

    Halo's ``CategoryDetail`` has no active flag in its schema; ``inactive``, ``hidden`` and
    ``ishidden`` are honoured where an instance sends them [UNSURE].
    """
    values: dict[int, CategoryValue] = {}
    for record in records:
        cid = positive(record.get("id"))
        text = str(record.get("value") or record.get("category_name") or "").strip()
        if cid is None or not text or cid in values:
            continue
        if any(is_true(record.get(flag)) for flag in ("inactive", "hidden", "ishidden")):
            continue
        values[cid] = CategoryValue(cid, text, str(record.get("note") or "").strip())
    return values


def category_path(
    level: str, record_id: int | str, value: str, separator: str
) -> tuple[LevelValue, ...]:
    """The levels of one category value: ``Hardware>Printer`` → Hardware, Printer."""
    parts = [p.strip() for p in value.split(separator)] if separator else [value.strip()]
    parts = [p for p in parts if p] or [value.strip() or f"#{record_id}"]
    path: list[LevelValue] = []
    for depth, name in enumerate(parts, start=1):
        last = depth == len(parts)
        value_id = str(record_id) if last else separator.join(parts[:depth])
        path.append(LevelValue(sub_level(level, depth), value_id, name))
    return tuple(path)


def sub_level(level: str, depth: int) -> str:
    return level if depth == 1 else f"{level}.{depth}"


def is_category_level(name: str, level: str) -> bool:
    return name == level or name.startswith(level + ".")


def build_taxonomy(
    scope: Scope,
    scope_name: str,
    types: Sequence[TicketType],
    allowed: Mapping[int, Mapping[int, CategoryValue]],
    *,
    level: str,
    separator: str,
    facets: tuple[Facet, ...] = (),
) -> Taxonomy:
    """Leaves for one scope: each type's allowed values (with the type first when it is chosen)."""
    with_type = scope.type_id is None
    leaves: list[Category] = []
    defaults: set[tuple[str, str]] = set()
    depth = 1
    for ticket_type in types:
        values = allowed.get(ticket_type.id, {})
        head: tuple[LevelValue, ...] = ()
        prefix = ""
        if with_type:
            head = (LevelValue(TYPE_LEVEL, str(ticket_type.id), ticket_type.name),)
            prefix = f"{ticket_type.id}/"
            if not values:  # a type without categories is a choice by itself
                leaves.append(Category(key=str(ticket_type.id), path=head))
        default = _normal(ticket_type.default_category, separator)
        for value in values.values():
            path = head + category_path(level, value.id, value.value, separator)
            depth = max(depth, len(path) - len(head))
            leaves.append(Category(key=f"{prefix}{value.id}", path=path, description=value.note))
            if default and _normal(value.value, separator) == default:
                defaults.update((v.level, v.id) for v in path)
    levels = ((TYPE_LEVEL,) if with_type else ()) + tuple(
        sub_level(level, d) for d in range(1, depth + 1)
    )
    return Taxonomy(
        scope=str(scope),
        scope_name=scope_name,
        levels=levels,
        leaves=tuple(leaves),
        defaults=frozenset(defaults),
        facets=facets,
    )


def priority_facet(records: Iterable[Mapping[str, Any]], sla_id: int) -> Facet:
    """The visible priorities of one SLA (``priorityid`` is the usable id, ``id`` a GUID)."""
    options: dict[str, LevelValue] = {}
    for record in records:
        if positive(record.get("slaid")) not in (None, sla_id) or is_true(record.get("ishidden")):
            continue
        pid = as_int(record.get("priorityid"))
        if pid is None or str(pid) in options:
            continue
        options[str(pid)] = LevelValue(PRIORITY_FACET, str(pid), str(record.get("name") or pid))
    return Facet(name=PRIORITY_FACET, label="Priority", options=tuple(options.values()))


def current_levels(
    ticket: Mapping[str, Any],
    *,
    level: str,
    field_no: int,
    separator: str,
    with_type: bool,
    facets: Sequence[str],
) -> tuple[LevelValue, ...]:
    """The ticket's category as a path; empty while the category field is empty.

    Halo always fills the ticket type and the priority, so they only count beside a category.
    """
    category_id = positive(ticket.get(f"categoryid_{field_no}"))
    if category_id is None:
        return ()
    text = str(ticket.get(f"category_{field_no}") or "")
    path = category_path(level, category_id, text, separator)
    type_id = positive(ticket.get("tickettype_id"))
    if with_type and type_id is not None:
        name = str(ticket.get("tickettype_name") or "")
        path = (LevelValue(TYPE_LEVEL, str(type_id), name), *path)
    priority = as_int(ticket.get("priority_id"))
    if PRIORITY_FACET in facets and priority is not None and priority > 0:
        name = str(ticket.get("priority_name") or f"priority {priority}")
        path += (LevelValue(PRIORITY_FACET, str(priority), name),)
    return path


@dataclass(frozen=True, slots=True)
class Write:
    """The ticket fields a category sets."""

    type_id: int | None
    category_id: int | None
    priority_id: int | None
    team_id: int | None = None
    summary: str | None = None  # a new title
    status_id: int | None = None


def write_of(category: Category, level: str) -> Write:
    """Which fields ``category`` sets; ``CategoryRejected`` if a level is not one of ours."""
    type_id = category_id = priority_id = team_id = status_id = None
    summary = None
    for value in category.path:
        if value.level == TITLE_LEVEL:
            summary = value.id
        elif value.level == TYPE_LEVEL:
            type_id = _id(value, category)
        elif value.level == PRIORITY_FACET:
            priority_id = _id(value, category)
        elif value.level == TEAM_LEVEL:
            team_id = _id(value, category)
        elif value.level == STATUS_LEVEL:
            status_id = _id(value, category)
        elif not is_category_level(value.level, level):
            raise CategoryRejected(f"{category.key!r} has a level HaloPSA does not know: {value}")
    # Only the last part of a category value is a Halo record; the others are its text.
    last = next((v for v in reversed(category.path) if is_category_level(v.level, level)), None)
    if last is not None:
        category_id = _id(last, category)
    if (type_id, category_id, priority_id, team_id, summary, status_id) == (None,) * 6:
        raise CategoryRejected(f"{category.key!r} names neither a category nor a ticket type")
    return Write(type_id, category_id, priority_id, team_id, summary, status_id)


def _id(value: LevelValue, category: Category) -> int:
    number = positive(value.id)
    if number is None:
        raise CategoryRejected(f"{category.key!r}: {value.level} {value.id!r} is not a HaloPSA id")
    return number


def _normal(text: str, separator: str) -> str:
    parts = text.split(separator) if separator else [text]
    return "\x1f".join(p.strip().casefold() for p in parts if p.strip())
