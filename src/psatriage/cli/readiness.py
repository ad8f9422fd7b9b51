"""``psatriage readiness``: connections, the last backtest, hygiene and the recommended policy,
on one page: the check before switching a tenant to ``apply``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from psatriage.cli._app import app, console, runtime
from psatriage.cli.backtest import bar, cost_table, hygiene_table, policy_table, summary_table
from psatriage.cli.train import HISTORY_PATIENCE_SECONDS
from psatriage.errors import PsatriageError

if TYPE_CHECKING:
    from psatriage.evaluation.readiness import Check, Readiness
    from psatriage.runtime import Runtime

FRESH_PERIOD = "90d"  # the period of the small backtest run when there is none yet
_MARKS = {True: Text("✓", "green"), False: Text("✗", "red"), None: Text("!", "yellow")}
_COLOURS = {"ready to apply": "green", "ready to suggest": "yellow", "not ready": "red"}


@app.command("readiness")
def readiness_command(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")],
    sample: Annotated[
        int,
        typer.Option(
            help="Without a finished backtest, run a small one on this many closed tickets of "
            "the last 90 days (0: do not).",
            min=0,
        ),
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Connections, how tickets arrive, the last backtest (or a small fresh one), category
    hygiene and the recommended policy; exit code 1 when the tenant is not ready."""
    from psatriage.evaluation.readiness import (
        NOT_READY,
        Traffic,
        assess,
        probe,
        trigger_checks,
    )
    from psatriage.shared.limits import patience
    from psatriage.store.activity import Activity

    with runtime() as built, patience(HISTORY_PATIENCE_SECONDS):
        configured = built.tenant(tenant)
        adapter = built.adapter(tenant)
        checks = [
            probe("PSA", adapter.check_connection),
            probe("model", lambda: built.classifier(tenant).check_connection()),
        ]
        mark = built.polls.get(tenant)
        traffic = Traffic(
            Activity(built.sessions).last_received(tenant, "webhook"),
            mark.mark if mark is not None else None,
        )
        checks += trigger_checks(configured, adapter, traffic)
        report, finished, changed = _backtest(built, tenant, checks, sample)
        result = assess(configured, checks, report, finished=finished, settings_changed=changed)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _show(result)
    if result.verdict == NOT_READY:
        raise typer.Exit(1)


def _backtest(
    built: Runtime, tenant: str, checks: list[Check], sample: int
) -> tuple[dict[str, Any] | None, datetime | None, bool]:
    """The last finished backtest's report, when it finished, and whether the tenant's settings
    changed since; or a small fresh backtest when there is none (and the PSA answered)."""
    from psatriage.evaluation.backtest import Params, backtest, run_key
    from psatriage.evaluation.readiness import Check
    from psatriage.store.activity import Activity
    from psatriage.store.backtests import Backtests
    from psatriage.store.tables import utcnow

    store = Backtests(built.sessions)
    last = store.latest_finished(tenant)
    if last is not None:
        params = Params(
            str(last.params["since"]), int(last.params["limit"]), str(last.params["engine"])
        )
        changed = run_key(built.tenant(tenant), params) != last.run_key
        return last.report, last.finished_at, changed
    psa_ok = checks[0].ok
    if sample == 0 or not psa_ok or not built.adapter(tenant).can_list_history():
        return None, None, False
    with bar() as progress:
        task = progress.add_task(f"backtest of {tenant} ({sample} tickets)", total=None)
        try:
            outcome = backtest(
                built.deps(tenant),
                store,
                Params(FRESH_PERIOD, sample),
                activity=Activity(built.sessions),
                concurrency=4,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except PsatriageError as exc:
            checks.append(Check("backtest", False, str(exc)))
            return None, None, False
    if outcome.stopped is not None:
        checks.append(Check("backtest", False, outcome.stopped))
    return outcome.report, utcnow(), False


def _show(result: Readiness) -> None:
    title = f"readiness of {result.tenant} ({result.psa}, classifier {result.classifier})"
    checks = Table("check", "", "detail", title=title)
    for check in result.checks:
        checks.add_row(check.name, _MARKS[check.ok], check.detail)
    console.print(checks)
    report = result.backtest
    if report is not None:
        finished = (result.backtest_finished or "")[:16].replace("T", " ")
        console.print(summary_table(report, title=f"last backtest (finished {finished} UTC)"))
        console.print(policy_table(report["policy"]))
        console.print(cost_table(report["cost"]))
        console.print(hygiene_table(report["hygiene"], shown=5))
    colour = _COLOURS.get(result.verdict, "red")
    console.print(Text(result.verdict, f"bold {colour}"))
    for reason in result.reasons:
        console.print(f"  {reason}", highlight=False)
    if result.improve:
        console.print("to improve:")
        for item in result.improve:
            console.print(f"  - {item}", highlight=False)
