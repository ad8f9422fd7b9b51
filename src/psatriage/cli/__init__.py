"""The ``psatriage`` command."""

from __future__ import annotations

from psatriage.cli import admin, categorize, events, serve
from psatriage.cli._app import app

__all__ = ["app", "main"]

_COMMANDS = (admin, categorize, events, serve)  # imported for their commands


def main() -> None:
    app()
