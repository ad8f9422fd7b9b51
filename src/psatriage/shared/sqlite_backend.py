"""The shared stores of a deployment on one machine (a SQLite queue): a small SQLite file beside
the queue's, and a folder of lock files.

Every process on the machine (``serve``'s worker processes, a ``psatriage worker`` started by
hand, a long command) opens the same file, so their PSA calls count against one limit and one
storm's tickets wait for one decision, as they do with a Redis or PostgreSQL queue. The file is
separate from the queue's so that its short transactions never wait behind the queue's writes.

One connection per backend, opened when first needed and shared by the process's threads; each
change runs in one ``BEGIN IMMEDIATE`` transaction, which holds SQLite's write lock, so the
processes take turns (waiting up to ``BUSY_SECONDS``). The file holds nothing that must outlive
a crash: limits and tokens in flight, encrypted tokens. The refresh lock of a shared token is an
``flock`` on a file of its own: the kernel lets it go with the process that held it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from psatriage.queue import sqlite_queue_file
from psatriage.shared.base import StoreUnavailable

T = TypeVar("T")
Run = Callable[..., sqlite3.Cursor]  # a connection's ``execute``

BUSY_SECONDS = 5.0
"""How long a process waits for another's transaction before the store counts as unavailable."""

POLL_SECONDS = 0.05
"""Mean pause between two tries for the refresh lock (jittered by half either way)."""

_DDL = (
    "CREATE TABLE IF NOT EXISTS window_calls (key TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_window_calls_key_at ON window_calls (key, at)",
    "CREATE TABLE IF NOT EXISTS window_counts (key TEXT PRIMARY KEY, calls INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS call_slots (token TEXT PRIMARY KEY, key TEXT NOT NULL, "
    "expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_call_slots_key_expires_at ON call_slots (key, expires_at)",
    "CREATE TABLE IF NOT EXISTS shared_tokens (name TEXT PRIMARY KEY, value BLOB NOT NULL, "
    "expires_at REAL NOT NULL)",
)

_COUNT = (
    "INSERT INTO window_counts (key, calls) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET calls = excluded.calls"
)


def for_queue(queue_url: str) -> SqliteBackend:
    """The stores of a ``sqlite:///PATH`` queue, in the file ``PATH.shared``."""
    database = sqlite_queue_file(queue_url)
    return SqliteBackend(database.with_name(database.name + ".shared"))


class SqliteBackend:
    """The call limits and the shared tokens of a deployment whose queue is a SQLite file."""

    where = "SQLite file"

    def __init__(self, path: Path, *, busy: float = BUSY_SECONDS) -> None:
        self.path = path
        self._locks = path.with_name(path.name + ".locks")
        self._busy = busy
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteBackend({self.path.name})"

    # -- call limits ------------------------------------------------------------------------------

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        """A window's calls are rows, and their number is kept beside them: counting the rows
        would cost each call as many steps as the window holds (up to thousands)."""

        def work(run: Run) -> float:
            gone = run("DELETE FROM window_calls WHERE key = ? AND at <= ?", (key, now - window))
            row = run("SELECT calls FROM window_counts WHERE key = ?", (key,)).fetchone()
            calls = (row[0] if row else 0) - gone.rowcount
            room = calls < limit
            if room:
                run("INSERT INTO window_calls (key, at) VALUES (?, ?)", (key, now))
                calls += 1
            if room or gone.rowcount:
                run(_COUNT, (key, calls))
            if room:
                return 0.0
            (oldest,) = run("SELECT min(at) FROM window_calls WHERE key = ?", (key,)).fetchone()
            if oldest is None:  # the count outgrew the rows (the file was changed by hand)
                run(_COUNT, (key, 0))
                return work(run)
            return float(oldest) + window - now

        return self._run(work)

    def count(self, key: str, window: float, now: float) -> int:
        def work(run: Run) -> int:
            row = run(
                "SELECT count(*) FROM window_calls WHERE key = ? AND at > ?", (key, now - window)
            ).fetchone()
            return int(row[0])

        return self._run(work)

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        def work(run: Run) -> str | None:
            run("DELETE FROM call_slots WHERE key = ? AND expires_at <= ?", (key, now))
            (held,) = run("SELECT count(*) FROM call_slots WHERE key = ?", (key,)).fetchone()
            if held >= limit:
                return None
            token = uuid.uuid4().hex
            run(
                "INSERT INTO call_slots (token, key, expires_at) VALUES (?, ?, ?)",
                (token, key, now + lease),
            )
            return token

        return self._run(work)

    def release(self, key: str, token: str) -> None:
        self._run(
            lambda run: run("DELETE FROM call_slots WHERE key = ? AND token = ?", (key, token))
        )

    # -- shared tokens ----------------------------------------------------------------------------

    def get(self, name: str) -> bytes | None:
        def work(run: Run) -> bytes | None:
            row = run(
                "SELECT value FROM shared_tokens WHERE name = ? AND expires_at > ?",
                (name, time.time()),
            ).fetchone()
            return bytes(row[0]) if row else None

        return self._run(work)

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        def work(run: Run) -> None:
            run("DELETE FROM shared_tokens WHERE expires_at <= ?", (time.time(),))
            run(
                "INSERT INTO shared_tokens (name, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at",
                (name, value, expires_at),
            )

        self._run(work)

    def forget_tokens(self) -> None:
        """Drop every shared token (they were sealed with a key that is gone)."""
        self._run(lambda run: run("DELETE FROM shared_tokens"))

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        try:
            self._locks.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self._locks / f"{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailable(self.where, exc) from exc
        try:  # a descriptor of our own: its lock excludes this process's other threads too
            yield self._take_lock(descriptor, timeout)
        finally:
            os.close(descriptor)  # and with it the lock

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # -- the connection ---------------------------------------------------------------------------

    @staticmethod
    def _take_lock(descriptor: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))  # noqa: S311
            else:
                return True

    def _run(self, work: Callable[[Run], T]) -> T:
        """``work`` in one write transaction; a file that cannot be used raises
        ``StoreUnavailable`` (and is opened again on the next call)."""
        with self._lock:
            try:
                connection = self._open()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    result = work(connection.execute)
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._drop()
                raise StoreUnavailable(self.where, exc) from exc
            return result

    def _open(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        self._locks.mkdir(parents=True, exist_ok=True)
        with (self._locks / "open.lock").open("a") as turn:
            # processes opening the file together take turns: SQLite answers "locked" at once,
            # without its busy timeout, to a second one switching a new file to WAL
            fcntl.flock(turn, fcntl.LOCK_EX)
            connection = sqlite3.connect(
                self.path, timeout=self._busy, isolation_level=None, check_same_thread=False
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")  # nothing must survive a crash
                connection.execute("BEGIN IMMEDIATE")
                for statement in _DDL:
                    connection.execute(statement)
                connection.execute("COMMIT")
            except BaseException:
                connection.close()
                raise
        self._connection = connection
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None
