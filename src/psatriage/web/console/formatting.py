"""Jinja filters for the console's templates: times, money, counts, shares."""

from __future__ import annotations

from datetime import datetime

from jinja2 import Environment

from psatriage.store.tables import utcnow


def ago(moment: datetime | None) -> str:
    """'3 min ago' style; the exact time goes in a title attribute beside it."""
    if moment is None:
        return "never"
    seconds = (utcnow() - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def money(value: float | None) -> str:
    if not value:
        return "$0"
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.4f}"


def number(value: float | None) -> str:
    return f"{value or 0:,.0f}"


def percent(value: float | None) -> str:
    return f"{(value or 0) * 100:.0f}%"


def install(env: Environment) -> None:
    env.filters.update(ago=ago, when=when, money=money, number=number, percent=percent)
