"""``psatriage tenants``: each tenant's queue, and pausing or resuming one.

A paused tenant's deliveries are still accepted and recorded in the ledger; the workers leave
them there until the tenant is resumed. Nothing is lost and nothing needs sending again.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from psatriage.cli._app import app, console, runtime
from psatriage.runtime import Runtime
from psatriage.store.users import Audit

tenants_app = typer.Typer(help="Each tenant's queue; pause and resume.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")

TenantArgument = Annotated[str, typer.Argument(help="The tenant's name in the tenants file.")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@tenants_app.command("list")
def tenants_list() -> None:
    """Every tenant: paused or running, events waiting and in progress, last claim."""
    with runtime() as built:
        table = Table("tenant", "psa", "state", "waiting", "processing", "last claim")
        for row in built.tenant_states.overview(built.config.tenants):
            tenant = built.config.tenants.get(row.tenant)
            if row.paused:
                since = row.paused_at.isoformat(timespec="seconds") if row.paused_at else "?"
                state = f"paused since {since} by {row.paused_by or '?'}"
            else:
                state = "running" if tenant is not None else "not configured"
            claimed = row.last_claim_at.isoformat(timespec="seconds") if row.last_claim_at else ""
            table.add_row(
                row.tenant,
                tenant.psa if tenant else "",
                state,
                str(row.waiting),
                str(row.processing),
                claimed,
            )
        console.print(table)


@tenants_app.command("pause")
def tenants_pause(tenant: TenantArgument) -> None:
    """Stop working on a tenant's events; its deliveries are still recorded."""
    with runtime() as built:
        built.tenant(tenant)  # a tenant the file does not name is an error
        actor = _actor()
        changed = built.tenant_states.pause(tenant, by=actor)
        if changed:
            _audit(built, actor, "tenant_pause", tenant)
        console.print(
            f"{tenant}: paused; its events wait in the ledger until `psatriage tenants resume "
            f"{tenant}`"
            if changed
            else f"{tenant}: already paused",
            highlight=False,
        )


@tenants_app.command("resume")
def tenants_resume(tenant: TenantArgument) -> None:
    """Work on a paused tenant's events again, the oldest first."""
    with runtime() as built:
        built.tenant(tenant)
        changed = built.tenant_states.resume(tenant)
        if changed:
            _audit(built, _actor(), "tenant_resume", tenant)
            built.queue.wake()
        console.print(
            f"{tenant}: resumed" if changed else f"{tenant}: was not paused", highlight=False
        )


def _audit(built: Runtime, actor: str, action: str, tenant: str) -> None:
    Audit(built.sessions).record(actor, action, tenant)
