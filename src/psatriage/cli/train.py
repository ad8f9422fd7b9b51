"""``psatriage train``: fit the local engine's model on labeled tickets and store it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from psatriage.cli._app import (
    app,
    console,
    errors,
    fail_cleanly,
    runtime,
    writable_file,
)
from psatriage.errors import ConfigError
from psatriage.local_engine import DEFAULT_MIN_EXAMPLES, DataError

if TYPE_CHECKING:
    import httpx

    from psatriage.domain import LabeledTicket
    from psatriage.learning.dataset import Labeled
    from psatriage.local_engine.model import TrainedModel, TrainingReport
    from psatriage.runtime import Runtime

MIN_HISTORY_TICKETS = 10  # fewer closed, categorized tickets than this: nothing worth training
HISTORY_LABEL = "category"  # the label level of a model trained on a PSA's history


@app.command("train")
def train_command(
    label: Annotated[
        str | None,
        typer.Option("--label", "-l", help="The label level holding the category (with --data)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Labeled tickets, JSON Lines: id, title, description, labels. Without it, "
            "the tenant's closed tickets are read from its PSA."
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            help="Store the model as this tenant's active version (in the database).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="From the PSA: tickets created on or after this ISO date (UTC)."),
    ] = None,
    limit: Annotated[
        int, typer.Option(help="From the PSA: at most this many tickets, newest first.", min=1)
    ] = 5000,
    out: Annotated[Path | None, typer.Option(help="Or write the model to this file.")] = None,
    split: Annotated[
        str, typer.Option(help="Train on 'all' tickets or only the 'train' split.")
    ] = "all",
    min_examples: Annotated[
        int, typer.Option(help="Fewer examples than this: the category stays zero-shot.", min=1)
    ] = DEFAULT_MIN_EXAMPLES,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train the local engine on labeled tickets; the report says how well it did.

    With --tenant the model becomes the tenant's active version (see 'psatriage model list');
    read from the PSA, the tenant's labeled examples (corrections, fills, reviews) are learned
    with its closed tickets, an example winning over the history of the same ticket."""
    from psatriage.config import TENANT_NAME
    from psatriage.learning.versions import ModelVersions

    with fail_cleanly():
        if (tenant is None) == (out is None):
            raise ConfigError("give exactly one of --tenant (store a version) or --out FILE")
        if tenant is not None and not TENANT_NAME.match(tenant):
            raise ConfigError(f"{tenant!r} is not a tenant name")
        if out is not None:
            writable_file(out, "the model file")
        if data is None and tenant is None:
            raise ConfigError(
                "--data FILE is needed with --out; or train on a tenant's closed tickets "
                "in its PSA with --tenant T"
            )
        if data is not None:
            if label is None:
                raise ConfigError("--label LEVEL is needed with --data: the level to learn")
            if split not in {"all", "train"}:
                raise ConfigError("--split must be 'all' or 'train'")
    if tenant is None:
        assert out is not None and data is not None and label is not None
        with fail_cleanly():
            model = _train_from_file(data, label, split, min_examples)
            model.save(out)
        _show(model.report, str(out), as_json)
        return
    with runtime() as built:
        built.config.tenant(tenant)  # an unknown tenant is one line, before any work
        extra: dict[str, int] = {}
        learned: list[str] = []
        if data is None:
            model, extra, learned = _train_from_psa(
                built, tenant, _since(since), limit, min_examples
            )
        else:
            assert label is not None
            model = _train_from_file(data, label, split, min_examples)
        info = ModelVersions(built.sessions).add(
            tenant, model, state="active", trigger="train", extra=extra, trained_on=learned
        )
    _show(model.report, f"{tenant} {info.name} (active)", as_json, extra)


def _train_from_file(data: Path, label: str, split: str, min_examples: int) -> TrainedModel:
    from psatriage.local_engine.data import labeled, read_examples, select
    from psatriage.local_engine.embed import shared_embedder
    from psatriage.local_engine.training import train

    examples = select(read_examples(data), "all" if split == "all" else "train")
    pairs = labeled(examples, label, data)
    errors.print(f"training on {len(pairs)} tickets of {data.name}…", highlight=False)
    return train(
        [e.text for e, _ in pairs],
        [v for _, v in pairs],
        shared_embedder(),
        label=label,
        source=data.name,
        min_examples=min_examples,
    )


def _show(
    report: TrainingReport, where: str, as_json: bool, extra: dict[str, int] | None = None
) -> None:
    if as_json:
        print(json.dumps({"stored": where, **report.to_dict(), **(extra or {})}, indent=2))
        return
    table = Table("", "", title=f"model {report.version or where}")
    table.add_row("stored", where)
    table.add_row("trained on", f"{report.examples} tickets, {report.classes} categories")
    if extra:
        table.add_row(
            "of which",
            f"{extra['history_tickets']} from history, {extra['example_tickets']} labeled "
            f"examples ({extra['history_overridden']} overriding history)",
        )
    table.add_row("cross-validated accuracy", f"{report.cv_accuracy:.3f}")
    table.add_row("cross-validated macro-F1", f"{report.cv_macro_f1:.3f}")
    table.add_row("calibration error (ECE)", f"{report.cv_ece:.3f}")
    table.add_row("took", f"{report.seconds:.1f} s")
    if report.zero_shot:
        listed = ", ".join(f"{k} ({v})" for k, v in list(report.zero_shot.items())[:10])
        more = len(report.zero_shot) - 10
        table.add_row(
            f"zero-shot (< {report.min_examples} examples)",
            listed + (f" and {more} more" if more > 0 else ""),
        )
    console.print(table)


def _since(value: str | None) -> datetime:
    """``--since`` as naive UTC (an ISO date or date-time); a year ago by default."""
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None) - timedelta(days=365)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r} is not an ISO date such as 2025-01-31") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class _CallCounter:
    """Counts the answers the PSA gives on ``client`` (every adapter call goes through it), so
    a long read of history shows that it moves."""

    def __init__(self, client: httpx.Client) -> None:
        self.count = 0
        self.on_call: Callable[[int], None] = lambda _: None
        hooks = client.event_hooks
        hooks["response"] = [*hooks.get("response", []), self._counted]
        client.event_hooks = hooks

    def _counted(self, _response: httpx.Response) -> None:
        self.count += 1
        self.on_call(self.count)


HISTORY_PATIENCE_SECONDS = 3600.0
"""How long reading a PSA's history may wait for room under the tenant's call limits."""


def _train_from_psa(
    built: Runtime, tenant: str, since: datetime, limit: int, min_examples: int
) -> tuple[TrainedModel, dict[str, int], list[str]]:
    """Read the tenant's closed, categorized tickets from its PSA and fit a model on them
    together with its labeled examples (an example wins over history for the same ticket);
    returns the model, what it was trained on and the ids of the tickets it learned."""
    from psatriage.learning.dataset import (
        from_examples,
        from_history,
        training_set,
    )
    from psatriage.learning.retrain import fit
    from psatriage.local_engine.embed import shared_embedder
    from psatriage.shared.limits import patience
    from psatriage.store.examples import list_examples

    # the PSA's call limits are waited out, as there is no queue to reschedule on
    adapter = built.adapter(tenant)
    examples = from_examples(list_examples(built.sessions, tenant=tenant))
    history: list[LabeledTicket] = []
    if adapter.can_list_history():
        reading = (
            f"reading up to {limit} closed tickets of {tenant} ({adapter.kind}) "
            f"created since {since:%Y-%m-%d}"
        )
        calls = _CallCounter(built.http)
        started = time.monotonic()
        with patience(HISTORY_PATIENCE_SECONDS), errors.status(f"{reading}…") as status:
            calls.on_call = lambda n: status.update(f"{reading}: {n} calls to the PSA so far…")
            history = adapter.list_labeled_tickets(since, limit)
        errors.print(
            f"read {len(history)} closed, categorized tickets of {tenant} in {calls.count} calls "
            f"to the PSA ({time.monotonic() - started:.0f} s)",
            highlight=False,
        )
    elif not examples:
        raise ConfigError(
            f"tenant {tenant!r}: the {adapter.kind} adapter cannot read closed tickets and the "
            "tenant has no labeled examples yet; export tickets as JSON Lines and use --data FILE"
        )
    data = training_set(from_history(history), examples)
    if len(data.items) < MIN_HISTORY_TICKETS:
        raise DataError(
            f"tenant {tenant!r}: {adapter.kind} has {len(history)} closed, categorized "
            f"tickets created since {since:%Y-%m-%d} and the tenant {len(examples)} labeled "
            f"examples; at least {MIN_HISTORY_TICKETS} together are needed (try an earlier "
            "--since)"
        )
    categories = len({t.key for t in data.items})
    errors.print(
        f"training on {data.history} closed tickets and {data.examples} labeled examples of "
        f"{tenant} in {categories} categories…",
        highlight=False,
    )
    model = fit(
        data.items,
        shared_embedder(),
        source=f"{tenant} ({adapter.kind} history and examples)",
        min_examples=min_examples,
    )
    _train_fields(built, tenant, from_history(history), min_examples)
    return model, data.describe(), [i.ticket_id for i in data.items]


def _train_fields(built: Runtime, tenant: str, history: list[Labeled], min_examples: int) -> None:
    """The local engine's models of the tenant's enabled fields (priority, routing, noise), on
    the values its closed tickets ended with; each replaces the field's earlier model."""
    from psatriage.learning.fields import train_fields
    from psatriage.local_engine.embed import shared_embedder

    trained = train_fields(
        built.config.tenant(tenant), history, shared_embedder(), min_examples=min_examples
    )
    built.field_models.store(tenant, trained)
    for name, model in trained.items():
        if isinstance(model, str):
            errors.print(f"field {name}: not learned ({model})", highlight=False)
            continue
        report = model.report
        errors.print(
            f"field {name}: learned from {report.examples} tickets, {report.classes} values; "
            f"cross-validated accuracy {report.cv_accuracy:.3f}",
            highlight=False,
        )
