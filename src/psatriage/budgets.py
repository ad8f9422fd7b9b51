"""Per-tenant model budgets: ``max_model_calls_per_day`` and ``max_cost_per_month``.

The pipeline asks ``check`` before a ticket's model call; a tenant whose budget is reached gets
``OverBudget`` (its events end ``over_budget``). The meter is ``psatriage.store.usage`` (every
model call counted as it is recorded, in the database, so every worker process sees it);
``meters`` is what ``/readyz`` and ``/metrics`` show. Tickets in flight when the limit is reached
still finish, so a busy tenant may go a few calls past it (at most one per worker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Gauge

from psatriage.config import Tenant
from psatriage.errors import OverBudget
from psatriage.store.usage import Spent, Usage

BUDGET_USED = Gauge(
    "psatriage_budget_used",
    "What a tenant used of its budget: model calls today, or estimated USD this month (UTC).",
    ["tenant", "budget"],
)
BUDGET_LIMIT = Gauge(
    "psatriage_budget_limit",
    "The tenant's budget: max_model_calls_per_day or max_cost_per_month.",
    ["tenant", "budget"],
)
OVER_BUDGET = Gauge(
    "psatriage_over_budget",
    "1 while the tenant's budget is reached (its tickets are recorded as over_budget).",
    ["tenant"],
)

CALLS, COST = "model_calls_per_day", "cost_per_month"


@dataclass(frozen=True, slots=True)
class Meter:
    """A tenant's budget and what it used of it."""

    calls_today: int
    max_model_calls_per_day: int | None
    cost_this_month: float
    max_cost_per_month: float | None

    @property
    def reached(self) -> str | None:
        """Why the budget is reached, in words, or None."""
        calls, cost = self.max_model_calls_per_day, self.max_cost_per_month
        if calls is not None and self.calls_today >= calls:
            return (
                f"model budget reached: {self.calls_today} of {calls} model calls today "
                "(budget.max_model_calls_per_day, UTC day)"
            )
        if cost is not None and self.cost_this_month >= cost:
            return (
                f"model budget reached: ${self.cost_this_month:.2f} of ${cost:.2f} this month "
                "(budget.max_cost_per_month, UTC month)"
            )
        return None


def meter(tenant: Tenant, usage: Usage, at: datetime | None = None) -> Meter | None:
    """The tenant's meter (None when it has no budget), and the gauges set to it."""
    budget = tenant.budget
    if not budget.limited:
        return None
    spent: Spent = usage.spent(tenant.name, at)
    found = Meter(
        calls_today=spent.calls_today,
        max_model_calls_per_day=budget.max_model_calls_per_day,
        cost_this_month=spent.cost_this_month,
        max_cost_per_month=budget.max_cost_per_month,
    )
    _publish(tenant.name, found)
    return found


def check(tenant: Tenant, usage: Usage, at: datetime | None = None) -> None:
    """Raise ``OverBudget`` if the tenant's budget is reached (nothing to do without one)."""
    found = meter(tenant, usage, at)
    reason = found.reached if found is not None else None
    if reason is not None:
        error = OverBudget(reason)
        error.model_related = True  # the tenant's error note may say why nothing was done
        raise error


def meters(tenants: Mapping[str, Tenant], usage: Usage) -> dict[str, Meter]:
    """Every budgeted tenant's meter (one small query each), for ``/readyz`` and ``/metrics``."""
    found = {}
    for name in sorted(tenants):
        current = meter(tenants[name], usage)
        if current is not None:
            found[name] = current
    return found


def _publish(tenant: str, current: Meter) -> None:
    if current.max_model_calls_per_day is not None:
        BUDGET_USED.labels(tenant, CALLS).set(current.calls_today)
        BUDGET_LIMIT.labels(tenant, CALLS).set(current.max_model_calls_per_day)
    if current.max_cost_per_month is not None:
        BUDGET_USED.labels(tenant, COST).set(current.cost_this_month)
        BUDGET_LIMIT.labels(tenant, COST).set(current.max_cost_per_month)
    OVER_BUDGET.labels(tenant).set(1 if current.reached else 0)
