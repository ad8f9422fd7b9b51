"""``psatriage model list|promote|rollback``: the tenant's trained model versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from psatriage.cli._app import app, console, runtime

if TYPE_CHECKING:
    from psatriage.learning.versions import VersionInfo

model_app = typer.Typer(
    help="The local engine's trained model versions of a tenant.", no_args_is_help=True
)
app.add_typer(model_app, name="model")

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")]
_STATE_STYLE = {"active": "green", "refused": "red", "retired": "dim", "candidate": ""}


@model_app.command("list")
def model_list(
    tenant: TenantOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
) -> None:
    """Every version, newest first: state, how it was trained, its report and, for a scheduled
    retrain, how it scored against the model in use."""
    from psatriage.learning.retrain import RetrainMarks
    from psatriage.learning.versions import ModelVersions

    with runtime() as built:
        settings = built.config.tenant(tenant).learning
        versions = ModelVersions(built.sessions).list(tenant)
        mark = RetrainMarks(built.sessions).get(tenant)
    if as_json:
        print(json.dumps([_as_dict(v) for v in versions], indent=2))
        return
    schedule = (
        f"scheduled retrain every {settings.retrain_every}"
        if settings.retrain_seconds is not None
        else "scheduled retrain off"
    )
    if mark is not None:
        schedule += f"; next due {mark.next_run_at:%Y-%m-%d %H:%M} UTC"
        if mark.last_run_at is not None:
            schedule += f"; last run {mark.last_run_at:%Y-%m-%d %H:%M} UTC: {mark.result}"
    if not versions:
        console.print(
            f"tenant {tenant!r} has no model versions yet (zero-shot); train one with "
            f"'psatriage train --tenant {tenant}'"
        )
        console.print(schedule, soft_wrap=True)
        return
    table = Table(
        "version", "state", "trained", "by", "tickets", "classes", "cv accuracy", "held-out",
        title=f"model versions of {tenant}",
    )  # fmt: skip
    for v in versions:
        table.add_row(
            v.name,
            Text(v.state + ("" if v.kept else " (file dropped)"), _STATE_STYLE.get(v.state, "")),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.trigger,
            _tickets(v.report),
            str(v.report.get("classes", "")),
            f"{v.report.get('cv_accuracy', 0.0):.3f}",
            _held_out(v.evaluation),
        )
    console.print(table)
    console.print(schedule, soft_wrap=True)


@model_app.command("promote")
def model_promote(
    tenant: TenantOption,
    version: Annotated[str, typer.Argument(help="The version to use, e.g. v0003.")],
) -> None:
    """Make a version the one the tenant's local engine uses (workers notice within
    reload_seconds)."""
    from psatriage.learning.versions import ModelVersions, parse_version

    with runtime() as built:
        built.config.tenant(tenant)
        info = ModelVersions(built.sessions).promote(tenant, parse_version(tenant, version))
    console.print(f"{tenant}: {info.name} is now the active model")


@model_app.command("rollback")
def model_rollback(tenant: TenantOption) -> None:
    """Go back to the version that was active before the current one."""
    from psatriage.learning.versions import ModelVersions

    with runtime() as built:
        built.config.tenant(tenant)
        left, now = ModelVersions(built.sessions).rollback(tenant)
    console.print(f"{tenant}: rolled back from {left.name} to {now.name}, now the active model")


def _tickets(report: dict[str, Any]) -> str:
    text = str(report.get("examples", ""))
    if "example_tickets" in report:
        text += f" ({report['example_tickets']} labeled)"
    return text


def _held_out(evaluation: dict[str, Any] | None) -> str:
    if not evaluation:
        return ""
    return (
        f"{evaluation['candidate_accuracy']:.3f} vs {evaluation['current']} "
        f"{evaluation['current_accuracy']:.3f} (n={evaluation['held_out']})"
    )


def _as_dict(v: VersionInfo) -> dict[str, Any]:
    return {
        "version": v.name,
        "state": v.state,
        "trigger": v.trigger,
        "kept": v.kept,
        "created_at": v.created_at.isoformat(),
        "promoted_at": v.promoted_at.isoformat() if v.promoted_at else None,
        "report": v.report,
        "evaluation": v.evaluation,
    }
