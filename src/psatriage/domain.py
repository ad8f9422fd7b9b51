"""The nouns of psatriage: typed, immutable, free of I/O.

A PSA adapter turns its vendor's shapes into these; the pipeline, the policy and the classifiers
only ever see these.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

PATH_SEPARATOR = " › "


@dataclass(frozen=True, slots=True)
class LevelValue:
    """One level of a category path as the PSA knows it, e.g. ``("type", "275", "Hardware")``."""

    level: str
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """A webhook (or poll) delivery, reduced to what the ledger needs.

    ``actionable`` is true only for "ticket created" events; the others are recorded and ignored.
    ``dedupe_key`` is unique per delivery of the same PSA event (e.g. ConnectWise ``MessageId``).
    ``snapshot`` is the ticket as the delivery carried it, in the adapter's own reduced shape,
    when the PSA sends the whole record (ConnectWise's ``Entity``); kept with the event so the
    worker need not read the ticket again (``PSAAdapter.ticket_from_snapshot``).
    """

    tenant: str
    ticket_id: str
    action: str
    actionable: bool
    dedupe_key: str
    occurred_at: datetime | None = None
    actor: str | None = None
    scope: str | None = None  # the category tree the ticket is on now, where the event says
    snapshot: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket as read back from the PSA.

    ``scope`` is the part of the PSA that owns the category tree for this ticket (a ConnectWise
    board id, an Autotask database, a Halo ticket type...); taxonomies are cached per scope.
    ``current`` is the category the ticket has now, level by level (empty when unset).
    """

    id: str
    title: str
    description: str
    scope: str
    scope_name: str = ""
    initial_note: str = ""
    company_id: str | None = None
    company_name: str | None = None
    current: tuple[LevelValue, ...] = ()
    url: str | None = None

    @property
    def current_label(self) -> str:
        return PATH_SEPARATOR.join(v.name for v in self.current)


@dataclass(frozen=True, slots=True)
class Category:
    """A valid leaf of a taxonomy: a combination the PSA accepts.

    ``key`` is stable across reads (built from PSA ids), so decisions and locks can refer to it.
    """

    key: str
    path: tuple[LevelValue, ...]
    description: str = ""
    active: bool = True

    @property
    def label(self) -> str:
        return PATH_SEPARATOR.join(v.name for v in self.path)

    def ids(self) -> dict[str, str]:
        return {v.level: v.id for v in self.path}

    def with_facets(self, values: tuple[LevelValue, ...]) -> Category:
        """This leaf plus chosen facet values (queue, priority...), as one writable category."""
        if not values:
            return self
        suffix = "".join(f"+{v.level}={v.id}" for v in values)
        return Category(self.key + suffix, self.path + values, self.description, self.active)


@dataclass(frozen=True, slots=True)
class Facet:
    """A field the model sets beside the category tree (an Autotask queue, a Halo priority...).

    ``name`` is the PSA's field, ``label`` what the model is told, ``options`` the active values
    (each a ``LevelValue`` whose ``level`` is ``name``). Tenants choose which facets are used.
    """

    name: str
    label: str
    options: tuple[LevelValue, ...]

    def get(self, option_id: str) -> LevelValue | None:
        return next((o for o in self.options if o.id == option_id), None)


FieldKind = Literal["choice", "flag", "text"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field the model answers beside the category in the same call (``psatriage.fields``).

    ``name`` is the answer's JSON key; a ``choice`` field answers one of ``options`` by id (an
    ``enum`` in the schema), a ``flag`` true or false, a ``text`` field a short sentence.
    ``guide`` tells the model in one line what to answer.
    """

    name: str
    label: str
    kind: FieldKind
    guide: str
    options: tuple[LevelValue, ...] = ()

    def get(self, option_id: str) -> LevelValue | None:
        return next((o for o in self.options if o.id == option_id), None)


@dataclass(frozen=True, slots=True)
class FieldAnswer:
    """The model's answer for one field: the option id (``"true"``/``"false"`` for a flag, the
    text of a text field) and, for a choice read with log-probs, how likely that value was."""

    value: str
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Chosen:
    """What is to be written: a leaf of the tree, the chosen facet values, and the tree's levels.

    ``levels`` are the tree levels of the taxonomy, so a level the leaf does not use (an item
    under a subtype-only leaf) is known to be cleared.
    """

    category: Category
    facets: tuple[tuple[str, LevelValue], ...] = ()  # (facet label, chosen value)
    levels: tuple[str, ...] = ()

    @property
    def target(self) -> Category:
        """The category to write: the leaf's path followed by the facet values."""
        return self.category.with_facets(tuple(value for _, value in self.facets))

    def is_on(self, ticket: Ticket) -> bool:
        """Whether the ticket already has exactly this (so there is nothing to write)."""
        current = {v.level: v.id for v in ticket.current}
        wanted = self.target.ids()
        unused = [level for level in self.levels if level not in wanted]
        return all(current.get(k) == v for k, v in wanted.items()) and not any(
            level in current for level in unused
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.category.key,
            "path": [[v.level, v.id, v.name] for v in self.category.path],
            "description": self.category.description,
            "facets": [[label, v.level, v.id, v.name] for label, v in self.facets],
            "levels": list(self.levels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chosen:
        return cls(
            category=Category(
                key=str(data["key"]),
                path=tuple(LevelValue(*v) for v in data["path"]),
                description=str(data.get("description", "")),
            ),
            facets=tuple((f[0], LevelValue(f[1], f[2], f[3])) for f in data.get("facets", ())),
            levels=tuple(data.get("levels", ())),
        )


@dataclass(frozen=True, slots=True)
class LabeledTicket:
    """A closed ticket with the category (and ticket fields) people left on it: training data for
    the local engine, and the answers of a backtest.

    ``path`` is its category level by level; ``key`` is the taxonomy's key of that leaf.
    """

    ticket: Ticket
    path: tuple[LevelValue, ...]
    leaf_key: str = ""  # the adapter's leaf key, where it is not the path's ids joined by "/"
    fields: Mapping[str, LevelValue] = field(default_factory=dict)
    """The ticket fields people left on it (``priority``, ``routing``) where the PSA gives them,
    as ``PSAAdapter.field_values`` names their values (``level`` the PSA field, ``id`` its id)."""

    @property
    def key(self) -> str:
        return self.leaf_key or "/".join(v.id for v in self.path)

    @property
    def label(self) -> str:
        return PATH_SEPARATOR.join(v.name for v in self.path)


@dataclass(frozen=True, slots=True)
class TicketState:
    """What the outcome sweep reads of a ticket it decided (``PSAAdapter.read_ticket_states``).

    ``current`` and ``scope`` as on ``Ticket``; ``closed`` where the PSA says the ticket is
    closed, completed or resolved. ``changed_by`` is who last changed the ticket as the PSA names
    them (a member, resource or agent id), ``changed_by_us`` whether the PSA says that was our own
    API user (None: it does not say), ``changed_at`` when, where the PSA gives it.
    """

    ticket_id: str
    scope: str
    current: tuple[LevelValue, ...]
    closed: bool
    changed_by: str | None = None
    changed_by_us: bool | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClosedTicket:
    """A ticket closed in a reporting period (``PSAAdapter.list_closed_tickets``): what it was
    about, for whom, when it was opened and closed (naive UTC) and the category people left on it
    (``path``, empty when it has none)."""

    ticket_id: str
    title: str
    company_id: str | None
    company_name: str | None
    created_at: datetime
    closed_at: datetime
    path: tuple[LevelValue, ...] = ()
    leaf_key: str = ""  # the adapter's leaf key, where it is not the path's ids joined by "/"

    @property
    def key(self) -> str:
        return self.leaf_key or "/".join(v.id for v in self.path)

    @property
    def label(self) -> str:
        return PATH_SEPARATOR.join(v.name for v in self.path)


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A ticket found by polling (``PSAAdapter.list_new_tickets``)."""

    ticket_id: str
    created_at: datetime


@dataclass(frozen=True)
class Taxonomy:
    """The valid leaves of one scope, with the PSA's own default (placeholder) values.

    ``defaults`` holds ``(level, id)`` pairs that the PSA fills in by itself on new tickets; the
    ``overwrite = "defaults"`` policy treats a ticket whose category is made of them as empty.
    """

    scope: str
    scope_name: str
    levels: tuple[str, ...]
    leaves: tuple[Category, ...]
    defaults: frozenset[tuple[str, str]] = frozenset()
    facets: tuple[Facet, ...] = ()
    _by_key: Mapping[str, Category] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key: dict[str, Category] = {}
        for leaf in self.leaves:
            if leaf.key in by_key:
                raise ValueError(f"taxonomy {self.scope!r} has the key {leaf.key!r} twice")
            by_key[leaf.key] = leaf
        object.__setattr__(self, "_by_key", by_key)

    def get(self, key: str) -> Category | None:
        return self._by_key.get(key)

    def tree_values(self, ticket: Ticket) -> tuple[LevelValue, ...]:
        """The ticket's current values on this tree's levels (not its facets)."""
        return tuple(v for v in ticket.current if v.level in self.levels)

    def active(self) -> tuple[Category, ...]:
        return tuple(leaf for leaf in self.leaves if leaf.active)

    def find_by_ids(self, values: Iterable[LevelValue]) -> Category | None:
        """The leaf whose path has exactly these level ids, if any."""
        wanted = tuple((v.level, v.id) for v in values)
        for leaf in self.leaves:
            if tuple((v.level, v.id) for v in leaf.path) == wanted:
                return leaf
        return None

    @property
    def fingerprint(self) -> str:
        """A short hash of what the model is shown; changes when any leaf changes."""
        text = json.dumps(
            [
                [[leaf.key, leaf.label, leaf.description, leaf.active] for leaf in self.leaves],
                [[f.name, f.label, [[o.id, o.name] for o in f.options]] for f in self.facets],
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "scope_name": self.scope_name,
            "levels": list(self.levels),
            "defaults": sorted([list(d) for d in self.defaults]),
            "leaves": [
                {
                    "key": leaf.key,
                    "path": [[v.level, v.id, v.name] for v in leaf.path],
                    "description": leaf.description,
                    "active": leaf.active,
                }
                for leaf in self.leaves
            ],
            "facets": [
                {"name": f.name, "label": f.label, "options": [_option(f, o) for o in f.options]}
                for f in self.facets
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Taxonomy:
        return cls(
            scope=data["scope"],
            scope_name=data["scope_name"],
            levels=tuple(data["levels"]),
            defaults=frozenset((d[0], d[1]) for d in data["defaults"]),
            leaves=tuple(
                Category(
                    key=leaf["key"],
                    path=tuple(LevelValue(*v) for v in leaf["path"]),
                    description=leaf["description"],
                    active=leaf["active"],
                )
                for leaf in data["leaves"]
            ),
            facets=tuple(
                Facet(
                    name=f["name"],
                    label=f["label"],
                    options=tuple(
                        LevelValue(o[2] if len(o) > 2 else f["name"], o[0], o[1])
                        for o in f["options"]
                    ),
                )
                for f in data.get("facets", ())
            ),
        )


def _option(facet: Facet, option: LevelValue) -> list[str]:
    """An option as stored: ``[id, name]``, with its level where it is not the facet's name (the
    PSA field of a ticket field's value, ``psatriage.fields``)."""
    if option.level == facet.name:
        return [option.id, option.name]
    return [option.id, option.name, option.level]


APPLIED: Final = "applied"  # a field's bands (FieldDecision.outcome)
SUGGESTED: Final = "suggested"
RECORDED: Final = "recorded"


@dataclass(frozen=True, slots=True)
class FieldDecision:
    """One field's decision: ``value`` as the note shows it, ``value_id`` as answered (the
    noise kind, the PSA's id...), its band's ``outcome`` and, for a stored field, the PSA value
    to ``write``."""

    name: str
    label: str
    value: str
    value_id: str
    outcome: str
    confidence: float | None = None
    write: LevelValue | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "value": self.value,
            "value_id": self.value_id,
            "outcome": self.outcome,
            "confidence": self.confidence,
            "write": [self.write.level, self.write.id, self.write.name] if self.write else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldDecision:
        write = data.get("write")
        return cls(
            name=str(data["name"]),
            label=str(data["label"]),
            value=str(data["value"]),
            value_id=str(data.get("value_id", "")),
            outcome=str(data["outcome"]),
            confidence=data.get("confidence"),
            write=LevelValue(*write) if write else None,
        )

    def for_note(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "value": self.value,
            "outcome": self.outcome,
            "confidence": self.confidence,
            "stored": self.write is not None,
        }


ConfidenceSource = Literal["logprobs", "self_reported", "model"]


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One call to a model, as logged: the audit trail of every prompt sent."""

    tenant: str
    ticket_id: str
    event_id: int | None
    engine: str
    model: str
    template_hash: str
    taxonomy_hash: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    cost_usd: float
    chosen_key: str | None
    confidence: float | None
    error: str | None
    redactions: Mapping[str, int] = field(default_factory=dict)  # kinds masked, never values


CallRecorder = Callable[[ModelCall], None]


@dataclass(frozen=True, slots=True)
class Classification:
    """What a classifier chose. ``key`` is always one of the request's candidates."""

    key: str
    confidence: float
    confidence_source: ConfidenceSource
    reasoning: str
    engine: str
    model: str
    usage: Usage = Usage()
    latency_ms: float = 0.0
    facets: Mapping[str, str] = field(default_factory=dict)  # facet name -> chosen option id
    fields: Mapping[str, FieldAnswer] = field(default_factory=dict)  # valid field answers only
    alternatives: tuple[tuple[str, float], ...] = ()  # the next best (key, confidence), if known


class Outcome(enum.StrEnum):
    """How an accepted ticket event ended."""

    APPLIED = "applied"  # category written (and a note)
    SUGGESTED = "suggested"  # note only: mode suggest, or confidence below the write threshold
    SHADOWED = "shadowed"  # recorded only: mode shadow
    RECORDED = "recorded"  # recorded only: confidence below suggest_at
    KEPT = "kept"  # a person already set the category and policy keeps it
    SKIPPED = "skipped"  # noise (an auto-reply...) the tenant has left alone, without a model call


@dataclass(frozen=True, slots=True)
class Decision:
    """How the pipeline ended one ticket event: its outcome (``None``: another event already
    decided this ticket), why, the decision row, what was chosen and what was written."""

    outcome: Outcome | None
    reason: str
    decision_id: int | None = None
    chosen: Chosen | None = None
    classification: Classification | None = None
    wrote: tuple[str, ...] = ()
    fields: tuple[FieldDecision, ...] = ()
