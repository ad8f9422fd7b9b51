"""``psatriage categorize``: the service's pipeline, run now for one ticket."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from rich.table import Table

from psatriage import jobs, pipeline
from psatriage.cli._app import app, console, runtime
from psatriage.domain import TicketEvent
from psatriage.store.tables import EventState


@app.command()
def categorize(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")],
    ticket: Annotated[str, typer.Option("--ticket", help="The PSA's ticket id.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print; write nothing to the PSA.")
    ] = False,
) -> None:
    """Categorize one ticket of the live PSA with the tenant's settings."""
    with runtime() as built:
        built.tenant(tenant)
        if dry_run:
            result = pipeline.categorize(0, ticket, 1, built.deps(tenant), dry_run=True)
            table = Table("", "", title=f"ticket {ticket} (dry run: nothing written)")
            table.add_row("outcome", result.outcome.value if result.outcome else "-")
            table.add_row("reason", result.reason)
            if result.chosen is not None:
                table.add_row(
                    "category", f"{result.chosen.category.label} ({result.chosen.target.key})"
                )
                for label, value in result.chosen.facets:
                    table.add_row(label, value.name)
            if result.classification is not None:
                c = result.classification
                table.add_row("confidence", f"{c.confidence:.2f} ({c.confidence_source})")
                table.add_row("reasoning", c.reasoning)
                table.add_row("model", f"{c.engine}: {c.model}")
                table.add_row("tokens", f"{c.usage.tokens_in} in / {c.usage.tokens_out} out")
            console.print(table)
            return
        event = TicketEvent(
            tenant=tenant,
            ticket_id=ticket,
            action="manual",
            actionable=True,
            dedupe_key=f"cli:{uuid.uuid4()}",
        )
        event_id, _ = built.ledger.record(event, state=EventState.RECEIVED, source="cli")
        state = jobs.process_event(built, event_id)
        row = built.ledger.get(event_id)
        decision = built.records.decision_for_event(event_id)
        console.print(f"event {event_id}: {state.value if state else 'not claimed'}")
        if row is not None and row.reason:
            console.print(f"reason: {row.reason}", highlight=False)
        if decision is not None and decision.category_label:
            console.print(
                f"category: {decision.category_label} "
                f"(confidence {decision.confidence or 0:.2f}; {decision.outcome})",
                highlight=False,
            )
        if state is not EventState.DONE and state is not EventState.KEPT:
            raise typer.Exit(1)
