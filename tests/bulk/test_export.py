"""Export through the HTTP fakes of all four PSAs: closed, categorized tickets of the period as
JSON Lines that ``eval`` and ``train --data`` read, and an export into a file, interrupted after
some weeks, that the same call resumes without writing a ticket twice."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from psatriage.bulk.export import export
from psatriage.local_engine.data import read_examples
from psatriage.store.tables import utcnow
from tests.bulk.conftest import command_runtime
from tests.cli.psa_history import PSAS, TENANT, TEXTS, HistoryTenant, history


class _Interrupt:
    """A progress callback that presses Ctrl-C once ``after`` weeks are written."""

    def __init__(self, after: int) -> None:
        self.after = after

    def __call__(self, done: int, total: int, written: int) -> None:
        if done >= self.after:
            raise KeyboardInterrupt


def _spread(psa: HistoryTenant) -> list[str]:
    """``history``'s tickets (the last four days) and two older closed, categorized ones."""
    first = PSAS[psa.kind][1]
    text = TEXTS[psa.kind][0]
    older = [psa.close(text + " (older)", first, days=20), psa.close(text, first, days=12)]
    return older + history(psa)


def test_an_interrupted_export_resumes_and_reads_back(psa: HistoryTenant, tmp_path: Path) -> None:
    expected = _spread(psa)
    out = tmp_path / "exports" / "history.jsonl"
    since, until = utcnow() - timedelta(days=30), utcnow()
    built = command_runtime()
    try:
        with pytest.raises(KeyboardInterrupt):
            export(
                built, TENANT, since, until, out=out, stdout=io.StringIO(), progress=_Interrupt(3)
            )
        first = out.read_text(encoding="utf-8").splitlines()
        assert 0 < len(first) < len(expected)
        with out.open("a", encoding="utf-8") as handle:
            handle.write('{"id": "half a line')  # a crash mid-write: cut off on resume

        outcome = export(built, TENANT, since, until, out=out, stdout=io.StringIO())
    finally:
        built.close()
    assert outcome.resumed_windows == 3 and outcome.total == len(expected)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == expected  # oldest first, each once
    assert all(r["labels"]["category"] and r["labels"]["category_path"] for r in records)
    assert all(r["labels"]["priority"] for r in records)  # the value the ticket closed with
    assert records[0]["title"].endswith("(older)") and records[0]["description"]
    examples = read_examples(out)  # what eval --data and train --data read
    assert [e.id for e in examples] == expected
    assert {e.labels["category"] for e in examples} == {r["labels"]["category"] for r in records}


def test_export_to_standard_output_is_one_pass(psa: HistoryTenant) -> None:
    expected = history(psa)
    stdout = io.StringIO()
    built = command_runtime()
    try:
        outcome = export(
            built, TENANT, utcnow() - timedelta(days=3, hours=12), None, out=None, stdout=stdout
        )
    finally:
        built.close()
    ids = [json.loads(line)["id"] for line in stdout.getvalue().splitlines()]
    assert ids == expected[1:] and outcome.total == 3  # the first was closed 4 days ago
