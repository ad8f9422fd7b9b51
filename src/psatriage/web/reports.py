"""``GET /api/reports/categories|automation|companies``: the reports of ``psatriage report``, as
JSON, from the facts in the database (the API never calls a PSA; the scheduled refresh or
``psatriage report ... --refresh`` keeps the facts current)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query

from psatriage.errors import ConfigError
from psatriage.reports import build
from psatriage.reports.build import Period
from psatriage.reports.models import AutomationReport, CategoriesReport, CompaniesReport
from psatriage.reports.period import DEFAULT_SINCE, load_period, parse_period
from psatriage.store.facts import Facts
from psatriage.web.api import RuntimeDep, require_token
from psatriage.web.responses import Detail

router = APIRouter(prefix="/api/reports", dependencies=[Depends(require_token)])

Report = TypeVar("Report", CategoriesReport, AutomationReport, CompaniesReport)
TenantName = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
Since = Annotated[
    str,
    Query(
        max_length=40,
        pattern=r"^[^\x00]*$",
        description="Tickets closed since: a span back from until (30d, 12w) or an ISO date.",
    ),
]
Until = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=r"^[^\x00]*$",
        description="Tickets closed before this ISO date (default: now).",
    ),
]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Detail, "description": "PSATRIAGE_API_TOKEN is set and the bearer is wrong."},
    404: {"model": Detail, "description": "No tenant has this name."},
    400: {"model": Detail, "description": "since or until is not a date or a span."},
}


def _report(
    runtime: RuntimeDep,
    tenant: str,
    since: str,
    until: str | None,
    make: Callable[[Period], Report],
) -> Report:
    config = runtime.config.tenants.get(tenant)
    if config is None:
        raise HTTPException(status_code=404, detail=f"no tenant named {tenant!r}")
    try:
        start, end = parse_period(since, until, names=("since", "until"))
    except ConfigError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    facts = Facts(runtime.engine, runtime.sessions)
    return make(load_period(facts, tenant, config.psa, start, end))


@router.get("/categories", responses=_RESPONSES)
def categories(
    runtime: RuntimeDep, tenant: TenantName, since: Since = DEFAULT_SINCE, until: Until = None
) -> CategoriesReport:
    """Tickets and hours per category at each level, with shares, median and p90 hours per
    ticket, and the change against the previous period."""
    return _report(runtime, tenant, since, until, build.categories)


@router.get("/automation", responses=_RESPONSES)
def automation(
    runtime: RuntimeDep, tenant: TenantName, since: Since = DEFAULT_SINCE, until: Until = None
) -> AutomationReport:
    """Automation candidates: categories by total hours, recurring category and company pairs,
    and short, frequent, alike categories, each with the hours a year it represents."""
    return _report(runtime, tenant, since, until, build.automation)


@router.get("/companies", responses=_RESPONSES)
def companies(
    runtime: RuntimeDep, tenant: TenantName, since: Since = DEFAULT_SINCE, until: Until = None
) -> CompaniesReport:
    """Per company, its tickets and hours by category (for business reviews)."""
    return _report(runtime, tenant, since, until, build.companies)
