"""Users, sessions and the audit log on SQLite and PostgreSQL; the 0004 migration both ways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.errors import ConfigError
from psatriage.store import db
from psatriage.store.tables import ConsoleSessionRow, ConsoleUserRow, utcnow
from psatriage.store.users import Audit, Lifetimes, Role, Sessions, UserExists, Users

PASSWORD = "a long enough password"


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


def test_users_are_stored_with_argon2_hashes(sessions: sessionmaker[Session]) -> None:
    users = Users(sessions)
    assert users.add(" Ann@Example.com ", Role.ADMIN, PASSWORD) == "ann@example.com"
    with sessions() as session:
        stored = session.execute(select(ConsoleUserRow.password_hash)).scalar_one()
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.verify("ANN@example.com", PASSWORD) is not None
    assert users.verify("ann@example.com", PASSWORD + "x") is None
    assert users.verify("nobody", PASSWORD) is None
    with pytest.raises(UserExists, match="already exists"):
        users.add("ann@example.com", Role.VIEWER, PASSWORD)
    assert users.count() == 1


def test_passwords_and_names_are_checked(sessions: sessionmaker[Session]) -> None:
    users = Users(sessions)
    with pytest.raises(ConfigError, match="at least 12 characters"):
        users.add("ann", Role.VIEWER, "short")
    with pytest.raises(ConfigError, match="without spaces"):
        users.add("ann smith", Role.VIEWER, PASSWORD)
    assert users.count() == 0


def test_single_sign_on_users_have_no_password(sessions: sessionmaker[Session]) -> None:
    users = Users(sessions)
    users.add("alex@contoso.example", Role.REVIEWER, None)
    assert users.verify("alex@contoso.example", "") is None
    assert users.verify("alex@contoso.example", PASSWORD) is None


def test_a_new_password_or_removal_ends_sessions(sessions: sessionmaker[Session]) -> None:
    users = Users(sessions)
    store = Sessions(sessions, Lifetimes(timedelta(hours=1), timedelta(minutes=30)))
    users.add("ann", Role.ADMIN, PASSWORD)
    token, _ = store.start(user_name="ann", role=Role.ADMIN, method="password")
    assert store.find(token) is not None
    assert users.set_password("ann", "another long password")
    assert store.find(token) is None
    assert users.verify("ann", "another long password") is not None
    token, _ = store.start(user_name="ann", role=Role.ADMIN, method="password")
    assert users.remove("ann") and not users.remove("ann")
    assert store.find(token) is None
    assert not users.set_password("ann", PASSWORD)


def test_sessions_expire_and_are_cleared_out(sessions: sessionmaker[Session]) -> None:
    store = Sessions(sessions, Lifetimes(timedelta(seconds=-1), timedelta(minutes=30)))
    old, _ = store.start(user_name="ann", role=Role.VIEWER)
    assert store.find(old) is None  # already past its lifetime
    live = Sessions(sessions, Lifetimes(timedelta(hours=1), timedelta(minutes=30)))
    token, row = live.start()
    assert row.user_name is None and live.find(token) is not None
    with sessions() as session:  # starting a session cleared the expired one
        assert session.execute(select(ConsoleSessionRow.user_name)).scalars().all() == [None]
    live.end(token)
    assert live.find(token) is None


def test_failed_sign_ins_are_counted_by_name_and_address(sessions: sessionmaker[Session]) -> None:
    audit = Audit(sessions)
    for name in ("ann", "ann", "bob"):
        audit.record(name, Audit.SIGN_IN_FAILED, name, address="10.0.0.1")
    audit.record("ann", "sign_in", "ann", address="10.0.0.1")
    since = utcnow() - timedelta(minutes=1)
    assert audit.failed_sign_ins("ann", "10.0.0.1", since) == (2, 3)
    assert audit.failed_sign_ins("carl", "10.0.0.2", since) == (0, 0)
    assert audit.failed_sign_ins("ann", "10.0.0.1", utcnow() + timedelta(minutes=1)) == (0, 0)
    assert [row.action for row in audit.recent(2)] == ["sign_in", Audit.SIGN_IN_FAILED]


def test_the_console_migration_goes_down_and_up(database_url: str) -> None:
    engine = db.make_engine(database_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    config.attributes["engine"] = engine
    try:
        db.upgrade(engine)
        command.downgrade(config, "0003")
        assert not inspect(engine).has_table("console_users")
        indexes = {index["name"] for index in inspect(engine).get_indexes("decisions")}
        assert "ix_decisions_created_at" not in indexes
        db.upgrade(engine)
        assert inspect(engine).has_table("audit_log") and db.at_head(engine)
    finally:
        engine.dispose()
