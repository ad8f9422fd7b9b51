"""The Typer application and what every command shares: the global options, settings, logging
and error display.

Both consoles print text as it is (``markup=False``): ticket titles, category names and error
messages may hold square brackets (``[[category]]``), which Rich would otherwise take for markup
and swallow. Colour is added explicitly where wanted.

Start-up: ``psatriage --help`` imports every command module, so those modules import at their top
only Typer, Rich and light parts of psatriage; settings, the runtime, the database, the web app,
the model SDKs and the PSA adapters are imported inside the commands that use them
(``tests/cli/test_startup.py`` checks it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from psatriage.errors import ConfigError, PsatriageError

if TYPE_CHECKING:
    from psatriage.runtime import Runtime
    from psatriage.settings import Settings

app = typer.Typer(
    name="psatriage",
    help="Categorize new PSA tickets into the PSA's own category tree.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # plain help: Rich's panels print a flag as "--dry-run <bool>", as if it took a value
    rich_markup_mode=None,
)
console = Console(markup=False, soft_wrap=True)
errors = Console(stderr=True, markup=False, soft_wrap=True)


@dataclass
class _Globals:
    """What the options before the command said (set again on every invocation)."""

    config: Path | None = None


_globals = _Globals()


def _print_version(value: bool) -> None:
    if value:
        from psatriage import __version__

        console.print(f"psatriage {__version__}", highlight=False)
        raise typer.Exit


@app.callback()
def _options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The tenants file (instead of PSATRIAGE_CONFIG, default psatriage.toml).",
            dir_okay=False,
        ),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Categorize new PSA tickets into the PSA's own category tree."""
    _globals.config = config


def fail(message: str, *, code: int = 2) -> typer.Exit:
    """Print ``error: message`` (in red on a terminal) and return the exit to raise."""
    errors.print(Text.assemble(("error:", "red"), " ", message), highlight=False)
    return typer.Exit(code)


def settings() -> Settings:
    """The process settings; a bad PSATRIAGE_* value is a red message and exit code 2."""
    from pydantic import ValidationError

    from psatriage.logging import configure_logging
    from psatriage.settings import get_settings

    overrides = {} if _globals.config is None else {"config": _globals.config}
    try:
        current = get_settings(**overrides)
    except ValidationError as exc:
        problems = [_setting_problem(e) for e in exc.errors(include_input=False)]
        raise fail("; ".join(problems)) from None
    except PsatriageError as exc:
        raise fail(str(exc)) from None
    configure_logging(level=current.log_level, json=current.log_format == "json")
    return current


def _setting_problem(error: object) -> str:
    assert isinstance(error, dict)
    variable = "PSATRIAGE_" + "_".join(str(p) for p in error["loc"]).upper()
    context = error.get("ctx") or {}
    said = str(context["error"]) if error["type"] == "value_error" else error["msg"]
    return f"{variable}: {said}"


def writable_file(path: Path, what: str) -> None:
    """Raise ``ConfigError`` unless ``path`` can be written (folders missing on the way are
    made): so a long command fails before its work, not after."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; fix: name a file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(
            f"cannot write {what} {path}: {folder} is not a folder this user can write"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write {what} {path}: the file is read-only")


@contextmanager
def runtime(*, migrate: bool = True) -> Iterator[Runtime]:
    """A runtime for one command; psatriage errors become a red message and exit code 2."""
    from psatriage.runtime import Runtime

    current = settings()
    with fail_cleanly(current):
        built = Runtime(current, migrate=migrate)
        try:
            yield built
        finally:
            built.close()


@contextmanager
def fail_cleanly(current: Settings | None = None) -> Iterator[None]:
    """Turn psatriage errors, and a database or queue server that cannot be used (when
    ``current`` says which), into one red line and exit code 2."""
    try:
        yield
    except PsatriageError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        from psatriage.cli._servers import server_problem

        problem = server_problem(exc, current) if current is not None else None
        if problem is None:
            raise
        raise fail(problem) from None
