"""``psatriage backtest``: how the tenant's settings would have done on its closed tickets."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from psatriage.cli._app import app, console, errors, fail_cleanly, runtime, writable_file
from psatriage.cli.eval import Engine
from psatriage.cli.train import HISTORY_PATIENCE_SECONDS
from psatriage.errors import ConfigError
from psatriage.evaluation.backtest_report import DEFAULT_SUGGEST_TARGET, DEFAULT_TARGET

INTERRUPTED = 130  # the shell's code for a run stopped with Ctrl-C


@app.command("backtest")
def backtest_command(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")],
    since: Annotated[
        str, typer.Option(help="Closed tickets created since: a period (90d, 12w) or ISO date.")
    ] = "90d",
    limit: Annotated[
        int, typer.Option(help="At most this many closed tickets, newest first.", min=1)
    ] = 500,
    engine: Annotated[
        Engine | None,
        typer.Option(help="Measure another engine on the tenant's settings (default: its own)."),
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write one row per ticket to this file.")
    ] = None,
    target: Annotated[
        float, typer.Option(help="The precision apply_at must reach.", min=0.5, max=1.0)
    ] = DEFAULT_TARGET,
    suggest_target: Annotated[
        float,
        typer.Option(help="The precision the review band must reach.", min=0.0, max=1.0),
    ] = DEFAULT_SUGGEST_TARGET,
    concurrency: Annotated[
        int, typer.Option(help="Tickets classified at once.", min=1, max=32)
    ] = 4,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over instead of resuming an unfinished run.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Classify the tenant's closed tickets as the pipeline would, writing nothing; report the
    accuracy per level, precision and coverage per confidence, the recommended apply_at and
    suggest_at, tokens and monthly cost, and the category tree's hygiene. An interrupted run
    resumes where it stopped when the same command runs again."""
    from psatriage.evaluation.backtest import (
        Params,
        backtest,
        parse_since,
        to_retry,
    )
    from psatriage.evaluation.engines import classifier_for
    from psatriage.shared.limits import patience
    from psatriage.store.activity import Activity
    from psatriage.store.backtests import Backtests

    with fail_cleanly():
        parse_since(since)  # a bad period fails before anything is opened
        if csv_file is not None:
            writable_file(csv_file, "the CSV file")
    params = Params(since=since, limit=limit, engine=engine.value if engine else "")
    with runtime() as built, patience(HISTORY_PATIENCE_SECONDS), bar() as progress_bar:
        deps = built.deps(tenant)
        if engine is not None:
            chosen = classifier_for(deps.tenant, engine.value)
            chosen.use_database(built.sessions)  # the tenant's active model version
            deps = replace(deps, classifier=chosen)
        task = progress_bar.add_task(
            f"reading closed tickets of {tenant} from {deps.tenant.psa}", total=None
        )
        counts = [0, 0]

        def progress(done: int, total: int) -> None:
            counts[:] = [done, total]
            progress_bar.update(task, description=f"backtest {tenant}", completed=done, total=total)

        try:
            outcome = backtest(
                deps,
                Backtests(built.sessions),
                params,
                activity=Activity(built.sessions),
                target=target,
                suggest_target=suggest_target,
                fresh=fresh,
                concurrency=concurrency,
                progress=progress,
            )
        except KeyboardInterrupt:
            progress_bar.stop()
            errors.print(
                f"interrupted after {counts[0]} of {counts[1]} tickets; their results are kept: "
                "run the same command again to resume",
                highlight=False,
            )
            raise typer.Exit(INTERRUPTED) from None
        finally:
            if engine is not None:
                deps.classifier.close()
    if outcome.resumed:
        errors.print(f"resumed: {outcome.resumed} tickets were done by an earlier run")
    if outcome.stopped is not None or outcome.report is None:
        stopped = outcome.stopped or "stopped"
        errors.print(Text.assemble((stopped, "red"), "; run again to resume"), highlight=False)
        raise typer.Exit(1)
    if csv_file is not None:
        with fail_cleanly():
            _write_csv(csv_file, outcome.results)
    if as_json:
        print(json.dumps(outcome.report, indent=2))
    else:
        show(outcome.report)
    if retry := to_retry(outcome.report):
        errors.print(
            f"{retry} tickets failed for a passing reason; the same command tries them again",
            highlight=False,
        )


@contextmanager
def bar() -> Iterator[Progress]:
    shown = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "eta",
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    with shown:
        yield shown


def _write_csv(path: Path, results: list[dict[str, Any]]) -> None:
    rows = _rows(results)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the CSV file {path} ({exc.strerror}); the report is kept: "
            "psatriage readiness shows it"
        ) from None


def _rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per ticket, for ``--csv``."""
    rows = []
    for r in results:
        predicted, failure = r.get("predicted") or {}, r.get("failure") or {}
        rows.append(
            {
                "ticket": r["ticket"],
                "company": r["company"],
                "scope": r["scope"],
                "final_category": r["truth"]["label"],
                "final_key": r["truth"]["key"],
                "predicted_category": predicted.get("label", ""),
                "predicted_key": predicted.get("key", ""),
                "confidence": "" if r["confidence"] is None else f"{r['confidence']:.4f}",
                "correct": ""
                if failure
                else str(predicted.get("key") == r["truth"]["key"]).lower(),
                "engine": r["engine"],
                "tokens_in": r["tokens_in"],
                "tokens_out": r["tokens_out"],
                "cost_usd": f"{r['cost_usd']:.6f}",
                "latency_ms": f"{r['latency_ms']:.1f}",
                "failure": failure.get("kind", ""),
                "error": failure.get("message", ""),
            }
            | _field_columns(r.get("fields") or {})
        )
    return rows


def _field_columns(scored: Mapping[str, Any]) -> dict[str, str]:
    """The final and predicted value of each field scored (priority, routing), for ``--csv``."""
    columns = {}
    for name in ("priority", "routing"):
        one = scored.get(name) or {}
        predicted = one.get("predicted") or {}
        columns[f"final_{name}"] = (one.get("truth") or {}).get("name", "")
        columns[f"predicted_{name}"] = predicted.get("name", "")
    return columns


# -- the report as tables (shared with ``psatriage readiness``) --------------------------------


def show(report: Mapping[str, Any]) -> None:
    run = report["run"]
    console.print(summary_table(report, title=f"backtest of {run['tenant']} ({run['psa']})"))
    thresholds = Table("confidence ≥", "coverage", "precision", title="thresholds")
    for row in report["thresholds"]:
        thresholds.add_row(
            f"{row['threshold']:.2f}", f"{row['coverage']:.1%}", f"{row['precision']:.3f}"
        )
    console.print(thresholds)
    console.print(policy_table(report["policy"]))
    console.print(cost_table(report["cost"]))
    console.print(hygiene_table(report["hygiene"]))
    classes = Table("category", "tickets", "precision", "recall", "F1", title="per category")
    for row in report["classes"][:20]:
        classes.add_row(
            row["label"],
            str(row["support"]),
            f"{row['precision']:.2f}",
            f"{row['recall']:.2f}",
            f"{row['f1']:.2f}",
        )
    if len(report["classes"]) > 20:
        classes.caption = f"{len(report['classes']) - 20} more in --json"
    console.print(classes)
    if report.get("fields"):
        console.print(fields_table(report["fields"]))
    if report["failure_examples"]:
        failed = Table("ticket", "kind", "error", title="failures (first of each kind)")
        for failure in report["failure_examples"]:
            failed.add_row(failure["ticket_id"], failure["kind"], failure["message"])
        console.print(failed)


def fields_table(measured: Mapping[str, Any]) -> Table:
    """Accuracy per ticket field, beside the category's (``evaluation.fields``)."""
    table = Table(
        "field",
        "tickets",
        "decided",
        "accuracy",
        "macro-F1",
        "most confused",
        title="ticket fields",
    )
    for name, field in measured.items():
        confused = ", ".join(
            f"{c['truth']} → {c['predicted']} ({c['count']})" for c in field["confused"][:3]
        )
        table.add_row(
            name,
            str(field["tickets"]),
            str(field["decided"]),
            f"{field['accuracy']:.1%}",
            f"{field['macro_f1']:.3f}",
            confused or "none",
        )
    table.caption = "accuracy over the tickets scored; an answer outside the values is wrong"
    return table


def summary_table(report: Mapping[str, Any], *, title: str) -> Table:
    run, accuracy = report["run"], report["accuracy"]
    table = Table("", "", title=title)
    table.add_row("period", f"tickets created since {run['since'][:10]} ({run['period']})")
    table.add_row("tickets", f"{report['tickets']} read, {report['answered']} answered")
    if report["failed"]:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in report["failures"].items())
        table.add_row("failed", Text.assemble((str(report["failed"]), "red"), f" ({kinds})"))
    table.add_row("engine", str(run["engine"]))
    table.add_row("accuracy, first level", f"{accuracy['first_level']:.1%}")
    table.add_row("accuracy, first two levels", f"{accuracy['first_two_levels']:.1%}")
    table.add_row("accuracy, full path", f"{accuracy['full_path']:.1%}")
    table.add_row("macro-F1", f"{report['macro_f1']:.3f}")
    table.add_row("calibration error (ECE)", f"{report['ece']:.3f}")
    return table


def policy_table(bands: Mapping[str, Any]) -> Group:
    table = Table("band", "confidence", "tickets", "precision", title="recommended policy")
    apply_at, suggest_at = bands["apply_at"], bands["suggest_at"]
    if apply_at is not None:
        table.add_row(
            "apply (write)",
            f"≥ {apply_at:.2f}",
            f"{bands['apply_share']:.1%}",
            f"{bands['apply_precision']:.1%}",
        )
    if suggest_at is not None and suggest_at != apply_at:
        upper = f" and < {apply_at:.2f}" if apply_at is not None else ""
        table.add_row(
            "suggest (note for review)",
            f"≥ {suggest_at:.2f}{upper}",
            f"{bands['review_share']:.1%}",
            f"{bands['review_precision']:.1%}",
        )
    table.add_row("record only", "below", f"{bands['record_share']:.1%}", "")
    table.caption = bands["reason"]
    lines = [f'mode = "{bands["mode"]}"']
    lines += [
        f"{name} = {bands[name]:.2f}"
        for name in ("apply_at", "suggest_at")
        if bands[name] is not None
    ]
    return Group(table, Text("policy: " + ", ".join(lines)))


def cost_table(cost: Mapping[str, Any]) -> Table:
    volume = cost["volume"]
    table = Table("", "", title="tokens and cost")
    table.add_row(
        "this run",
        f"{cost['tokens_in']} tokens in, {cost['tokens_out']} out; ${cost['cost_usd']:.4f}",
    )
    table.add_row(
        "per ticket",
        f"{cost['tokens_per_ticket']:.0f} tokens; ${cost['cost_per_ticket_usd']:.5f}",
    )
    table.add_row(
        "ticket volume",
        f"{volume['tickets']} in {volume['days']:.0f} days ({volume['source']})",
    )
    table.add_row(
        "projected per month",
        f"{cost['tickets_per_month']:.0f} tickets, {cost['tokens_per_month']:.0f} tokens, "
        f"${cost['cost_per_month_usd']:.2f}",
    )
    return table


def hygiene_table(found: Mapping[str, Any], *, shown: int = 10) -> Table:
    table = Table("", "", title="category hygiene")

    def listed(names: list[str]) -> str:
        more = len(names) - shown
        return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")

    table.add_row(
        "categories used",
        f"{found['categories_used']} (of {found['categories_offered']} offered)",
    )
    table.add_row("never used", listed(found["unused"]) or "none")
    table.add_row(
        "under 1% of tickets",
        listed([f"{u['label']} ({u['tickets']})" for u in found["rare"]]) or "none",
    )
    table.add_row(
        "catch-all share",
        f"{found['catch_all_share']:.1%}"
        + (": " if found["catch_all"] else "")
        + listed([f"{u['label']} ({u['tickets']})" for u in found["catch_all"]]),
    )
    pairs = [f"{p['first']} ↔ {p['second']} ({p['tickets']})" for p in found["merge_candidates"]]
    table.add_row("merge candidates", listed(pairs) or "none")
    if found["not_offered"]:
        table.add_row(
            "not offered to the model",
            listed([f"{u['label']} ({u['tickets']})" for u in found["not_offered"]]),
        )
    for advice in found["advice"]:
        table.add_row("advice", advice)
    return table
