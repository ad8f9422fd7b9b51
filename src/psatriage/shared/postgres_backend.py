"""The shared stores in PostgreSQL: a row per counted call, per held slot and per shared token.

One connection per backend, opened when first needed and shared by the process's threads (the
tables are created then, under an advisory lock so processes starting together do not race). A
dropped connection is opened again once per call; a server that stays away raises
``StoreUnavailable``. Each window and slot key is changed under a transaction-scoped advisory
lock. The refresh lock of a shared token is a session advisory lock on a connection opened for it,
so it ends with that connection, or with the process (keepalives end it for a machine that
vanished).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import structlog

from psatriage.shared.base import StoreUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
Run = Callable[..., "psycopg.Cursor[tuple[Any, ...]]"]  # a connection's ``execute``

_DDL = (
    "CREATE TABLE IF NOT EXISTS psatriage_window_calls (key text NOT NULL, "
    "at double precision NOT NULL); CREATE INDEX IF NOT EXISTS "
    "ix_psatriage_window_calls_key_at ON psatriage_window_calls (key, at); "
    "CREATE TABLE IF NOT EXISTS psatriage_call_slots (token text PRIMARY KEY, "
    "key text NOT NULL, expires_at double precision NOT NULL); CREATE INDEX IF NOT EXISTS "
    "ix_psatriage_call_slots_key_expires_at ON psatriage_call_slots (key, expires_at); "
    "CREATE TABLE IF NOT EXISTS psatriage_shared_tokens (name text PRIMARY KEY, "
    "value bytea NOT NULL, expires_at double precision NOT NULL)"
)
_PUT = (
    "INSERT INTO psatriage_shared_tokens (name, value, expires_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
)
_LOCK = "SELECT pg_advisory_lock(hashtext('psatriage:shared_tokens'), hashtext(%s))"


class PostgresBackend:
    """The call limits and the shared tokens of a deployment whose queue is PostgreSQL."""

    where = "PostgreSQL"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        return "PostgresBackend()"

    # -- call limits ------------------------------------------------------------------------------

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        def work(run: Run) -> float:
            run("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            run(
                "DELETE FROM psatriage_window_calls WHERE key = %s AND at <= %s",
                (key, now - window),
            )
            count, oldest = run(
                "SELECT count(*), min(at) FROM psatriage_window_calls WHERE key = %s", (key,)
            ).fetchone() or (0, None)
            if count < limit:
                run("INSERT INTO psatriage_window_calls (key, at) VALUES (%s, %s)", (key, now))
                return 0.0
            return float(oldest) + window - now

        return self._run(work)

    def count(self, key: str, window: float, now: float) -> int:
        def work(run: Run) -> int:
            row = run(
                "SELECT count(*) FROM psatriage_window_calls WHERE key = %s AND at > %s",
                (key, now - window),
            ).fetchone()
            return int(row[0]) if row else 0

        return self._run(work)

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        token = uuid.uuid4().hex  # chosen once: a retry finds its own slot instead of a second

        def work(run: Run) -> str | None:
            run("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"psatriage:slots:{key}",))
            run("DELETE FROM psatriage_call_slots WHERE key = %s AND expires_at <= %s", (key, now))
            held, mine = run(
                "SELECT count(*), count(*) FILTER (WHERE token = %s) "
                "FROM psatriage_call_slots WHERE key = %s",
                (token, key),
            ).fetchone() or (0, 0)
            if mine:
                return token
            if held >= limit:
                return None
            run(
                "INSERT INTO psatriage_call_slots (token, key, expires_at) VALUES (%s, %s, %s)",
                (token, key, now + lease),
            )
            return token

        return self._run(work)

    def release(self, key: str, token: str) -> None:
        def work(run: Run) -> None:
            run("DELETE FROM psatriage_call_slots WHERE key = %s AND token = %s", (key, token))

        self._run(work)

    # -- shared tokens ----------------------------------------------------------------------------

    def get(self, name: str) -> bytes | None:
        def work(run: Run) -> bytes | None:
            row = run(
                "SELECT value FROM psatriage_shared_tokens WHERE name = %s AND expires_at > %s",
                (name, time.time()),
            ).fetchone()
            return bytes(row[0]) if row else None

        return self._run(work)

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        self._run(lambda run: run(_PUT, (name, value, expires_at)))

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        try:
            connection = self._connect()
        except psycopg.Error as exc:
            raise StoreUnavailable(self.where, exc) from exc
        try:
            yield self._take_lock(connection, name, timeout)
        finally:
            connection.close()  # ends the session, and with it the lock

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()

    # -- the connection ---------------------------------------------------------------------------

    def _take_lock(self, connection: psycopg.Connection[Any], name: str, timeout: float) -> bool:
        wait = f"{max(1, math.ceil(timeout * 1000))}ms"  # 0 would mean: wait for ever
        try:
            connection.execute("SELECT set_config('lock_timeout', %s, false)", (wait,))
            connection.execute(_LOCK, (name,))
        except psycopg.errors.LockNotAvailable:
            return False
        except psycopg.Error as exc:
            raise StoreUnavailable(self.where, exc) from exc
        return True

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(  # keepalives: a lock held by a machine that vanished ends too
            self._dsn,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
        )

    def _run(self, work: Callable[[Run], T]) -> T:
        """``work`` in one transaction; on a dropped connection, once more on a new one."""
        with self._lock:
            try:
                return self._attempt(work)
            except psycopg.OperationalError:
                self._drop()  # the server restarted or ended our session: reconnect
            except psycopg.Error as exc:
                raise StoreUnavailable(self.where, exc) from exc
            try:
                return self._attempt(work)
            except psycopg.Error as exc:
                self._drop()
                raise StoreUnavailable(self.where, exc) from exc

    def _attempt(self, work: Callable[[Run], T]) -> T:
        connection = self._open()
        with connection.transaction():
            return work(connection.execute)

    def _open(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        again = self._connection is not None
        connection = self._connect()
        with connection.transaction():
            # processes starting together must not race on CREATE TABLE IF NOT EXISTS
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('psatriage:ddl'))")
            connection.execute(_DDL)
        self._connection = connection
        if again:
            log.info("reconnected to PostgreSQL for the shared stores")
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
