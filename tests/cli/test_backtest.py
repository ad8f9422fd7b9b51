"""``psatriage backtest`` through the HTTP fakes of all four PSAs and the OpenAI fake: the same
counts from each PSA's closed tickets, nothing written to any of them, a run interrupted with
Ctrl-C that the same command resumes, and bad input as one clear line."""

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
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.psa import adapters
from tests.cli.psa_history import PSAS, TENANT, HistoryTenant, history, tenant_of
from tests.fakes.openai import FakeOpenAI

DEADLINE = 180  # seconds: a busy machine may take long to start a Python process
runner = CliRunner()


def test_every_psa_is_registered_here() -> None:
    assert set(PSAS) == set(adapters())


def test_backtest_through_psa_with_history_counts_the_same_and_writes_nothing(
    psa_with_history: HistoryTenant, tmp_path: Path
) -> None:
    tickets = history(psa_with_history)
    notes = {
        ticket: psa_with_history.kit.notes(ticket) for ticket in tickets
    }  # the description, for some
    table = tmp_path / "reports" / "tickets.csv"  # the folder is made

    result = runner.invoke(
        app, ["backtest", "-t", TENANT, "--since", "30d", "--json", "--csv", str(table)]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["tickets"], report["answered"], report["failed"]) == (4, 4, 0)
    assert report["accuracy"]["full_path"] == 0.75
    assert report["policy"]["mode"] == "suggest"  # four tickets cannot prove 95% precision
    volume = report["cost"]["volume"]
    assert volume["tickets"] == 6  # every ticket created in the 30 days, open ones too
    assert volume["source"] == f"tickets created in {psa_with_history.kind}"
    assert report["cost"]["tokens_in"] > 0 and report["cost"]["tokens_per_month"] > 0
    assert report["run"]["psa"] == psa_with_history.kind and report["run"]["engine"] == "openai"
    assert len(psa_with_history.llm.calls) == 4
    for ticket in tickets:
        assert psa_with_history.kit.category_writes(ticket) == []
        assert psa_with_history.kit.notes(ticket) == notes[ticket]
    with table.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["ticket"] for row in rows) == sorted(tickets)
    assert [row["correct"] for row in rows].count("true") == 3

    ready = runner.invoke(app, ["readiness", "-t", TENANT, "--json"])

    assert ready.exit_code == 0, ready.output
    verdict = json.loads(ready.stdout)
    assert verdict["verdict"] == "ready to suggest"
    assert verdict["backtest"]["tickets"] == 4
    assert [c["ok"] for c in verdict["checks"][:2]] == [True, True]


def test_the_report_as_tables(cw_with_history: HistoryTenant) -> None:
    history(cw_with_history)
    result = runner.invoke(app, ["backtest", "-t", TENANT])
    assert result.exit_code == 0, result.output
    for heading in (
        "backtest of acme (connectwise)",
        "accuracy, first two levels",
        "thresholds",
        "recommended policy",
        "projected per month",
        "category hygiene",
        "merge candidates",
        "per category",
        'mode = "suggest"',
    ):
        assert heading in result.output


def test_ctrl_c_keeps_what_was_done_and_the_same_command_resumes(
    cw_with_history: HistoryTenant,
) -> None:
    jam, _ = PSAS["connectwise"][1:]
    for n in range(12):
        cw_with_history.close(f"Paper jam number {n}", jam, days=n + 1)
    # a slow model, so the interrupt lands mid-run even when a busy machine delays the test
    cw_with_history.llm.latency = 1.5
    command = [sys.executable, "-m", "psatriage", "backtest", "-t", TENANT, "--concurrency", "1"]
    process = subprocess.Popen(
        command,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_on_a_terminal,  # noqa: PLW1509 - a signal disposition, no threads
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while cw_with_history.results() < 3:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the backtest checkpointed nothing in time"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    done = cw_with_history.results()
    assert len(cw_with_history.llm.calls) == done  # the ticket in flight was kept as well
    cw_with_history.llm.latency = 0.0

    result = runner.invoke(app, ["backtest", "-t", TENANT, "--json"])

    assert result.exit_code == 0, result.output
    assert f"resumed: {done} tickets were done by an earlier run" in result.stderr
    assert json.loads(result.stdout)["answered"] == 12
    assert len(cw_with_history.llm.calls) == 12  # none asked twice


def test_another_engine_on_the_tenants_settings(cw_with_history: HistoryTenant) -> None:
    history(cw_with_history)
    result = runner.invoke(
        app, ["backtest", "-t", TENANT, "--since", "30d", "--engine", "local", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run"]["engine"] == "local" and report["engines"] == {"local": 4}
    assert report["cost"]["cost_usd"] == 0 and cw_with_history.llm.calls == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-t", "nobody"], "no tenant named 'nobody' (configured: acme)"),
        (["--since", "last month"], "is neither a period such as 90d or 12w nor an ISO date"),
        (["--since", "2999-01-01"], "is in the future"),
        (["--csv", "{root}"], "the CSV file {root} is a folder; fix: name a file"),
        (["--csv", "{root}/file.txt/out.csv"], "{root}/file.txt is not a folder this user can"),
        (["--since", "1d"], "has no closed, categorized tickets created since"),
    ],
)
def test_bad_input_is_one_clear_line(
    cw_with_history: HistoryTenant, tmp_path: Path, arguments: list[str], message: str
) -> None:
    history(cw_with_history)  # closed three days ago and earlier
    (tmp_path / "file.txt").write_text("not a folder", encoding="utf-8")
    given = [a.format(root=tmp_path) for a in arguments]
    tenant = [] if "-t" in given else ["-t", TENANT]
    result = runner.invoke(app, ["backtest", *tenant, *given])
    assert result.exit_code == 2, result.output
    assert message.format(root=tmp_path) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert cw_with_history.llm.calls == []


def test_a_local_tenant_has_no_llm_to_measure(
    llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tenant in tenant_of(
        "connectwise", llm, tmp_path, monkeypatch, classifier={"kind": "local"}
    ):
        result = runner.invoke(app, ["backtest", "-t", TENANT, "--engine", "openai"])
        assert result.exit_code == 2, result.output
        assert "uses classifier 'local'; --engine openai needs an openai or hybrid" in (
            result.output
        )
        assert tenant.results() == 0


def test_tickets_the_model_could_not_answer_in_time_are_tried_again(
    cw_with_history: HistoryTenant,
) -> None:
    history(cw_with_history)
    cw_with_history.llm.script(("status", 503))

    first = runner.invoke(app, ["backtest", "-t", TENANT, "--since", "30d", "--json"])

    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["failures"] == {"server unavailable": 1}
    assert "1 tickets failed for a passing reason; the same command tries them again" in (
        first.stderr
    )
    again = runner.invoke(app, ["backtest", "-t", TENANT, "--since", "30d", "--json"])
    assert again.exit_code == 0, again.output
    assert "resumed: 3 tickets were done by an earlier run" in again.stderr
    assert json.loads(again.stdout)["failed"] == 0
    assert len(cw_with_history.llm.calls) == 5


def _ctrl_c_as_on_a_terminal() -> None:
    """A command started in the background of a non-interactive shell (a CI job) inherits
    SIGINT ignored; a person's terminal delivers it: restore that before the command starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
