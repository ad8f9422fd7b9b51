"""``psatriage events``: see what happened to tickets, and run failed ones again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from psatriage.cli._app import app, console, fail, runtime

events_app = typer.Typer(help="The events ledger: list and retry.", no_args_is_help=True)
app.add_typer(events_app, name="events")

TenantOption = Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")]


def _state(value: str | None) -> str | None:
    """An event state (checked here, not by a choice list: the states live with the tables)."""
    from psatriage.store.tables import EventState

    known = [state.value for state in EventState]
    if value is not None and value not in known:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, known))}")
    return value


@events_app.command("list")
def events_list(
    tenant: TenantOption = None,
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="Only events in this state.", callback=_state),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
) -> None:
    """The newest events, with their state and reason."""
    with runtime() as built:
        table = Table("id", "tenant", "ticket", "state", "attempts", "received", "reason")
        found = built.ledger.search(tenant=tenant, state=state, limit=limit)
        if tenant is not None and not found and tenant not in built.config.tenants:
            built.tenant(tenant)  # neither configured nor in the ledger: one line, exit 2
        for row in found:
            table.add_row(
                str(row.id),
                row.tenant,
                row.ticket_id,
                row.state,
                str(row.attempts),
                row.received_at.isoformat(timespec="seconds"),
                row.reason,
            )
        console.print(table)


@events_app.command("retry")
def events_retry(
    event_ids: Annotated[
        list[int] | None, typer.Argument(help="Event ids (default: see --failed).")
    ] = None,
    failed: Annotated[
        bool,
        typer.Option("--failed", help="Every failed, parked or over-budget event (of --tenant)."),
    ] = False,
    tenant: TenantOption = None,
) -> None:
    """Queue failed, parked or over-budget events again; a running service (or worker)
    processes them.

    Exits 1 when a named event does not exist."""
    from psatriage.store.tables import EventState

    if not event_ids and not failed:
        raise typer.BadParameter("name event ids, or pass --failed")
    with runtime() as built:
        named = sorted(set(event_ids or []))
        missing = [event_id for event_id in named if built.ledger.get(event_id) is None]
        chosen = [event_id for event_id in named if event_id not in missing]
        if failed:
            for state in (EventState.FAILED, EventState.PARKED, EventState.OVER_BUDGET):
                chosen += [
                    r.id for r in built.ledger.search(tenant=tenant, state=state, limit=1000)
                ]
        reopened = built.ledger.reopen(chosen) if chosen else []
        if reopened:
            built.queue.wake()
        skipped = sorted(set(chosen) - set(reopened))
        console.print(f"queued again: {len(reopened)} event(s) {reopened}", highlight=False)
        if skipped:
            console.print(
                f"not failed, parked or over budget, left alone: {skipped}", highlight=False
            )
        if missing:
            raise fail(
                f"no event with the id(s) {missing}; fix: see `psatriage events list`", code=1
            )
