"""``psatriage export``: a tenant's closed, categorized tickets as JSON Lines, the form
``psatriage eval --data`` and ``psatriage train --data`` read::

    {"id": "1042", "title": "...", "description": "...",
     "labels": {"category": "10/20/30", "category_path": "Hardware › Printer › Paper jam"},
     "company": "Acme", "scope": "Service Desk"}

``category`` is the tenant's category key (what a model trained for the tenant predicts),
``category_path`` the names level by level; ``priority`` and ``routing`` the names of the values
the ticket closed with, where the PSA gives them (``psatriage eval --label priority``). The
period is read in windows, oldest first (``PSAAdapter.list_labeled_tickets`` with ``until``);
into a file (``out``), each window written is a checkpoint in the database holding the file's
length, so an interrupted export resumes after the last whole window, cutting off anything
written after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from psatriage.bulk import run_key
from psatriage.bulk.backfill import bulk_adapter
from psatriage.domain import LabeledTicket
from psatriage.errors import ConfigError
from psatriage.psa.base import PSAAdapter
from psatriage.runtime import Runtime
from psatriage.store.bulk import BulkRuns
from psatriage.store.tables import utcnow

KIND = "export"
WINDOW_DAYS = 7
MAX_PER_WINDOW = 1_000_000  # no real cap: a window's tickets are all exported

Progress = Callable[[int, int, int], None]  # (windows done, windows, tickets written)


@dataclass
class Outcome:
    written: int  # tickets written by this call
    total: int  # tickets in the export, this call's and earlier calls'
    resumed_windows: int  # windows done by an earlier call


def windows(since: datetime, until: datetime, days: int = WINDOW_DAYS) -> Iterator[datetime]:
    """The start of each window of ``days`` from ``since`` up to ``until``."""
    start = since
    while start < until:
        yield start
        start += timedelta(days=days)


def record(labeled: LabeledTicket) -> dict[str, Any]:
    """One line of the export."""
    ticket = labeled.ticket
    return {
        "id": ticket.id,
        "title": ticket.title,
        "description": ticket.description or ticket.initial_note,
        "labels": {
            "category": labeled.key,
            "category_path": labeled.label,
            **{name: value.name for name, value in labeled.fields.items()},
        },
        "company": ticket.company_name or ticket.company_id or "",
        "scope": ticket.scope_name or ticket.scope,
    }


def export(
    runtime: Runtime,
    name: str,
    since: datetime,
    until: datetime | None,
    *,
    out: Path | None,
    stdout: IO[str],
    progress: Progress = lambda done, total, written: None,
) -> Outcome:
    """Write the export of tenant ``name`` to ``out`` (resumable) or to ``stdout`` (one pass)."""
    adapter = bulk_adapter(runtime, name)  # the same share of the call limit as a backfill
    if not adapter.can_list_history():
        raise ConfigError(f"tenant {name!r}: the {adapter.kind} adapter cannot read history")
    end = until or utcnow()
    starts = list(windows(since, end))
    if out is None:
        return _one_pass(adapter, starts, end, stdout, progress)
    runs = BulkRuns(runtime.sessions)
    params = {"since": since.isoformat(), "until": end.isoformat(), "out": str(out.resolve())}
    key = run_key(name, KIND, params)
    run = runs.unfinished(name, KIND, key)
    if run is None:
        run = runs.start(name, KIND, key, params)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("", encoding="utf-8")
    if not run.listed:
        runs.add_items(run.id, [start.isoformat() for start in starts])
    finished = runs.results(run.id)
    length = max((int(r.get("bytes", 0)) for _, _, r in finished), default=0)
    total = sum(int(r.get("tickets", 0)) for _, _, r in finished)
    todo = runs.open_items(run.id)
    done, written = len(starts) - len(todo), 0
    progress(done, len(starts), total)
    with out.open("r+", encoding="utf-8") as handle:
        handle.truncate(length)  # anything after the last whole window is written again
        handle.seek(length)
        for item in todo:
            start = datetime.fromisoformat(item)
            count = _window(adapter, start, end, handle)
            handle.flush()
            os.fsync(handle.fileno())
            written, total, done = written + count, total + count, done + 1
            runs.done(run.id, item, "done", {"tickets": count, "bytes": handle.tell()})
            progress(done, len(starts), total)
    runs.finish(run.id)
    return Outcome(written, total, len(starts) - len(todo))


def _one_pass(
    adapter: PSAAdapter[Any],
    starts: list[datetime],
    end: datetime,
    stdout: IO[str],
    progress: Progress,
) -> Outcome:
    written = 0
    progress(0, len(starts), 0)
    for done, start in enumerate(starts, start=1):
        written += _window(adapter, start, end, stdout)
        stdout.flush()
        progress(done, len(starts), written)
    return Outcome(written, written, 0)


def _window(adapter: PSAAdapter[Any], start: datetime, end: datetime, handle: IO[str]) -> int:
    """Write one window's tickets, oldest first; return how many."""
    stop = min(start + timedelta(days=WINDOW_DAYS), end)
    found = adapter.list_labeled_tickets(start, MAX_PER_WINDOW, until=stop)
    for labeled in reversed(found):  # the adapter gives them newest first
        handle.write(json.dumps(record(labeled), ensure_ascii=False) + "\n")
    return len(found)
