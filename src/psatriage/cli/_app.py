"""The Typer application and what every command shares: settings, logging, error display."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from psatriage.errors import PsatriageError
from psatriage.logging import configure_logging
from psatriage.runtime import Runtime
from psatriage.settings import Settings, get_settings

app = typer.Typer(
    name="psatriage",
    help="Categorize new PSA tickets into the PSA's own category tree.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


def settings() -> Settings:
    """The process settings; a bad PSATRIAGE_* value is a red message and exit code 2."""
    try:
        current = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PSATRIAGE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        errors.print(f"[red]error:[/red] {problems}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except PsatriageError as exc:
        errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    configure_logging(level=current.log_level, json=current.log_format == "json")
    return current


@contextmanager
def runtime(*, migrate: bool = True) -> Iterator[Runtime]:
    """A runtime for one command; psatriage errors become a red message and exit code 2."""
    with fail_cleanly():
        built = Runtime(settings(), migrate=migrate)
        try:
            yield built
        finally:
            built.close()


@contextmanager
def fail_cleanly() -> Iterator[None]:
    try:
        yield
    except PsatriageError as exc:
        errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
