"""``GET /api/accuracy``: a tenant's accuracy measured from outcomes (``psatriage.accuracy``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from psatriage import accuracy
from psatriage.errors import ConfigError
from psatriage.web.api import _UNAUTHORIZED, Filter, RuntimeDep, require_token
from psatriage.web.responses import AccuracyGroup, AccuracyReport, Detail

router = APIRouter(dependencies=[Depends(require_token)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    400: {"model": Detail, "description": "since is not a period or a past ISO date."},
    404: {"model": Detail, "description": "No tenant has this name."},
}


@router.get("/api/accuracy", responses=_ERRORS)
def get_accuracy(
    runtime: RuntimeDep,
    tenant: Annotated[str, Query(pattern=r"^[^\x00]*$", description="The tenant.")],
    since: Annotated[
        str, Query(pattern=r"^[^\x00]*$", description="A period (30d, 12w) or an ISO date.")
    ] = "30d",
    company: Filter = None,
) -> AccuracyReport:
    """How often the model's category was the ticket's final one, per company, category,
    engine, band, decision and day; ``company`` (id or name) narrows to one client company."""
    # imported here: the backtest module brings the local engine's training (scikit-learn,
    # SciPy), which the service otherwise never loads
    from psatriage.evaluation.backtest import parse_since  # noqa: PLC0415

    if tenant not in runtime.config.tenants:
        raise HTTPException(404, f"no tenant named {tenant!r}")
    try:
        moment = parse_since(since)
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    report = accuracy.accuracy(runtime.sessions, tenant, moment, company=company)
    groups = {name: [_group(g) for g in found] for name, found in report.groups.items()}
    return AccuracyReport(
        tenant=tenant,
        since=moment,
        overall=_group(report.overall),
        by_company=groups["company"],
        by_category=groups["category"],
        by_engine=groups["engine"],
        by_band=groups["band"],
        by_decision=groups["decision"],
        by_day=groups["day"],
    )


def _group(tally: accuracy.Tally) -> AccuracyGroup:
    return AccuracyGroup(
        key=tally.key,
        label=tally.label,
        decided=tally.decided,
        known=tally.known,
        correct=tally.correct,
        accuracy=tally.accuracy,
        states=tally.states,
    )
