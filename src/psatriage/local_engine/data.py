"""Labeled ticket files and taxonomy files, read with errors that name the file and the problem.

A data file is JSON Lines, one ticket a line::

    {"id": "1", "title": "...", "description": "...", "labels": {"category": "Hardware/Printer"}}

The eval split is the same everywhere (so numbers compare): a record is in it when the SHA-1 of
its whitespace-normalized, lower-cased ``title + "\\n" + description`` is 0 modulo 5; the rest is
the train split. Hashing the text keeps exact duplicates on the same side.

A taxonomy file is TOML, one ``[[category]]`` per leaf::

    levels = ["type", "subtype", "item"]        # optional names of the levels

    [[category]]
    path = "Hardware > Printer > Paper jam"     # the names, levels joined by ">" (or a list)
    key = "hw-printer-jam"                      # optional; the path is the key by default
    description = "Paper stuck or feeding badly"

For ``psatriage eval`` the taxonomy is the distinct label values of the data (each split into
levels on ``>`` or ``/``); a taxonomy file may then name or describe them, matched by key.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from psatriage.domain import Category, LevelValue, Taxonomy
from psatriage.local_engine import DataError

Split = Literal["train", "eval", "all"]
_LEVEL_SPLIT = re.compile(r"\s*[>›]\s*")


@dataclass(frozen=True, slots=True)
class Example:
    """One labeled ticket of a data file."""

    id: str
    title: str
    description: str
    labels: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return ticket_text(self.title, self.description)

    @property
    def in_eval_split(self) -> bool:
        normalized = " ".join((self.title + "\n" + self.description).lower().split())
        return int(hashlib.sha1(normalized.encode()).hexdigest(), 16) % 5 == 0  # noqa: S324 - a split rule, not security


def ticket_text(title: str, description: str, note: str = "") -> str:
    """What the local engine reads of a ticket: the title on the first line (empty when there is
    none), then the description and the initial note (when it says something else)."""
    body = [description.strip()]
    if note.strip() and note.strip() != description.strip():
        body.append(note.strip())
    return title.strip().replace("\n", " ") + "\n" + "\n".join(p for p in body if p)


def read_examples(path: Path) -> list[Example]:
    """Every record of a JSONL file. Raises ``DataError`` naming the file (and line) at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read data file {path}: {exc}") from None
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(f"{path}, line {number}: not valid JSON ({exc})")
            continue
        try:
            examples.append(_example(record, path, number))
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError(_all_of(problems))
    if not examples:
        raise DataError(f"data file {path} holds no tickets")
    return examples


_SHOWN_PROBLEMS = 50  # a file broken on every line says so without printing every line


def _all_of(problems: Sequence[str]) -> str:
    """Every problem of a file, one a line (the first ``_SHOWN_PROBLEMS`` and a count)."""
    shown = list(problems[:_SHOWN_PROBLEMS])
    if len(problems) > _SHOWN_PROBLEMS:
        shown.append(f"… and {len(problems) - _SHOWN_PROBLEMS} more")
    return "\n".join(shown)


def _example(record: Any, path: Path, number: int) -> Example:
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {number}: each line must be a JSON object")
    title, description = record.get("title", ""), record.get("description", "")
    if not isinstance(title, str) or not isinstance(description, str):
        raise DataError(f"{path}, line {number}: 'title' and 'description' must be strings")
    if not title.strip() and not description.strip():
        raise DataError(f"{path}, line {number}: the ticket has neither title nor description")
    labels = record.get("labels", {})
    if not isinstance(labels, dict):
        raise DataError(f"{path}, line {number}: 'labels' must be an object of level: value")
    return Example(
        id=str(record.get("id", number)),
        title=title,
        description=description,
        labels={str(k): None if v is None else str(v) for k, v in labels.items()},
    )


def select(examples: Sequence[Example], split: Split) -> list[Example]:
    if split == "all":
        return list(examples)
    wanted = split == "eval"
    return [e for e in examples if e.in_eval_split == wanted]


def labeled(examples: Iterable[Example], level: str, path: Path) -> list[tuple[Example, str]]:
    """The examples that carry a value for ``level``, with it. Raises for an unknown level."""
    examples = list(examples)
    known = sorted({name for e in examples for name in e.labels})
    if level not in known:
        raise DataError(
            f"{path}: no ticket has the label level {level!r}; levels in the file: "
            f"{', '.join(known) or 'none'}"
        )
    pairs = [(e, value) for e in examples if (value := e.labels.get(level))]
    if not pairs:
        raise DataError(f"{path}: no ticket in this split has a value for {level!r}")
    return pairs


def split_path(value: str) -> tuple[str, ...]:
    """A label value's levels: split on '>' (or '›'), else on '/'."""
    parts = _LEVEL_SPLIT.split(value) if re.search(r"[>›]", value) else value.split("/")
    cleaned = tuple(p.strip() for p in parts if p.strip())
    return cleaned or (value,)


def taxonomy_from_labels(
    values: Iterable[str], level: str, named: Taxonomy | None = None
) -> Taxonomy:
    """The distinct label values as leaves (key = the value); names and descriptions come from
    ``named`` where one of its leaves has that key."""
    leaves = []
    depth = 0
    for value in sorted(set(values)):
        known = named.get(value) if named is not None else None
        if known is not None:
            leaves.append(Category(value, known.path, known.description))
            depth = max(depth, len(known.path))
            continue
        parts = split_path(value)
        depth = max(depth, len(parts))
        path = tuple(
            LevelValue(_level_name(level, i), "/".join(parts[: i + 1]), name)
            for i, name in enumerate(parts)
        )
        leaves.append(Category(value, path))
    levels = named.levels if named is not None and named.levels else _levels(level, depth)
    return Taxonomy(scope=level, scope_name=level, levels=levels, leaves=tuple(leaves))


def _level_name(level: str, index: int) -> str:
    return level if index == 0 else f"{level}.{index + 1}"


def _levels(level: str, depth: int) -> tuple[str, ...]:
    return tuple(_level_name(level, i) for i in range(depth))


def read_taxonomy(path: Path) -> Taxonomy:
    """A taxonomy TOML file (see the module docstring)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"taxonomy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read taxonomy file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"taxonomy file {path}: not valid TOML: {exc}") from None
    entries = raw.get("category")
    if not isinstance(entries, list) or not entries:
        raise DataError(
            f"taxonomy file {path} lists no categories; fix: add [[category]] tables with a path"
        )
    levels = raw.get("levels", [])
    if not isinstance(levels, list) or not all(isinstance(x, str) for x in levels):
        raise DataError(f"taxonomy file {path}: 'levels' must be a list of names")
    leaves: list[Category] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        try:
            category = _category(entry, levels, path, number)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if category.key in seen:
            problems.append(
                f"taxonomy file {path}: the key {category.key!r} is used by categories "
                f"{seen[category.key]} and {number}; fix: give each category its own key"
            )
            continue
        seen[category.key] = number
        leaves.append(category)
    if problems:
        raise DataError(_all_of(problems))
    depth = max(len(leaf.path) for leaf in leaves)
    names = tuple(levels) if len(levels) >= depth else _levels("level", depth)
    return Taxonomy(scope=path.stem, scope_name=path.stem, levels=names, leaves=tuple(leaves))


def _category(entry: Any, levels: Sequence[str], path: Path, number: int) -> Category:
    where = f"taxonomy file {path}, category {number}"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: must be a table with a path")
    unknown = set(entry) - {"path", "key", "description"}
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    raw_path = entry.get("path")
    if isinstance(raw_path, str):
        names = tuple(p for p in _LEVEL_SPLIT.split(raw_path.strip()) if p)
    elif isinstance(raw_path, list) and all(isinstance(p, str) for p in raw_path):
        names = tuple(p.strip() for p in raw_path if p.strip())
    else:
        raise DataError(f"{where}: 'path' must be a string such as \"Hardware > Printer\"")
    if not names:
        raise DataError(f"{where}: 'path' is empty")
    key = entry.get("key", " > ".join(names))
    description = entry.get("description", "")
    if not isinstance(key, str) or not key or not isinstance(description, str):
        raise DataError(f"{where}: 'key' and 'description' must be strings")
    level_names = [
        levels[i] if i < len(levels) else _level_name("level", i) for i in range(len(names))
    ]
    values = tuple(
        LevelValue(level_names[i], " > ".join(names[: i + 1]), name) for i, name in enumerate(names)
    )
    return Category(key=key, path=values, description=description)
