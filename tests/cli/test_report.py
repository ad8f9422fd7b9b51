"""``psatriage report categories|automation|companies`` through the HTTP fakes of all four PSAs:
the fakes hold closed tickets, categories and time entries whose sums the tests know; bad input
is one clear line."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from tests.cli.psa_history import PSAS, TENANT, HistoryTenant, tenant_of
from tests.fakes.openai import FakeOpenAI

runner = CliRunner()
NOW = datetime.now(UTC)
TITLES = ("Printer paper jam on floor 3", "Printer paper jam on floor 2", "Paper jam in printer",
          "Printer paper jam again", "Printer paper jam on floor 4")  # fmt: skip


@pytest.fixture(params=sorted(PSAS))
def seeded(
    request: pytest.FixtureRequest, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HistoryTenant]:
    """Each PSA's fake with the tickets of ``seed``."""
    for tenant in tenant_of(request.param, llm, tmp_path, monkeypatch):
        seed(tenant)
        yield tenant


@pytest.fixture
def cw_seeded(
    llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HistoryTenant]:
    for tenant in tenant_of("connectwise", llm, tmp_path, monkeypatch):
        seed(tenant)
        yield tenant


def seed(tenant: HistoryTenant) -> None:
    """This period (the last 30 days): five short printer tickets at Contoso (0.25 h each but
    one of 0.5 h, one of them in two entries), one mailbox ticket at Fabrikam (4 h) and one
    uncategorized ticket without time; the period before: one printer (2 h) and two mailbox
    tickets (1 h each); and one ticket closed long before."""
    closed_ticket, add_time = tenant.kit.closed_ticket, tenant.kit.add_time
    assert closed_ticket is not None and add_time is not None

    def close(
        title: str, days_ago: float, category: int | None, company: int, *hours: float
    ) -> str:
        closed = NOW - timedelta(days=days_ago)
        ticket = closed_ticket(title, closed - timedelta(days=1), closed, category, company)
        for spent in hours:
            add_time(ticket, spent)
        return ticket

    close(TITLES[0], 2, 0, 0, 0.125, 0.125)
    close(TITLES[1], 3, 0, 0, 0.25)
    close(TITLES[2], 4, 0, 0, 0.5)
    close(TITLES[3], 5, 0, 0, 0.25)
    close(TITLES[4], 6, 0, 0, 0.25)
    close("Mailbox is full", 7, 1, 1, 4.0)
    close("Question about the invoice", 8, None, 1)
    close("Printer offline", 40, 0, 0, 2.0)
    close("Mailbox is full", 45, 1, 1, 1.0)
    close("Cannot send mail", 50, 1, 1, 1.0)
    close("Long ago", 100, 0, 0, 9.0)


def run(*args: str) -> Any:
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_categories_per_level_with_shares_percentiles_and_trend(seeded: HistoryTenant) -> None:
    report = run("categories", "-t", TENANT, "--since", "30d", "--refresh", "--json")
    summary = report["summary"]
    assert (summary["tickets"], summary["hours"], summary["without_time"]) == (7, 5.5, 1)
    assert summary["hours_available"] and summary["hours_note"] == "" and summary["message"] == ""
    assert summary["psa"] == seeded.kind
    first = report["levels"][0]
    assert first["level"] == "type"
    rows = {row["category"]: row for row in first["rows"]}
    assert [row["category"] for row in first["rows"]] == ["Software", "Hardware", "(none)"]
    hardware = rows["Hardware"]
    assert (hardware["tickets"], hardware["hours"], hardware["share"]) == (5, 1.5, 0.7143)
    assert (hardware["median_hours"], hardware["p90_hours"]) == (0.25, 0.4)
    assert (hardware["previous_tickets"], hardware["previous_hours"]) == (1, 2.0)
    assert (hardware["tickets_trend"], hardware["hours_trend"]) == (4.0, -0.25)
    software = rows["Software"]
    assert (software["tickets"], software["hours"], software["hours_share"]) == (1, 4.0, 0.7273)
    assert (software["tickets_trend"], software["hours_trend"]) == (-0.5, 1.0)
    assert (rows["(none)"]["hours"], rows["(none)"]["median_hours"]) == (0.0, 0.0)
    full = {row["category"]: row for row in report["levels"][-1]["rows"]}
    assert full[seeded.kit.report_categories[0]]["hours"] == 1.5
    assert full[seeded.kit.report_categories[1]]["tickets"] == 1


def test_automation_candidates_with_hours_a_year(seeded: HistoryTenant) -> None:
    run("categories", "-t", TENANT, "--since", "30d", "--refresh", "--json")  # the facts, once
    report = run("automation", "-t", TENANT, "--since", "30d", "--json")
    printer, mailbox = seeded.kit.report_categories
    ranked = [(r["category"], r["hours"]) for r in report["by_hours"]]
    assert ranked == [(mailbox, 4.0), (printer, 1.5)]
    assert report["by_hours"][1]["hours_a_year"] == 18.25  # 1.5 h in 30 days
    assert [(r["category"], r["company"], r["tickets"]) for r in report["recurring"]] == [
        (printer, "Contoso Ltd", 5)
    ]
    [alike] = report["alike"]
    assert (alike["category"], alike["tickets"], alike["median_hours"]) == (printer, 5, 0.25)
    assert alike["similarity"] >= 0.3 and alike["examples"][0] in TITLES
    assert alike["tickets_a_year"] == round(5 * 365 / 30, 2)


def test_companies_for_business_reviews(seeded: HistoryTenant) -> None:
    report = run("companies", "-t", TENANT, "--since", "30d", "--refresh", "--json")
    fabrikam, contoso = report["companies"]
    assert (fabrikam["company"], fabrikam["tickets"], fabrikam["hours"]) == ("Fabrikam Inc", 2, 4.0)
    assert (contoso["company"], contoso["tickets"], contoso["hours"]) == ("Contoso Ltd", 5, 1.5)
    assert (contoso["previous_tickets"], fabrikam["previous_tickets"]) == (1, 2)
    assert [(c["category"], c["tickets"], c["hours"]) for c in fabrikam["categories"]] == [
        (seeded.kit.report_categories[1], 1, 4.0),
        ("(none)", 1, 0.0),
    ]


def test_hours_unavailable_says_the_permission_and_still_counts(seeded: HistoryTenant) -> None:
    assert seeded.kit.deny_time is not None
    seeded.kit.deny_time()
    report = run("categories", "-t", TENANT, "--since", "30d", "--refresh", "--json")
    summary = report["summary"]
    assert summary["tickets"] == 7 and summary["hours"] is None
    assert not summary["hours_available"]
    assert summary["hours_note"].startswith("hours unavailable: ")
    assert len(summary["hours_note"]) > len("hours unavailable: ") + 10  # names the permission
    hardware = next(r for r in report["levels"][0]["rows"] if r["category"] == "Hardware")
    assert (hardware["tickets"], hardware["hours"], hardware["median_hours"]) == (5, None, None)


def test_tables_csv_and_a_later_report_from_the_stored_facts(
    cw_seeded: HistoryTenant, tmp_path: Path
) -> None:
    table = tmp_path / "out" / "categories.csv"
    result = runner.invoke(
        app, ["report", "categories", "-t", TENANT, "--refresh", "--csv", str(table)]
    )
    assert result.exit_code == 0, result.output
    for text in ("categories of acme (connectwise)", "per type › subtype", "per full path",
                 "Hardware › Printer › Paper jam", "+400%", "without time"):  # fmt: skip
        assert text in result.stdout
    with table.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["level"] for row in rows} == {"type", "type › subtype", "full path"}
    calls = len(cw_seeded.kit.fake.requests)
    for kind, heading in (("automation", "short, frequent and alike"),
                          ("companies", "per company")):  # fmt: skip
        shown = runner.invoke(app, ["report", kind, "-t", TENANT])
        assert shown.exit_code == 0, shown.output
        assert heading in shown.stdout and "Contoso Ltd" in shown.stdout
    assert len(cw_seeded.kit.fake.requests) == calls  # from the database, no PSA call


def test_an_empty_period_is_a_message_and_success(cw_seeded: HistoryTenant) -> None:
    args = ["--since", "2020-01-01", "--until", "2020-02-01"]
    result = runner.invoke(app, ["report", "categories", "-t", TENANT, *args, "--refresh"])
    assert result.exit_code == 0, result.output
    assert "no tickets closed between 2020-01-01 00:00 and 2020-02-01 00:00 UTC" in result.stdout
    report = run("automation", "-t", TENANT, *args, "--json")
    assert report["summary"]["tickets"] == 0 and report["by_hours"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "nobody"], "no tenant named 'nobody'"),
        (["-t", TENANT, "--since", "yesterday"], "--since 'yesterday' is not a date"),
        (["-t", TENANT, "--until", "2026-13-01"], "--until '2026-13-01' is not a date"),
        (["-t", TENANT, "--since", "2026-02-01", "--until", "2026-01-01"], "is not before"),
        (["-t", TENANT, "--since", "0d"], "empty period"),
    ],
)
def test_bad_input_is_one_line_and_a_failure(
    cw_seeded: HistoryTenant, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["report", "companies", *args])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
