"""``psatriage report``'s output: Rich tables for the terminal and flat rows for ``--csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from psatriage.errors import ConfigError
from psatriage.reports.models import (
    AutomationReport,
    CategoriesReport,
    CompaniesReport,
    Summary,
)

Report = CategoriesReport | AutomationReport | CompaniesReport
SHOWN = 15  # rows per table on the terminal; --json and --csv have them all


def hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def trend(value: float | None, previous: float | None, current: float | None) -> Text:
    """The change against the previous period: ``+25%`` (red: more), ``new`` when the previous
    period had none and this one has some, else blank."""
    if value is None:
        return Text("new" if previous == 0 and current else "")
    shown = f"{value:+.0%}"
    return Text(shown, style="red" if value > 0 else "green" if value < 0 else "")


def summary_table(summary: Summary, title: str) -> Table:
    table = Table("", "", title=f"{title} of {summary.tenant} ({summary.psa})")
    table.add_row(
        "period",
        f"closed {summary.since:%Y-%m-%d %H:%M} to {summary.until:%Y-%m-%d %H:%M} UTC "
        f"(previous from {summary.previous_since:%Y-%m-%d %H:%M})",
    )
    table.add_row("tickets", str(summary.tickets))
    table.add_row("hours", hours(summary.hours))
    if summary.hours_note:
        table.add_row("", Text(summary.hours_note, style="yellow"))
    table.add_row("without time", f"{summary.without_time} (counted as 0 hours)")
    table.add_row("decided by psatriage", str(summary.decided))
    refreshed = f"{summary.refreshed_at:%Y-%m-%d %H:%M} UTC" if summary.refreshed_at else "never"
    table.add_row("facts refreshed", refreshed)
    return table


def _more(table: Table, count: int) -> Table:
    if count > SHOWN:
        table.caption = f"{count - SHOWN} more in --json or --csv"
    return table


def show(console: Console, report: Report) -> None:
    if isinstance(report, CategoriesReport):
        _categories(console, report)
    elif isinstance(report, AutomationReport):
        _automation(console, report)
    else:
        _companies(console, report)


def _categories(console: Console, report: CategoriesReport) -> None:
    console.print(summary_table(report.summary, "categories"))
    for level in report.levels:
        table = Table(
            "category", "tickets", "share", "hours", "share of hours", "median h", "p90 h",
            "tickets vs before", "hours vs before", title=f"per {level.level}",
        )  # fmt: skip
        for row in level.rows[:SHOWN]:
            table.add_row(
                row.category,
                str(row.tickets),
                share(row.share),
                hours(row.hours),
                share(row.hours_share),
                hours(row.median_hours),
                hours(row.p90_hours),
                trend(row.tickets_trend, row.previous_tickets, row.tickets),
                trend(row.hours_trend, row.previous_hours, row.hours),
            )
        console.print(_more(table, len(level.rows)))


def _automation(console: Console, report: AutomationReport) -> None:
    console.print(summary_table(report.summary, "automation candidates"))
    ranked = Table("category", "tickets", "hours", "share of hours", "median h", "hours a year",
                   title="categories by total hours")  # fmt: skip
    for row in report.by_hours[:SHOWN]:
        ranked.add_row(row.category, str(row.tickets), hours(row.hours), share(row.hours_share),
                       hours(row.median_hours), hours(row.hours_a_year))  # fmt: skip
    console.print(_more(ranked, len(report.by_hours)))
    recurring = Table("category", "company", "tickets", "hours", "hours a year",
                      title="the same problem again at one company")  # fmt: skip
    for pair in report.recurring[:SHOWN]:
        recurring.add_row(pair.category, pair.company, str(pair.tickets), hours(pair.hours),
                          hours(pair.hours_a_year))  # fmt: skip
    console.print(_more(recurring, len(report.recurring)))
    alike = Table("category", "tickets", "median h", "alike", "hours a year", "for example",
                  title="short, frequent and alike")  # fmt: skip
    for group in report.alike[:SHOWN]:
        alike.add_row(group.category, str(group.tickets), hours(group.median_hours),
                      f"{group.similarity:.2f}", hours(group.hours_a_year),
                      " | ".join(group.examples))  # fmt: skip
    console.print(_more(alike, len(report.alike)))


def _companies(console: Console, report: CompaniesReport) -> None:
    console.print(summary_table(report.summary, "companies"))
    table = Table("company", "tickets", "hours", "share of hours", "tickets before",
                  "top categories (tickets, hours)", title="per company")  # fmt: skip
    for row in report.companies[:SHOWN]:
        top = "; ".join(f"{c.category} ({c.tickets}, {hours(c.hours)})" for c in row.categories[:3])
        table.add_row(row.company, str(row.tickets), hours(row.hours), share(row.hours_share),
                      str(row.previous_tickets), top)  # fmt: skip
    console.print(_more(table, len(report.companies)))


# -- --csv ---------------------------------------------------------------------------------------


def rows(report: Report) -> list[dict[str, Any]]:
    """One flat row per line of the report."""
    if isinstance(report, CategoriesReport):
        return [
            {"level": level.level, **row.model_dump()}
            for level in report.levels
            for row in level.rows
        ]
    if isinstance(report, AutomationReport):
        found: list[dict[str, Any]] = []
        for row in report.by_hours:
            found.append({"list": "by hours", "company": "", **row.model_dump()})
        for pair in report.recurring:
            found.append({"list": "recurring", **pair.model_dump()})
        for group in report.alike:
            entry = group.model_dump()
            entry["examples"] = " | ".join(group.examples)
            found.append({"list": "alike", "company": "", **entry})
        return found
    return [
        {"company": row.company, "company_id": row.company_id, **category.model_dump()}
        for row in report.companies
        for category in row.categories
    ]


_COLUMNS = {
    CategoriesReport: ["level", "category", "tickets", "share", "hours", "hours_share",
                       "median_hours", "p90_hours", "previous_tickets", "previous_hours",
                       "tickets_trend", "hours_trend"],
    AutomationReport: ["list", "category", "company", "tickets", "hours", "hours_share",
                       "median_hours", "similarity", "examples", "hours_a_year",
                       "tickets_a_year"],
    CompaniesReport: ["company", "company_id", "category", "tickets", "hours"],
}  # fmt: skip


def write_csv(path: Path, report: Report) -> None:
    columns = _COLUMNS[type(report)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows(report):
                writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    except OSError as exc:
        raise ConfigError(f"cannot write the CSV file {path} ({exc.strerror})") from None
