"""``psatriage users`` and the address check of ``psatriage serve``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store import db
from psatriage.store.users import Audit, Role, Users
from psatriage.web.console import ConsoleSettings, exposure

runner = CliRunner()
PASSWORD = "a long enough password"
OPEN = "0.0.0.0"  # noqa: S104 - every interface: what the check refuses


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no tenants file: users need none
    return tmp_path


def _users(data: Path) -> tuple[Users, Audit]:
    engine = db.make_engine(f"sqlite:///{data / 'psatriage.db'}")
    sessions = db.make_sessionmaker(engine)
    return Users(sessions), Audit(sessions)


def test_add_a_user_with_a_prompted_password(data: Path) -> None:
    result = runner.invoke(
        app, ["users", "add", "Ann@Example.com", "--role", "admin"], input=f"{PASSWORD}\n" * 2
    )
    assert result.exit_code == 0, result.output
    assert "added ann@example.com as admin (password set)" in result.output
    assert PASSWORD not in result.output
    users, audit = _users(data)
    assert users.verify("ann@example.com", PASSWORD) is not None
    entry = audit.recent()[0]
    assert entry.actor.startswith("cli") and (entry.action, entry.target) == (
        "user_add",
        "ann@example.com",
    )


def test_add_reads_the_password_from_stdin_and_refuses_short_ones(data: Path) -> None:
    short = runner.invoke(app, ["users", "add", "bob", "--password-stdin"], input="short\n")
    assert short.exit_code == 2
    assert "the password is too short; fix: use at least 12 characters" in short.output
    made = runner.invoke(app, ["users", "add", "bob", "--password-stdin"], input=f"{PASSWORD}\n")
    assert made.exit_code == 0 and "bob as viewer" in made.output
    again = runner.invoke(app, ["users", "add", "bob", "--password-stdin"], input=f"{PASSWORD}\n")
    assert again.exit_code == 2 and "user 'bob' already exists" in again.output


def test_single_sign_on_users_and_the_list(data: Path) -> None:
    runner.invoke(
        app, ["users", "add", "alex@contoso.example", "--role", "reviewer", "--no-password"]
    )
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0
    assert "alex@contoso.example" in listed.output and "single sign-on" in listed.output


def test_passwd_and_remove(data: Path) -> None:
    runner.invoke(app, ["users", "add", "ann", "--password-stdin"], input=f"{PASSWORD}\n")
    changed = runner.invoke(
        app, ["users", "passwd", "ann", "--password-stdin"], input="a new long password\n"
    )
    assert changed.exit_code == 0 and "their sessions have ended" in changed.output
    users, _ = _users(data)
    assert users.verify("ann", "a new long password") is not None
    removed = runner.invoke(app, ["users", "remove", "ann"])
    assert removed.exit_code == 0
    assert users.get("ann") is None
    missing = runner.invoke(app, ["users", "remove", "ann"])
    assert missing.exit_code == 2 and "no user named 'ann'" in missing.output
    unknown = runner.invoke(
        app, ["users", "passwd", "carl", "--password-stdin"], input=f"{PASSWORD}\n"
    )
    assert unknown.exit_code == 2 and "no user named 'carl'" in unknown.output


def test_roles_are_checked(data: Path) -> None:
    result = runner.invoke(
        app, ["users", "add", "ann", "--role", "owner"], input=f"{PASSWORD}\n" * 2
    )
    assert result.exit_code == 2 and "'owner' is not one of" in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("127.0.0.5", True),
     (OPEN, False), ("::", False), ("10.0.0.5", False), ("triage.example.com", False)],
)  # fmt: skip
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert exposure.is_loopback(host) is loopback


def test_serve_refuses_an_open_address_with_no_way_to_sign_in(data: Path) -> None:
    result = runner.invoke(app, ["serve", "--host", OPEN, "--port", "18131"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "refusing to serve on 0.0.0.0" in text
    assert "psatriage users add NAME --role admin" in text and "--insecure" in text


def test_an_open_address_is_allowed_once_someone_must_sign_in(data: Path) -> None:
    nobody = ConsoleSettings()
    sso = ConsoleSettings(oidc_issuer="https://login.example/t/v2.0", oidc_client_id="c")
    runtime = Runtime(Settings(data_dir=data))
    try:
        assert exposure.refusal(OPEN, runtime, nobody) is not None
        assert exposure.refusal("127.0.0.1", runtime, nobody) is None
        assert exposure.refusal(OPEN, runtime, sso) is None
        Users(runtime.sessions).add("ann", Role.ADMIN, PASSWORD)
        assert exposure.refusal(OPEN, runtime, nobody) is None
    finally:
        runtime.close()
    token = Runtime(Settings(data_dir=data / "other", api_token="t0ken"))
    try:
        assert exposure.refusal(OPEN, token, nobody) is None
    finally:
        token.close()


def test_a_password_given_once_on_a_pipe_names_the_fix(data: Path) -> None:
    result = runner.invoke(app, ["users", "add", "ann"], input=f"{PASSWORD}\n")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "error: no password given; fix: type it twice when asked, or pass --password-stdin with "
        "the password on the first line of standard input\n"
    )
