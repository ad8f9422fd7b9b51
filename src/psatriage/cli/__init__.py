"""The ``psatriage`` command."""

from __future__ import annotations

from psatriage.cli import admin, categorize, events, init, serve, train
from psatriage.cli import eval as evaluate
from psatriage.cli._app import app

__all__ = ["app", "main"]

_COMMANDS = (admin, categorize, evaluate, events, init, serve, train)  # imported for their commands


def main() -> None:
    app()
