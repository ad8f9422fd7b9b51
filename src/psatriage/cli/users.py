"""``psatriage users``: the people who may sign in to the web console, and their roles."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from psatriage.cli._app import app, console, errors, fail_cleanly, settings
from psatriage.errors import ConfigError

if TYPE_CHECKING:
    from psatriage.store.users import Audit, Users

users_app = typer.Typer(
    help="People who may sign in to the web console (viewer, reviewer or admin).",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")


class RoleChoice(StrEnum):
    """``psatriage.store.users.Role``'s values, here so that ``--help`` need not load the store."""

    VIEWER = "viewer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


NameArgument = Annotated[str, typer.Argument(help="User name (often an e-mail address).")]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
]


@contextmanager
def _stores() -> Iterator[tuple[Users, Audit]]:
    """Users and the audit log on the migrated database (the tenants file is not needed)."""
    from psatriage.store import db
    from psatriage.store.users import Audit, Users

    current = settings()
    with fail_cleanly(current):
        engine = db.make_engine(current.effective_database_url)
        try:
            db.upgrade(engine)
            sessions = db.make_sessionmaker(engine)
            yield Users(sessions), Audit(sessions)
        finally:
            engine.dispose()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    except typer.Abort:  # the input ended before the password was given twice
        raise ConfigError(
            "no password given; fix: type it twice when asked, or pass --password-stdin "
            "with the password on the first line of standard input"
        ) from None
    return entered


@users_app.command("add")
def users_add(
    name: NameArgument,
    role: Annotated[RoleChoice, typer.Option(help="What the user may do.")] = RoleChoice.VIEWER,
    no_password: Annotated[
        bool,
        typer.Option(
            "--no-password",
            help="Single sign-on only: the user gets this role when the provider signs them in.",
        ),
    ] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user who may sign in to the console (asks for the password twice)."""
    from psatriage.store.users import Role

    with _stores() as (users, audit):
        password = None if no_password else _password(password_stdin)
        stored = users.add(name, Role(role.value), password)
        audit.record(_actor(), "user_add", stored, role.value)
        how = "single sign-on only" if no_password else "password set"
        console.print(f"added {stored} as {role.value} ({how})", highlight=False)


@users_app.command("remove")
def users_remove(name: NameArgument) -> None:
    """Remove a user and end their sessions."""
    with _stores() as (users, audit):
        if not users.remove(name):
            raise ConfigError(f"no user named {name!r}; `psatriage users list` shows them")
        audit.record(_actor(), "user_remove", name.strip().lower())
        console.print(f"removed {name.strip().lower()}; their sessions have ended", highlight=False)


@users_app.command("passwd")
def users_passwd(name: NameArgument, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password and end their sessions."""
    with _stores() as (users, audit):
        if users.get(name) is None:
            raise ConfigError(f"no user named {name!r}; `psatriage users list` shows them")
        users.set_password(name, _password(password_stdin))
        audit.record(_actor(), "user_passwd", name.strip().lower())
        console.print(f"password of {name.strip().lower()} changed; their sessions have ended")


@users_app.command("list")
def users_list() -> None:
    """The users, their roles and how they sign in."""
    with _stores() as (users, _):
        listed = users.all()
        table = Table("user", "role", "signs in with", "added")
        for user in listed:
            how = "password" if user.password_hash else "single sign-on"
            table.add_row(user.name, user.role, how, user.created_at.isoformat(timespec="seconds"))
        console.print(table)
        if not listed:
            errors.print("no users yet: psatriage users add NAME --role admin")
