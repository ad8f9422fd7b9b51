"""``psatriage purge``: let go now of what the tenants' retention settings let go."""

from __future__ import annotations

from typing import Annotated

import typer

from psatriage.cli._app import app, console, fail_cleanly, runtime


@app.command("purge")
def purge_command(
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Only this tenant (default: every one).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
) -> None:
    """Blank ticket-derived text older than each tenant's retention_days and delete events,
    decisions and model calls older than its record_retention_days, keeping their counts in the
    daily totals. Housekeeping does the same on schedule (purge_every_seconds)."""
    from psatriage import retention

    with runtime() as built, fail_cleanly():
        chosen = retention.tenants_with_retention(built.config.tenants.values(), tenant)
        for one in chosen:
            done = retention.purge(built.sessions, one, dry_run=dry_run)
            console.print(done.describe(dry_run=dry_run), highlight=False)
