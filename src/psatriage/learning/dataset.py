"""A tenant's training set: closed-ticket history and labeled examples, one label per ticket.

History is what people left on closed tickets; examples are what people said about our
decisions (a correction, a fill, an accepted or corrected review). For the same ticket the
example wins over history, and of several examples the newest one; tickets are keyed by their
PSA id, so a ticket read from history that was also corrected counts once, with the correction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from psatriage.domain import Category, LabeledTicket, LevelValue
from psatriage.local_engine.data import ticket_text
from psatriage.store.examples import Example

PATH_SPLIT = " › "


@dataclass(frozen=True, slots=True)
class Labeled:
    """One ticket of a training set: its text and the category key people gave it."""

    ticket_id: str
    text: str
    key: str
    label: str = ""  # the category's path of names (" › " between levels), where known
    company: str | None = None
    at: datetime | None = None
    source: str = "history"  # or the example's source
    fields: Mapping[str, str] = field(default_factory=dict)  # ticket field -> value id (history)


def from_history(history: Iterable[LabeledTicket]) -> list[Labeled]:
    return [
        Labeled(
            ticket_id=t.ticket.id,
            text=ticket_text(t.ticket.title, t.ticket.description),
            key=t.key,
            label=t.label,
            company=t.ticket.company_id,
            fields={name: value.id for name, value in t.fields.items()},
        )
        for t in history
    ]


def from_examples(examples: Iterable[Example]) -> list[Labeled]:
    """One per ticket: the newest example of each (oldest ticket first)."""
    newest: dict[str, Example] = {}
    for example in examples:
        held = newest.get(example.ticket_id)
        if held is None or (example.updated_at, example.id) >= (held.updated_at, held.id):
            newest[example.ticket_id] = example
    ordered = sorted(newest.values(), key=lambda e: (e.updated_at, e.id))
    return [
        Labeled(
            ticket_id=e.ticket_id,
            text=e.text,
            key=e.category_key,
            label=e.category_path,
            company=e.company,
            at=e.updated_at,
            source=e.source,
        )
        for e in ordered
    ]


@dataclass(frozen=True)
class TrainingSet:
    items: list[Labeled]
    history: int  # tickets from history kept (not overridden by an example)
    examples: int  # tickets labeled by an example
    overridden: int  # history tickets whose label an example replaced

    def describe(self) -> dict[str, int]:
        return {
            "history_tickets": self.history,
            "example_tickets": self.examples,
            "history_overridden": self.overridden,
        }


def training_set(history: Sequence[Labeled], examples: Sequence[Labeled]) -> TrainingSet:
    """History and examples together; an example replaces the history of the same ticket."""
    labeled = {e.ticket_id for e in examples}
    kept = [h for h in history if h.ticket_id not in labeled]
    overridden = len({h.ticket_id for h in history} & labeled)
    return TrainingSet([*kept, *examples], len(kept), len(examples), overridden)


def categories(items: Iterable[Labeled]) -> tuple[Category, ...]:
    """The categories a training set names (to rank against when no taxonomy is at hand)."""
    found: dict[str, Category] = {}
    for item in items:
        if item.key in found:
            continue
        names = [n for n in item.label.split(PATH_SPLIT) if n] if item.label else [item.key]
        ids = item.key.split("/")
        path = tuple(
            LevelValue(f"level{i + 1}", ids[i] if len(ids) == len(names) else name, name)
            for i, name in enumerate(names)
        )
        found[item.key] = Category(item.key, path)
    return tuple(found.values())
