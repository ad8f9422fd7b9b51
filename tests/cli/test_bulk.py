"""``psatriage backfill`` and ``psatriage export`` on the command line: the dry run's CSV, an
export that ``eval --data`` and ``train --data`` read back, a backfill stopped with Ctrl-C that
the same command resumes, and bad input as one clear line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.settings import Settings
from psatriage.store import db
from psatriage.store.tables import BulkItemRow
from tests.cli.psa_history import PSAS, TENANT, TEXTS, HistoryTenant, history

runner = CliRunner()
DEADLINE = 180  # seconds: a busy machine may take long to start a Python process


def test_a_dry_run_writes_the_csv_of_what_would_change(
    cw_with_history: HistoryTenant, tmp_path: Path
) -> None:
    first_text, second_text = TEXTS["connectwise"]
    tickets = [
        cw_with_history.close(first_text, None, days=2, closed=False),
        cw_with_history.close(second_text, None, days=1, closed=False),
    ]
    table = tmp_path / "reports" / "backfill.csv"
    result = runner.invoke(
        app, ["backfill", "-t", TENANT, "--since", "7d", "--dry-run", "--csv", str(table)]
    )
    assert result.exit_code == 0, result.output
    assert "acme: 2 tickets; applied 2 (dry run: nothing written)\n" in result.stdout
    with table.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["ticket"] for row in rows] == tickets
    assert {row["writes"] for row in rows} == {"category and note"}
    assert all(row["category"] and row["confidence"] for row in rows)
    assert all(cw_with_history.kit.category_writes(t) == [] for t in tickets)

    live = runner.invoke(app, ["backfill", "-t", TENANT, "--since", "7d", "--only-uncategorized"])
    assert live.exit_code == 0, live.output
    assert "acme: 2 tickets; applied 2\n" in live.stdout
    assert all(len(cw_with_history.kit.category_writes(t)) == 1 for t in tickets)


def test_the_export_reads_back_with_eval_and_train(
    cw_with_history: HistoryTenant, tmp_path: Path
) -> None:
    jam, vpn = PSAS["connectwise"][1:]
    first_text, second_text = TEXTS["connectwise"]
    for n in range(6):
        cw_with_history.close(f"{first_text} {n}", jam, days=n + 1)
        cw_with_history.close(f"{second_text} {n}", vpn, days=n + 1)
    out = tmp_path / "history.jsonl"
    result = runner.invoke(app, ["export", "-t", TENANT, "--since", "30d"])
    assert result.exit_code == 0, result.output
    out.write_text(result.stdout, encoding="utf-8")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 12
    assert "exported 12 closed tickets of acme" in result.stderr

    model = tmp_path / "model.npz"
    trained = runner.invoke(
        app, ["train", "--data", str(out), "--label", "category", "--out", str(model)]
    )
    assert trained.exit_code == 0, trained.output
    scored = runner.invoke(
        app,
        ["eval", str(out), "-l", "category", "--split", "all", "--model", str(model), "--json"],
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["examples"] == 12


@pytest.mark.parametrize(
    ("command", "arguments", "message"),
    [
        ("backfill", ["-t", "nobody"], "no tenant named 'nobody' (configured: acme)"),
        ("export", ["-t", "nobody"], "no tenant named 'nobody' (configured: acme)"),
        (
            "backfill",
            ["--since", "2026-09-10", "--until", "2026-09-01"],
            "--since 2026-09-10 00:00 is not before --until 2026-09-01 00:00; fix: give a",
        ),
        ("export", ["--until", "soon"], "--until 'soon' is not an ISO date such as 2026-09-30"),
        ("backfill", ["--csv", "{root}"], "the CSV file {root} is a folder; fix: name a file"),
        (
            "export",
            ["--out", "{root}/file.txt/out.jsonl"],
            "{root}/file.txt is not a folder this user can write",
        ),
        ("backfill", ["--since", "last week"], "is neither a period such as 90d or 12w nor"),
    ],
)
def test_bad_input_is_one_clear_line(
    cw_with_history: HistoryTenant,
    tmp_path: Path,
    command: str,
    arguments: list[str],
    message: str,
) -> None:
    history(cw_with_history)
    (tmp_path / "file.txt").write_text("not a folder", encoding="utf-8")
    given = [a.format(root=tmp_path) for a in arguments]
    tenant = [] if "-t" in given else ["-t", TENANT]
    since = [] if "--since" in given else ["--since", "30d"]
    result = runner.invoke(app, [command, *tenant, *since, *given])
    assert result.exit_code == 2, result.output
    assert message.format(root=tmp_path) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert cw_with_history.llm.calls == []


def _items_done(root: Path) -> int:
    """Backfill items finished so far (0 before the database is ready)."""
    if not (root / "data" / "psatriage.db").exists():
        return 0
    engine = db.make_engine(Settings(data_dir=root / "data").effective_database_url)
    try:
        if not inspect(engine).has_table("bulk_items"):
            return 0
        with engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(BulkItemRow)
                    .where(BulkItemRow.state != "pending")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_ctrl_c_keeps_what_was_done_and_the_same_command_resumes(
    cw_with_history: HistoryTenant,
) -> None:
    text = TEXTS["connectwise"][0]
    tickets = [cw_with_history.close(f"{text} {n}", None, days=1, closed=False) for n in range(12)]
    # a slow model, so the interrupt lands mid-run even when a busy machine delays the test
    cw_with_history.llm.latency = 1.5
    command = [sys.executable, "-m", "psatriage", "backfill", "-t", TENANT, "--since", "7d"]
    process = subprocess.Popen(
        command,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_on_a_terminal,  # noqa: PLW1509 - a signal disposition, no threads
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while _items_done(cw_with_history.root) < 2:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the backfill checkpointed nothing in time"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    done = _items_done(cw_with_history.root)
    cw_with_history.llm.latency = 0.0

    result = runner.invoke(app, ["backfill", "-t", TENANT, "--since", "7d"])

    assert result.exit_code == 0, result.output
    assert f"resumed: {done} tickets were done by an earlier run" in result.stderr
    assert all(len(cw_with_history.kit.category_writes(t)) == 1 for t in tickets)


def _ctrl_c_as_on_a_terminal() -> None:
    """A command started in the background of a non-interactive shell (a CI job) inherits
    SIGINT ignored; a person's terminal delivers it: restore that before the command starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
