"""``psatriage train``: fit the local engine's model on labeled tickets and store it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from psatriage.cli._app import app, console, errors, fail_cleanly, settings
from psatriage.config import TENANT_NAME
from psatriage.engine import DEFAULT_MIN_EXAMPLES
from psatriage.errors import ConfigError


@app.command("train")
def train_command(
    label: Annotated[
        str, typer.Option("--label", "-l", help="The label level holding the category.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Labeled tickets, JSON Lines: id, title, description, labels."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="Store the model as this tenant's newest version."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Or write the model to this file.")] = None,
    split: Annotated[
        str, typer.Option(help="Train on 'all' tickets or only the 'train' split.")
    ] = "all",
    min_examples: Annotated[
        int, typer.Option(help="Fewer examples than this: the category stays zero-shot.", min=1)
    ] = DEFAULT_MIN_EXAMPLES,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train the local engine on labeled tickets; the report says how well it did."""
    from psatriage.engine.data import labeled, read_examples, select  # noqa: PLC0415
    from psatriage.engine.embed import shared_embedder  # noqa: PLC0415
    from psatriage.engine.store import ModelStore  # noqa: PLC0415
    from psatriage.engine.training import train  # noqa: PLC0415

    with fail_cleanly():
        if data is None:
            raise ConfigError(
                "--data FILE is needed: reading closed tickets from the PSA is not available "
                "yet; export them as JSON Lines (id, title, description, labels)"
            )
        if (tenant is None) == (out is None):
            raise ConfigError("give exactly one of --tenant (store a version) or --out FILE")
        if tenant is not None and not TENANT_NAME.match(tenant):
            raise ConfigError(f"{tenant!r} is not a tenant name")
        if split not in {"all", "train"}:
            raise ConfigError("--split must be 'all' or 'train'")
        examples = select(read_examples(data), "all" if split == "all" else "train")
        pairs = labeled(examples, label, data)
        errors.print(f"training on {len(pairs)} tickets of {data.name}…", highlight=False)
        model = train(
            [e.text for e, _ in pairs],
            [v for _, v in pairs],
            shared_embedder(),
            label=label,
            source=data.name,
            min_examples=min_examples,
        )
        if tenant is not None:
            store = ModelStore(settings().data_dir / "models")
            path = store.save(tenant, model)
        else:
            assert out is not None
            path = out
            model.save(path)
        report = model.report
        if as_json:
            print(json.dumps({"file": str(path), **report.to_dict()}, indent=2))
            return
        table = Table("", "", title=f"model {report.version or path.name}")
        table.add_row("file", str(path))
        table.add_row("trained on", f"{report.examples} tickets, {report.classes} categories")
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
