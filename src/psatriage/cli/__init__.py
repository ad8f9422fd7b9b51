"""The ``psatriage`` command."""

from __future__ import annotations

from psatriage.cli import admin, categorize, events, serve, train, users
from psatriage.cli import eval as evaluate
from psatriage.cli._app import app

__all__ = ["app", "main"]

# imported for their commands
_COMMANDS = (admin, categorize, evaluate, events, serve, train, users)


def main() -> None:
    app()
