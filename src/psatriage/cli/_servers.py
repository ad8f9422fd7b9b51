"""One line for a database or queue server that cannot be used, naming the variable to fix.

The exception's class tells which server failed: the database is only reached through
SQLAlchemy (which wraps its driver's errors), while the queue and the stores that share its
server (call limits, HaloPSA tokens) use redis-py, psycopg and sqlite3 directly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import redis.exceptions
from alembic.util import CommandError
from sqlalchemy import exc as sa
from sqlalchemy.engine import make_url

from psatriage import __version__
from psatriage.settings import Settings
from psatriage.store import db

_QUEUE_ERRORS = (redis.exceptions.ConnectionError, psycopg.OperationalError, sqlite3.Error)
# what a server says when it refuses the login rather than the connection
_LOGIN_REFUSED = (
    "password authentication failed",
    "role ",
    "no pg_hba.conf entry",
    "noauth",
    "wrongpass",
    "invalid password",
    "invalid username-password",
    "authentication required",
)


def server_problem(error: BaseException, settings: Settings) -> str | None:
    """The one-line message for ``error`` when a server behind ``settings`` caused it, else None."""
    database = "PSATRIAGE_DATABASE_URL" if settings.database_url else "PSATRIAGE_DATA_DIR"
    if isinstance(error, CommandError) and "Can't locate revision" in str(error):
        revision = str(error).rsplit(" ", 1)[-1]
        return (
            f"{database}: the database at {_without_password(settings.effective_database_url)} "
            f"is at revision {revision}, which psatriage {__version__} (up to "
            f"{db.head_revision()!r}) does not know: a newer version migrated it; fix: run the "
            "newer version, or restore the backup taken before the upgrade (docs/deploy.md)"
        )
    if isinstance(error, (sa.OperationalError, sa.ProgrammingError)) and _missing_schema(error):
        said = str(error.orig or error).strip().splitlines()[0]  # not the SQL it quotes
        return (
            f"{database}: the database at {_without_password(settings.effective_database_url)} "
            f"lacks what psatriage {__version__} needs ({said}); fix: run `psatriage db upgrade`"
        )
    if isinstance(error, (sa.OperationalError, sa.InterfaceError)):
        return _explain(database, settings.effective_database_url, error.orig or error)
    if isinstance(error, OSError) and error.filename is not None:
        place = Path(str(error.filename))
        for variable, url in (
            (database, settings.effective_database_url),
            (_queue_variable(settings), settings.effective_queue_url),
        ):
            folder = _sqlite_folder(url)
            if folder is not None and (place == folder or place in folder.parents):
                return (
                    f"{variable}: cannot make the folder {folder} ({error.strerror}); "
                    "fix: point it at a folder this user can write"
                )
    login = isinstance(error, redis.exceptions.AuthenticationError) or (
        isinstance(error, redis.exceptions.ResponseError) and _refused_login(str(error))
    )
    if login or isinstance(error, _QUEUE_ERRORS):
        return _explain(_queue_variable(settings), settings.effective_queue_url, error, login=login)
    return None


def _missing_schema(error: sa.DBAPIError) -> bool:
    """A table or column of ours is missing: the database is behind this version's migrations."""
    said = str(error.orig or error)
    return (
        "no such table" in said
        or "no such column" in said
        or type(error.orig).__name__ in {"UndefinedTable", "UndefinedColumn"}
    )


def _sqlite_folder(url: str) -> Path | None:
    try:
        parsed = make_url(url)
    except sa.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).parent


def _queue_variable(settings: Settings) -> str:
    return "PSATRIAGE_QUEUE_URL" if settings.queue_url else "PSATRIAGE_DATA_DIR"


def _explain(variable: str, url: str, error: BaseException, *, login: bool = False) -> str:
    said = " ".join(str(error).split()) or type(error).__name__
    shown = _without_password(url)
    if login or _refused_login(said):
        return (
            f"{variable}: the server at {shown} refused the login ({said}); "
            "fix: correct the user and password in the URL"
        )
    if url.startswith("sqlite"):
        return (
            f"{variable}: cannot open {shown} ({said}); "
            "fix: point it at a folder this user can write"
        )
    return (
        f"{variable}: cannot use the server at {shown} ({said}); "
        "fix: start the server, or correct the host, port and database in the URL"
    )


def _refused_login(said: str) -> bool:
    lowered = said.lower()
    return any(marker in lowered for marker in _LOGIN_REFUSED)


def _without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.ArgumentError:
        return "(an unreadable URL)"
