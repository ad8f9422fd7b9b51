"""The overview: volumes and how they ended, cost and tokens per day, each tenant's health.

The page is a list of panels (``PANELS``), each a template and a loader that gets the scope (one
tenant, or all). A new figure, such as accuracy from outcomes, is one more ``Panel``: its loader
queries, its template draws, and nothing else on the page changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from psatriage.web.console.charts import bar_chart, share_bar
from psatriage.web.console.core import (
    Console,
    NavItem,
    PageNotFound,
    SignedIn,
    console_of,
    csrf_guard,
    signed_in,
)
from psatriage.web.console.formatting import money, number
from psatriage.web.console.health import TenantCheck
from psatriage.web.console.queries import ALL, SHARE_NAMES, WINDOWS, Volume

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)
NAV = NavItem("Overview", "/")


@dataclass
class Scope:
    """What the overview shows: one tenant, or all (``tenant`` empty); shared by the panels."""

    console: Console
    tenant: str

    @cached_property
    def volumes(self) -> dict[str, Volume]:
        return self.console.queries.volumes()

    @property
    def volume(self) -> Volume:
        return self.volumes.get(self.tenant or ALL, Volume())


@dataclass(frozen=True)
class Panel:
    template: str
    load: Callable[[Scope], dict[str, Any]] = field(repr=False)


def _volume(scope: Scope) -> dict[str, Any]:
    volume = scope.volume
    shares = [(name, volume.share(name)) for name in SHARE_NAMES]
    return {"volume": volume, "windows": WINDOWS, "shares": shares, "segments": share_bar(shares)}


def _cost(scope: Scope) -> dict[str, Any]:
    days = scope.console.queries.cost_per_day(scope.tenant or None)
    labels = [day.day.strftime("%b %d") for day in days]
    costs = [(label, day.cost_usd) for label, day in zip(labels, days, strict=True)]
    tokens = [(label, float(day.tokens)) for label, day in zip(labels, days, strict=True)]
    return {
        "cost_chart": bar_chart("Cost per day (USD)", costs, shown=money),
        "tokens_chart": bar_chart("Tokens per day", tokens, shown=number),
        "total_cost": sum(day.cost_usd for day in days),
        "total_tokens": sum(day.tokens for day in days),
    }


def _accuracy(scope: Scope) -> dict[str, Any]:
    days = scope.console.queries.accuracy_per_day(scope.tenant or None)
    points = [(day.day.strftime("%b %d"), day.share) for day in days]
    known = sum(day.known for day in days)
    matched = sum(day.matched for day in days)
    return {
        "accuracy_chart": bar_chart(
            "Share of known outcomes that kept our category, by day decided",
            points,
            shown=lambda value: f"{value:.0%}",
        ),
        "known": known,
        "matched": matched,
        "verdicts": scope.console.queries.verdicts(scope.tenant or None),
    }


@dataclass(frozen=True)
class Health:
    name: str
    psa: str
    trigger: str
    check: TenantCheck | None
    breaker_open: bool
    last_poll: Any
    last_event: Any
    waiting: int
    open_failures: int
    problems: list[str]


def _health(scope: Scope) -> dict[str, Any]:
    console, runtime = scope.console, scope.console.runtime
    problems = runtime.problems()
    names = [scope.tenant] if scope.tenant else sorted(runtime.config.tenants)
    rows = []
    for name in names:
        tenant = runtime.config.tenants[name]
        mark = runtime.polls.get(name) if tenant.polls else None
        volume = scope.volumes.get(name, Volume())
        rows.append(
            Health(
                name=name,
                psa=tenant.psa,
                trigger=tenant.trigger.value,
                check=console.health.cached(name),
                breaker_open=console.health.breaker_open(name),
                last_poll=mark.updated_at if mark else None,
                last_event=console.queries.last_event(name),
                waiting=volume.waiting,
                open_failures=volume.open_failures,
                problems=problems.get(name, []),
            )
        )
    return {"health": rows, "queued_jobs": _queued_jobs(console)}


def _queued_jobs(console: Console) -> int | None:
    try:
        return console.runtime.ledger.waiting()
    except Exception:  # noqa: BLE001 - an unreachable database is shown as such, not as an error
        return None


PANELS: list[Panel] = [
    Panel("overview/volume.html", _volume),
    Panel("overview/accuracy.html", _accuracy),
    Panel("overview/cost.html", _cost),
    Panel("overview/health.html", _health),
]


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request, user: Annotated[SignedIn, Depends(signed_in)], tenant: str = ""
) -> HTMLResponse:
    console = console_of(request)
    tenants = sorted(console.runtime.config.tenants)
    if tenant and tenant not in tenants:
        raise PageNotFound(f"There is no tenant named {tenant!r}.")
    scope = Scope(console, tenant)
    panels = [(panel.template, panel.load(scope)) for panel in PANELS]
    return console.render(
        request,
        "overview.html",
        {"tenants": tenants, "tenant": tenant, "panels": panels},
        user=user,
    )
