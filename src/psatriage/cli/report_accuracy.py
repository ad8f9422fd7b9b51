"""``psatriage report accuracy``: the model measured against the categories tickets ended up
with (``psatriage.accuracy``); a command of the ``report`` group (``psatriage.cli.report``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from psatriage.cli._app import console, runtime, writable_file
from psatriage.cli.report import report_app

if TYPE_CHECKING:
    from psatriage import accuracy

_TITLES = {
    "band": "by confidence band",
    "decision": "by what the decision did",
    "engine": "by engine and model",
    "company": "by client company",
    "category": "by the model's category",
    "day": "by day (UTC)",
}
_STATES = ("agreed", "corrected", "filled", "pending", "gone")


@report_app.command("accuracy")
def report_accuracy(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant.")],
    since: Annotated[
        str, typer.Option(help="Decisions made since: a period (30d, 12w) or an ISO date.")
    ] = "30d",
    company: Annotated[
        str | None, typer.Option(help="Only this client company (PSA id or name).")
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write every group as CSV to this file.", dir_okay=False),
    ] = None,
) -> None:
    """How often the model's category is the one the ticket ended up with: overall and per
    confidence band, decision, engine, company, category and day. Pending and deleted tickets
    are counted beside the accuracy, not in it."""
    from psatriage import accuracy
    from psatriage.evaluation.backtest import parse_since

    with runtime() as built:
        built.tenant(tenant)  # an unknown tenant: one line, exit 2
        moment = parse_since(since)
        if csv_file is not None:
            writable_file(csv_file, "--csv")
        report = accuracy.accuracy(built.sessions, tenant, moment, company=company)
    if not report.overall.decided:
        console.print(
            f"tenant {tenant}: no decisions with a category since {moment:%Y-%m-%d} "
            "(outcomes appear as the outcome sweep reads decided tickets)",
            highlight=False,
        )
    else:
        _print(report)
    if csv_file is not None:
        _write_csv(report, csv_file)
        console.print(f"wrote {csv_file}", highlight=False)


def _print(report: accuracy.Report) -> None:
    overall = report.overall
    console.print(
        Text.assemble(
            (f"tenant {report.tenant}", "bold"),
            f", decisions since {report.since:%Y-%m-%d}: ",
            _percent(overall),
            f" right of {overall.known} known ({overall.decided} decided)",
        ),
        highlight=False,
    )
    for name in ("band", "decision", "engine", "company", "category", "day"):
        groups = report.groups[name]
        table = Table("", "decided", "known", "right", "accuracy", *_STATES,
                      title=_TITLES[name], title_justify="left")  # fmt: skip
        for group in groups:
            table.add_row(
                group.label or group.key or "(none)",
                str(group.decided),
                str(group.known),
                str(group.correct),
                _percent(group),
                *(str(group.states.get(state, 0)) for state in _STATES),
            )
        console.print(table)


def _percent(group: accuracy.Tally) -> Text:
    if group.accuracy is None:
        return Text("–")
    style = "green" if group.accuracy >= 0.9 else "yellow" if group.accuracy >= 0.7 else "red"
    return Text(f"{group.accuracy:.0%}", style=style)


def _write_csv(report: accuracy.Report, path: Path) -> None:

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tenant", "dimension", "key", "label", "decided", "known", "correct",
                         "accuracy", *_STATES])  # fmt: skip
        rows = [("all", report.overall)]
        rows += [(name, group) for name, groups in report.groups.items() for group in groups]
        for name, group in rows:
            rate = "" if group.accuracy is None else f"{group.accuracy:.4f}"
            writer.writerow([report.tenant, name, group.key, group.label, group.decided,
                             group.known, group.correct, rate,
                             *(group.states.get(state, 0) for state in _STATES)])  # fmt: skip
