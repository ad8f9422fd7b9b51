"""Per category: tickets per week, how often the outcome matched our choice, and what people
chose instead when it did not (the pairs to merge or to describe better)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from psatriage.web.console.core import (
    NavItem,
    PageNotFound,
    SignedIn,
    console_of,
    csrf_guard,
    signed_in,
)
from psatriage.web.console.queries import WEEKS, Usage

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)
NAV = NavItem("Categories", "/categories")
SPARK_WIDTH, SPARK_HEIGHT = 96, 24


@dataclass(frozen=True)
class Spark:
    """A week's bar in a category's small chart."""

    x: float
    y: float
    width: float
    height: float
    count: int


def sparkline(weekly: list[int]) -> list[Spark]:
    top = max(weekly, default=0)
    step = SPARK_WIDTH / max(len(weekly), 1)
    bars = []
    for index, count in enumerate(weekly):
        height = SPARK_HEIGHT * count / top if top else 0.0
        bars.append(
            Spark(
                round(index * step + 1, 2),
                round(SPARK_HEIGHT - height, 2),
                round(step - 2, 2),
                round(height, 2),
                count,
            )
        )
    return bars


@router.get("/categories", response_class=HTMLResponse)
def categories(
    request: Request, user: Annotated[SignedIn, Depends(signed_in)], tenant: str = ""
) -> HTMLResponse:
    console = console_of(request)
    tenants = sorted(console.runtime.config.tenants)
    if tenant and tenant not in tenants:
        raise PageNotFound(f"There is no tenant named {tenant!r}.")
    used: list[Usage] = console.queries.categories(tenant or None)
    return console.render(
        request,
        "categories.html",
        {
            "categories": [(usage, sparkline(usage.weekly)) for usage in used],
            "tenant": tenant,
            "tenants": tenants,
            "weeks": WEEKS,
            "spark": (SPARK_WIDTH, SPARK_HEIGHT),
        },
        user=user,
    )
