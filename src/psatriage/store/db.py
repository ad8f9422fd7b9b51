"""Engine and sessions, and the Alembic migrations that shape the database.

SQLite (the embedded default) runs in WAL mode so the web process and the worker processes can
share one file: readers never wait, and writers take turns through a write gate (below);
PostgreSQL is used as is.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar, overload

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates the folder of a SQLite file if needed."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": _BUSY_SECONDS,
                "factory": _GatedConnection,
            },
            pool_size=20,
            max_overflow=20,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


_BUSY_SECONDS = 30
_Cursor = TypeVar("_Cursor", bound=sqlite3.Cursor)

# The statements that only read: every other statement opens (or joins) a write transaction.
_READS = ("SELECT", "PRAGMA", "EXPLAIN")


_LOCK_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


class _WriteGate:
    """One writing transaction at a time on a SQLite file, across the threads of a process (a
    lock) and across processes (``flock`` on a file beside the database).

    SQLite allows one writer and makes the others wait by sleeping and trying again, up to 100 ms
    a try; with a web process and a worker process of many threads all writing, those sleeps,
    not the writes, set the time a webhook waits for its acknowledgement and a ticket for its
    claim. Waiting on the gate instead wakes the next writer as soon as the last one commits.
    """

    def __init__(self, database: str) -> None:
        self._path = database + ".write.lock"
        self._lock = threading.Lock()
        self._held: int | None = None  # the lock file's descriptor while a turn is taken

    def acquire(self) -> None:
        if not self._lock.acquire(timeout=_BUSY_SECONDS):
            raise sqlite3.OperationalError("database is locked")
        try:
            # opened for each turn: a file held open would outlive the engine (and be shared
            # with a forked child, whose flock would then not keep the two apart); a bare
            # descriptor, as a file object costs twice as much to open
            descriptor = os.open(self._path, _LOCK_FILE_FLAGS, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            except BaseException:
                os.close(descriptor)
                raise
            self._held = descriptor
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        descriptor, self._held = self._held, None
        try:
            if descriptor is not None:
                os.close(descriptor)  # closing the file lets the flock go
        finally:
            self._lock.release()


_gates: weakref.WeakValueDictionary[str, _WriteGate] = weakref.WeakValueDictionary()
_gates_lock = threading.Lock()


def _gate_for(database: str) -> _WriteGate | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    key = os.path.realpath(database)
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _WriteGate(key)
            _gates[key] = gate
        return gate


class _GatedConnection(sqlite3.Connection):
    """A connection that passes the write gate before its first writing statement and opens it
    again when the transaction ends (commit, rollback or close)."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._gate = _gate_for(str(database))
        self._holds_gate = False

    @overload
    def cursor(self, factory: None = None) -> sqlite3.Cursor: ...
    @overload
    def cursor(self, factory: Callable[[sqlite3.Connection], _Cursor]) -> _Cursor: ...
    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _GatedCursor)

    def before_statement(self, sql: str) -> None:
        if self._gate is None or self._holds_gate:
            return
        if sql.lstrip()[:7].upper().startswith(_READS):
            return
        self._gate.acquire()
        self._holds_gate = True

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._open_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._open_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._open_gate()

    def _open_gate(self) -> None:
        if self._holds_gate and self._gate is not None:
            self._holds_gate = False
            self._gate.release()


class _GatedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        connection = self.connection
        if isinstance(connection, _GatedConnection):
            connection.before_statement(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Self:
        connection = self.connection
        if isinstance(connection, _GatedConnection):
            connection.before_statement(sql)
        return super().executemany(sql, parameters)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest). Processes that start together
    (a web process and its workers) migrate one at a time: the others then find it done."""
    with _migration_lock(engine):
        command.upgrade(_alembic_config(engine), revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock across processes for SQLite: a file lock beside the database file (an
    in-memory database has one process). PostgreSQL migrations take an advisory lock in
    ``migrations/env.py``."""
    if engine.dialect.name != "sqlite":
        yield
        return
    database = engine.url.database or ""
    if not database or database == ":memory:":
        yield
        return
    with Path(database + ".migrate.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None before the first migration). While an upgrade is between
    two lines of migrations that a later one joins, the database holds both: they are given
    joined by "+", which is no head."""
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return "+".join(sorted(heads)) or None


def at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
