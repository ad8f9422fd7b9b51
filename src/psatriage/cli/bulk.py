"""``psatriage backfill`` and ``psatriage export``: bulk work on a tenant's existing tickets."""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from psatriage.cli._app import app, console, errors, fail_cleanly, runtime, writable_file
from psatriage.errors import ConfigError

INTERRUPTED = 130  # the shell's code for a run stopped with Ctrl-C
WAIT_FOR_ROOM_SECONDS = 3600.0
"""How long one call may wait for room in the tenant's share of the PSA call limit."""

CSV_COLUMNS = (
    "ticket",
    "company",
    "current",
    "outcome",
    "writes",
    "category",
    "key",
    "confidence",
    "reason",
    "error",
    "state",
)


class _Rate(ProgressColumn):
    """Tickets per second (or per minute, when slower)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("- /s")
        return Text(f"{speed:.1f}/s" if speed >= 1 else f"{speed * 60:.1f}/min")


@contextmanager
def _bar() -> Iterator[Progress]:
    shown = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        "eta",
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    with shown:
        yield shown


Since = Annotated[
    str, typer.Option(help="Tickets created since: an ISO date (2026-09-01) or a period (90d).")
]
Until = Annotated[str | None, typer.Option(help="And created before this ISO date (default: now).")]
TenantName = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")]


@app.command("backfill")
def backfill_command(
    tenant: TenantName,
    since: Since,
    until: Until = None,
    only_uncategorized: Annotated[
        bool,
        typer.Option("--only-uncategorized", help="Leave tickets that have a category alone."),
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Look at most at this many tickets, oldest first.", min=1)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide, write nothing; --csv says what would change.")
    ] = False,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write one row per ticket to this file.")
    ] = None,
) -> None:
    """Categorize the tenant's existing tickets through the pipeline and its policy, as new
    tickets are: a ticket already decided is never written again. Uses at most the tenant's
    backfill_call_share of its PSA call limit, so new tickets keep the rest. An interrupted run
    resumes when the same command runs again."""
    from psatriage.bulk import parse_until
    from psatriage.bulk.backfill import Params, Stopped, backfill
    from psatriage.evaluation.backtest import parse_since
    from psatriage.shared.limits import patience

    with fail_cleanly():
        start = parse_since(since)
        end = parse_until(until, start)
        if csv_file is not None:
            writable_file(csv_file, "the CSV file")
    params = Params(start, end, only_uncategorized, limit, dry_run, since, until or "")
    counts = [0, 0]
    with runtime() as built, patience(WAIT_FOR_ROOM_SECONDS), _bar() as progress_bar:
        built.tenant(tenant)
        what = "dry run" if dry_run else "backfill"
        task = progress_bar.add_task(f"{what} {tenant}: listing tickets", total=None)

        def progress(done: int, total: int) -> None:
            counts[:] = [done, total]
            progress_bar.update(task, description=f"{what} {tenant}", completed=done, total=total)

        try:
            outcome = backfill(built, tenant, params, progress=progress)
        except KeyboardInterrupt:
            progress_bar.stop()
            errors.print(
                f"interrupted after {counts[0]} of {counts[1]} tickets; what was done is kept: "
                "run the same command again to resume",
                highlight=False,
            )
            raise typer.Exit(INTERRUPTED) from None
        except Stopped as exc:
            progress_bar.stop()
            errors.print(
                Text.assemble(
                    ("stopped", "red"),
                    f" after {counts[0]} of {counts[1]} tickets: {exc}; fix it, then run the "
                    "same command again to resume",
                ),
                highlight=False,
            )
            raise typer.Exit(1) from None
    if outcome.resumed:
        errors.print(f"resumed: {outcome.resumed} tickets were done by an earlier run")
    _summary(tenant, dry_run, outcome.total, outcome.results)
    if csv_file is not None:
        with fail_cleanly():
            _write_csv(csv_file, outcome.results)
    retry = sum(1 for _, state, _ in outcome.results if state == "retry")
    if retry:
        errors.print(
            f"{retry} tickets failed for a passing reason; the same command tries them again",
            highlight=False,
        )


def _summary(tenant: str, dry_run: bool, total: int, results: list[Any]) -> None:
    states: Counter[str] = Counter()
    for _, state, result in results:
        states[result.get("outcome") or state] += 1
    listed = ", ".join(f"{name} {count}" for name, count in sorted(states.items())) or "none"
    said = " (dry run: nothing written)" if dry_run else ""
    console.print(f"{tenant}: {total} tickets; {listed}{said}", highlight=False)


def _write_csv(path: Path, results: list[tuple[str, str, dict[str, Any]]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for ticket, state, result in results:
                writer.writerow({"ticket": ticket, **result, "state": state})
    except OSError as exc:
        raise ConfigError(
            f"cannot write the CSV file {path} ({exc.strerror}); the results are kept: the "
            "same command writes them again"
        ) from None


@app.command("export")
def export_command(
    tenant: TenantName,
    since: Since,
    until: Until = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write to this file (resumable) instead of standard output."),
    ] = None,
) -> None:
    """Write the tenant's closed, categorized tickets as JSON Lines (id, title, description,
    labels.category, labels.category_path), the form eval --data and train --data read. With
    --out, an interrupted export resumes when the same command runs again."""
    from psatriage.bulk import parse_until
    from psatriage.bulk.export import export
    from psatriage.evaluation.backtest import parse_since
    from psatriage.shared.limits import patience

    with fail_cleanly():
        start = parse_since(since)
        end = parse_until(until, start)
        if out is not None:
            writable_file(out, "the output file")
    with runtime() as built, patience(WAIT_FOR_ROOM_SECONDS), _bar() as progress_bar:
        built.tenant(tenant)
        task = progress_bar.add_task(f"export {tenant}", total=None)

        def progress(done: int, total: int, written: int) -> None:
            progress_bar.update(
                task,
                description=f"export {tenant}: {written} tickets",
                completed=done,
                total=total,
            )

        try:
            outcome = export(
                built, tenant, start, end, out=out, stdout=sys.stdout, progress=progress
            )
        except KeyboardInterrupt:
            progress_bar.stop()
            again = (
                "run the same command again to resume"
                if out is not None
                else "use --out FILE to be able to resume"
            )
            errors.print(f"interrupted; {again}", highlight=False)
            raise typer.Exit(INTERRUPTED) from None
        except BrokenPipeError:  # the reader went away (| head)
            raise typer.Exit(1) from None
    if outcome.resumed_windows:
        errors.print(
            f"resumed: {outcome.resumed_windows} weeks were exported by an earlier run",
            highlight=False,
        )
    where = f" to {out}" if out is not None else ""
    errors.print(f"exported {outcome.total} closed tickets of {tenant}{where}", highlight=False)
