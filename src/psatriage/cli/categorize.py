"""``psatriage categorize``: the service's pipeline, run now for one ticket; or, with
``--engine local --taxonomy FILE``, the offline engine on text (no PSA, no key)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from psatriage.cli import _categorize_text
from psatriage.cli._app import app, console, fail_cleanly, runtime
from psatriage.domain import Outcome, TicketEvent
from psatriage.errors import ConfigError


@app.command()
def categorize(
    text: Annotated[
        str | None, typer.Argument(help="Offline: the ticket's text (with --engine local).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant name in the file.")
    ] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="The PSA's ticket id.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print; write nothing to the PSA.")
    ] = False,
    engine: Annotated[
        str | None, typer.Option(help="Offline: 'local', the engine that needs no PSA or key.")
    ] = None,
    taxonomy: Annotated[
        Path | None, typer.Option(help="Offline: the categories, a TOML file (see examples/).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Offline: many tickets, JSON Lines.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Offline: a trained model file (default: zero-shot).")
    ] = None,
    output: Annotated[
        _categorize_text.Output, typer.Option(help="Offline: table, csv or json.")
    ] = _categorize_text.Output.TABLE,
    top: Annotated[int, typer.Option(help="Offline: alternatives shown.", min=0)] = 3,
) -> None:
    """Categorize one ticket of the live PSA with the tenant's settings (--tenant, --ticket), or
    text offline with the local engine (--engine local --taxonomy FILE "text" | --file FILE)."""
    if engine is not None or taxonomy is not None or text is not None or file is not None:
        with fail_cleanly():
            if tenant is not None or ticket is not None:
                raise ConfigError(
                    "--tenant/--ticket categorize a PSA ticket; --engine/--taxonomy/TEXT/--file "
                    "categorize offline: use one or the other"
                )
            _categorize_text.run(engine, taxonomy, text, file, model, output, top)
        return
    with fail_cleanly():
        if tenant is None or ticket is None:
            raise ConfigError(
                'give --tenant and --ticket, or --engine local --taxonomy FILE "ticket text"'
            )
    _live(tenant, ticket, dry_run)


def _live(tenant: str, ticket: str, dry_run: bool) -> None:
    from psatriage import jobs, pipeline
    from psatriage.store.tables import EventState

    with runtime() as built:
        built.tenant(tenant)
        if dry_run:
            deps = built.deps(tenant)
            result = pipeline.categorize(0, ticket, 1, deps, dry_run=True, explain_kept=True)
            table = Table("", "", title=f"ticket {ticket} (dry run: nothing written)")
            table.add_row("outcome", result.outcome.value if result.outcome else "-")
            table.add_row("reason", result.reason)
            if result.chosen is not None:
                kept = result.outcome is Outcome.KEPT
                table.add_row(
                    "the model would choose (not written)" if kept else "category",
                    f"{result.chosen.category.label} ({result.chosen.target.key})",
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
        decision = built.decisions.decision_for_event(event_id)
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
