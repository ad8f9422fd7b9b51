"""The ``psatriage`` command."""

from __future__ import annotations

from psatriage.cli import (
    admin,
    backtest,
    bulk,
    categorize,
    events,
    init,
    model,
    purge,
    readiness,
    report,
    report_accuracy,
    review,
    serve,
    tenants,
    train,
    users,
)
from psatriage.cli import eval as evaluate
from psatriage.cli._app import app

__all__ = ["app", "main"]

_COMMANDS = (
    admin,
    backtest,
    bulk,
    categorize,
    evaluate,
    events,
    init,
    model,
    purge,
    readiness,
    report,
    report_accuracy,
    review,
    serve,
    tenants,
    train,
    users,
)  # imported for their commands


def main() -> None:
    app()
