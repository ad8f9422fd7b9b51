"""What every command shares: the global options, help, completion, and one-line errors for a
database or queue server that cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import typer.main
from typer.testing import CliRunner

from psatriage import __version__
from psatriage.cli import app
from psatriage.store import db

runner = CliRunner()


def _commands() -> Iterator[tuple[str, ...]]:
    root = typer.main.get_command(app)

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        ctx = typer.Context(command)  # type: ignore[arg-type]
        names = command.list_commands(ctx) if hasattr(command, "list_commands") else None
        if names is None:
            yield path
            return
        for name in names:
            yield from walk(command.get_command(ctx, name), (*path, name))  # type: ignore[attr-defined]

    yield from walk(root, ())


# Every command, and what it is given when a server is broken. The ones that use the database
# (all but the offline ones) must answer a broken one with one line naming the variable.
USE_THE_DATABASE: dict[tuple[str, ...], list[str]] = {
    ("categorize",): ["--tenant", "acme", "--ticket", "1"],
    ("serve",): ["--port", "18122"],
    ("worker",): [],
    ("db", "upgrade"): [],
    ("events", "list"): [],
    ("events", "retry"): ["1"],
    ("tenants", "list"): [],
    ("tenants", "pause"): ["acme"],
    ("tenants", "resume"): ["acme"],
    ("webhooks", "register"): ["--tenant", "acme", "--url", "https://example.com/webhooks/acme"],
    ("taxonomy", "show"): ["--tenant", "acme"],
    ("backtest",): ["--tenant", "acme"],
    ("readiness",): ["--tenant", "acme"],
    ("train",): ["--tenant", "acme"],
    ("model", "list"): ["--tenant", "acme"],
    ("model", "promote"): ["--tenant", "acme", "v0001"],
    ("model", "rollback"): ["--tenant", "acme"],
    ("review", "list"): [],
    ("review", "accept"): ["1"],
    ("review", "correct"): ["1", "10/20"],
    ("review", "dismiss"): ["1"],
    ("backfill",): ["--tenant", "acme", "--since", "30d"],
    ("purge",): [],
    ("export",): ["--tenant", "acme", "--since", "30d"],
    ("report", "categories"): ["--tenant", "acme"],
    ("report", "automation"): ["--tenant", "acme"],
    ("report", "companies"): ["--tenant", "acme"],
    ("report", "accuracy"): ["--tenant", "acme"],
    ("users", "add"): ["someone@example.com", "--password-stdin"],
    ("users", "remove"): ["someone@example.com"],
    ("users", "passwd"): ["someone@example.com", "--password-stdin"],
    ("users", "list"): [],
}
USE_THE_QUEUE = {("serve",): ["--port", "18123"], ("worker",): []}
# offline, or reading only the tenants file and the PSA: no database or queue server involved
USE_NEITHER = {
    ("config", "check"),
    ("config", "reference"),
    ("eval",),
    ("init",),
}


def test_every_command_is_in_one_list() -> None:
    found = set(_commands())
    assert found == set(USE_THE_DATABASE) | USE_NEITHER
    assert set(USE_THE_QUEUE) <= set(USE_THE_DATABASE)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"psatriage {__version__}\n"


@pytest.mark.parametrize("command", sorted({(), *_commands()}), ids=" ".join)
def test_help_shows_flags_as_flags(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    assert "  --help " in result.stdout


def test_completion_is_on() -> None:
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    # in a process of its own: the completion script is made from the process's own state.
    # The shell is named through the completion variable, not detected: `--show-completion`
    # looks for a shell among the process's parents, and a CI job may run under none.
    script = subprocess.run(
        [str(Path(sys.executable).with_name("psatriage"))],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "_PSATRIAGE_COMPLETE": "source_bash"},
    )
    assert script.returncode == 0, script.stderr
    assert "_PSATRIAGE_COMPLETE=complete_bash" in script.stdout


def test_the_global_config_option_names_the_tenants_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[tenants.acme]\npsa = "connectwise"\nconnection = {}\n', encoding="utf-8")
    result = runner.invoke(app, ["--config", str(path), "config", "check", "--offline"])
    assert result.exit_code == 2
    assert f"{path}: invalid tenants file" in result.stderr
    missing = runner.invoke(app, ["-c", str(tmp_path / "none.toml"), "config", "check"])
    assert missing.exit_code == 2 and "none.toml" in missing.stderr


def test_square_brackets_in_messages_are_printed(tmp_path: Path) -> None:
    empty = tmp_path / "taxonomy.toml"
    empty.write_text("levels = []\n", encoding="utf-8")
    result = runner.invoke(
        app, ["categorize", "--engine", "local", "--taxonomy", str(empty), "Printer jam"]
    )
    assert result.exit_code == 2
    assert "fix: add [[category]] tables with a path" in result.stderr


def _broken(
    variable: str, url: str, tmp_path: Path, commands: dict[tuple[str, ...], list[str]]
) -> list[tuple[tuple[str, ...], str]]:
    env = {"PSATRIAGE_DATA_DIR": str(tmp_path / "data"), variable: url}
    outcomes = []
    for command, arguments in sorted(commands.items()):
        result = runner.invoke(app, [*command, *arguments], env=env)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.count("\n") == 1, (command, result.stderr)
        assert "Traceback" not in result.output
        outcomes.append((command, result.stderr))
    return outcomes


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "postgresql://postgres@127.0.0.1:1/psatriage",
            "error: PSATRIAGE_DATABASE_URL: cannot use the server at "
            "postgresql://postgres@127.0.0.1:1/psatriage (",
        ),
        (
            "mysql://psatriage:hunter2@db/psatriage",
            "error: PSATRIAGE_DATABASE_URL: unsupported scheme 'mysql'; fix: use sqlite:///PATH "
            "or postgresql://",
        ),
        ("db.example.com/psatriage", "error: PSATRIAGE_DATABASE_URL: not a URL; fix: use"),
    ],
    ids=["unreachable", "unsupported", "not-a-url"],
)
def test_a_database_that_cannot_be_used_is_one_line_for_every_command(
    url: str, says: str, tmp_path: Path
) -> None:
    for _, said in _broken("PSATRIAGE_DATABASE_URL", url, tmp_path, USE_THE_DATABASE):
        assert said.startswith(says), said
        assert "hunter2" not in said


@pytest.mark.postgres
def test_a_refused_database_login_is_one_line(postgres_url: str, tmp_path: Path) -> None:
    parts = urlsplit(postgres_url)
    wrong = urlunsplit(parts._replace(netloc=f"nobody:hunter2@{parts.hostname}:{parts.port}"))
    for _, said in _broken("PSATRIAGE_DATABASE_URL", wrong, tmp_path, USE_THE_DATABASE):
        assert said.startswith(
            f"error: PSATRIAGE_DATABASE_URL: the server at {wrong.replace('hunter2', '***')} "
            "refused the login ("
        ), said
        assert said.endswith("fix: correct the user and password in the URL\n")
        assert "hunter2" not in said


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:1/0", "cannot use the server at redis://127.0.0.1:1/0 (Error 111"),
        ("amqp://guest:guest@127.0.0.1/", "unsupported scheme 'amqp'; fix: use sqlite:///PATH, "),
    ],
    ids=["unreachable", "unsupported"],
)
def test_a_queue_that_cannot_be_used_is_one_line(url: str, says: str, tmp_path: Path) -> None:
    for _, said in _broken("PSATRIAGE_QUEUE_URL", url, tmp_path, USE_THE_QUEUE):
        assert said.startswith(f"error: PSATRIAGE_QUEUE_URL: {says}"), said


@pytest.mark.redis
def test_a_refused_queue_login_is_one_line(redis_url: str, tmp_path: Path) -> None:
    parts = urlsplit(redis_url)
    wrong = urlunsplit(parts._replace(netloc=f"nobody:hunter2@{parts.hostname}:{parts.port}"))
    for _, said in _broken("PSATRIAGE_QUEUE_URL", wrong, tmp_path, USE_THE_QUEUE):
        assert said.startswith("error: PSATRIAGE_QUEUE_URL: the server at "), said
        assert "refused the login" in said and "hunter2" not in said


def test_an_unwritable_default_database_names_the_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = runner.invoke(app, ["events", "list"], env={"PSATRIAGE_DATA_DIR": str(blocker)})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: PSATRIAGE_DATA_DIR: ")


def test_a_database_from_a_newer_version_is_one_line(tmp_path: Path) -> None:
    env = {"PSATRIAGE_DATA_DIR": str(tmp_path)}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    engine = db.make_engine(f"sqlite:///{tmp_path / 'psatriage.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    for command in (["db", "upgrade"], ["events", "list"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: PSATRIAGE_DATA_DIR: the database at sqlite:///{tmp_path / 'psatriage.db'} "
            f"is at revision '9999', which psatriage {__version__} (up to "
            f"'{db.head_revision()}') does not know: a newer version migrated it; fix: run the "
            "newer version, or restore the backup taken before the upgrade (docs/deploy.md)\n"
        )


def test_a_database_missing_a_table_names_db_upgrade(tmp_path: Path) -> None:
    env = {"PSATRIAGE_DATA_DIR": str(tmp_path)}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    engine = db.make_engine(f"sqlite:///{tmp_path / 'psatriage.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE events")
    engine.dispose()
    result = runner.invoke(app, ["events", "list"], env=env)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: PSATRIAGE_DATA_DIR: the database at sqlite:///{tmp_path / 'psatriage.db'} "
        f"lacks what psatriage {__version__} needs (no such table: events); fix: run "
        "`psatriage db upgrade`\n"
    )
