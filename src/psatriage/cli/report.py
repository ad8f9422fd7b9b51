"""``psatriage report``: where the time goes, per tenant and period, from the facts kept in the
database (closed tickets, their final category and the hours spent on them).

The facts are refreshed by the service on a schedule (``PSATRIAGE_FACTS_REFRESH_HOURS``), or
here with ``--refresh``, which reads the period and the one before it from the PSA first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from psatriage.cli._app import app, console, errors, fail_cleanly, runtime, writable_file
from psatriage.cli._report_tables import Report, show, write_csv
from psatriage.cli.backtest import bar
from psatriage.cli.train import HISTORY_PATIENCE_SECONDS
from psatriage.errors import ConfigError
from psatriage.reports import build
from psatriage.reports.build import Period
from psatriage.reports.period import DEFAULT_SINCE, load_period, parse_period
from psatriage.reports.refresh import refresh_facts
from psatriage.shared.limits import patience
from psatriage.store.facts import Facts

report_app = typer.Typer(
    help="Reports per tenant: categories, automation candidates, companies.",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")

Tenant = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")]
Since = Annotated[
    str,
    typer.Option(help="Tickets closed since: a span back from --until (30d, 12w) or an ISO date."),
]
Until = Annotated[
    str | None,
    typer.Option(help="Tickets closed before this ISO date (default: now)."),
]
CsvFile = Annotated[
    Path | None, typer.Option("--csv", help="Also write the report's rows to this CSV file.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
Refresh = Annotated[
    bool,
    typer.Option(
        "--refresh",
        help="Read the period (and the one before it) from the PSA first, within the tenant's "
        "call limits.",
    ),
]


@report_app.command("categories")
def categories_command(
    tenant: Tenant,
    since: Since = DEFAULT_SINCE,
    until: Until = None,
    csv_file: CsvFile = None,
    as_json: AsJson = False,
    refresh: Refresh = False,
) -> None:
    """Tickets and hours per category at each level (type, type › subtype, full path): share
    of the total, median and p90 hours per ticket, and the change against the previous period."""
    _report(build.categories, tenant, since, until, csv_file, as_json, refresh)


@report_app.command("automation")
def automation_command(
    tenant: Tenant,
    since: Since = DEFAULT_SINCE,
    until: Until = None,
    csv_file: CsvFile = None,
    as_json: AsJson = False,
    refresh: Refresh = False,
) -> None:
    """Automation candidates: categories ranked by total hours, the same category again and
    again at one company, and categories whose tickets are short, frequent and alike; each with
    the hours a year it represents at the rate measured in the period."""
    _report(build.automation, tenant, since, until, csv_file, as_json, refresh)


@report_app.command("companies")
def companies_command(
    tenant: Tenant,
    since: Since = DEFAULT_SINCE,
    until: Until = None,
    csv_file: CsvFile = None,
    as_json: AsJson = False,
    refresh: Refresh = False,
) -> None:
    """Per company, its tickets and hours by category (for business reviews)."""
    _report(build.companies, tenant, since, until, csv_file, as_json, refresh)


def _report(
    make: Callable[[Period], Report],
    tenant: str,
    since: str,
    until: str | None,
    csv_file: Path | None,
    as_json: bool,
    refresh: bool,
) -> None:
    with fail_cleanly():
        start, end = parse_period(since, until)  # a bad date fails before anything is opened
        if csv_file is not None:
            writable_file(csv_file, "the CSV file")
    with runtime() as built:
        config = built.tenant(tenant)
        facts = Facts(built.engine, built.sessions)
        if refresh:
            adapter = built.adapter(tenant)
            if not adapter.can_read_time():
                raise ConfigError(f"tenant {tenant!r}: {config.psa} cannot list closed tickets")
            with patience(HISTORY_PATIENCE_SECONDS), bar() as shown:
                task = shown.add_task(f"closed tickets of {tenant} from {config.psa}", total=None)

                def progress(done: int, total: int) -> None:
                    shown.update(task, description="time spent", completed=done, total=total)

                done = refresh_facts(
                    adapter,
                    facts,
                    config.redactor,
                    since=start - (end - start),
                    until=end,
                    progress=progress,
                )
            errors.print(
                f"refreshed {done.tickets} closed tickets of {tenant} ({done.new} new), "
                f"hours of {done.hours_read}"
                + (f"; stopped early: {done.stopped}" if done.stopped else ""),
                highlight=False,
            )
        made = make(load_period(facts, tenant, config.psa, start, end))
    if csv_file is not None:
        with fail_cleanly():
            write_csv(csv_file, made)
    if as_json:
        print(json.dumps(made.model_dump(mode="json"), indent=2, ensure_ascii=False))
    elif made.summary.message:
        console.print(made.summary.message, highlight=False)
    else:
        show(console, made)
