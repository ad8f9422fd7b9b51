"""``psatriage report accuracy``: the accuracy tables, the CSV, and bad input as one line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.store import db
from psatriage.store.tables import utcnow
from tests.harness import TENANT, Harness
from tests.test_accuracy import add_outcome

runner = CliRunner()


@pytest.fixture
def base(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    data = harness.root / "data"
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(data))
    path = harness.write_config()
    engine = db.make_engine(f"sqlite:///{data / 'psatriage.db'}")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    add_outcome(sessions, state="agreed", matches=True, tenant=TENANT, when=utcnow())
    add_outcome(sessions, state="corrected", matches=False, tenant=TENANT, when=utcnow())
    add_outcome(sessions, state="pending", matches=None, tenant=TENANT, when=utcnow())
    engine.dispose()
    return ["--config", str(path), "report", "accuracy", "--tenant", TENANT]


def test_the_report_and_its_csv(base: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out" / "accuracy.csv"
    result = runner.invoke(app, [*base, "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "50% right of 2 known (3 decided)" in result.output
    assert "by confidence band" in result.output and "Contoso" in result.output
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    overall = rows[0]
    assert (overall["dimension"], overall["decided"], overall["accuracy"]) == ("all", "3", "0.5000")
    assert {r["dimension"] for r in rows} == {"all", "company", "category", "engine", "band",
                                              "decision", "day"}  # fmt: skip


def test_no_outcomes_yet_and_bad_input(base: list[str]) -> None:
    quiet = runner.invoke(app, [*base[:-1], TENANT, "--company", "Nobody Inc"])
    assert quiet.exit_code == 0 and "no decisions with a category since" in quiet.output
    future = runner.invoke(app, [*base, "--since", "2999-01-01"])
    assert future.exit_code == 2
    assert future.output.strip().splitlines() == [
        "error: --since '2999-01-01' is in the future; give a past date or a period such as 90d"
    ]
    unknown = runner.invoke(app, [*base[:-1], "nobody"])
    assert unknown.exit_code == 2 and "no tenant named 'nobody'" in unknown.output
