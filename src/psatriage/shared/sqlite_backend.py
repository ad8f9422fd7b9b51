"""The shared stores of a deployment on one machine (a SQLite queue): a small SQLite file beside
the queue's, and a folder of lock files.

Every process on the machine (``serve``'s worker processes, a ``psatriage worker`` started by
hand, a long command) opens the same file, so their PSA calls count against one limit and one
storm's tickets wait for one decision, as they do with a Redis or PostgreSQL queue. The file is
separate from the queue's so that its short transactions never wait behind the queue's writes.

One connection per thread, opened when the thread first needs it. A call limit's step is a statement
that decides and writes at once (a conditional ``INSERT``, a ``DELETE``; counting a call first
deletes the calls that left the window), each its own transaction: SQLite holds its write lock only
while the statement runs in C, never while a thread waits for its turn at the interpreter, so the
processes' many threads take turns in microseconds (waiting up to ``BUSY_SECONDS``). A window's
calls are counted beside them by triggers. A shared token is read and written in a ``BEGIN
IMMEDIATE`` transaction. The file holds nothing that must outlive a crash: limits and tokens in
flight, encrypted tokens. The refresh lock of a shared token is an ``flock`` on a file of its own:
the kernel lets it go with the process that held it.
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
import weakref
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
    # a window's count follows its rows, in the statement that adds or removes them
    "CREATE TRIGGER IF NOT EXISTS window_calls_counted AFTER INSERT ON window_calls BEGIN "
    "INSERT INTO window_counts (key, calls) VALUES (NEW.key, 1) "
    "ON CONFLICT (key) DO UPDATE SET calls = calls + 1; END",
    "CREATE TRIGGER IF NOT EXISTS window_calls_uncounted AFTER DELETE ON window_calls BEGIN "
    "UPDATE window_counts SET calls = max(0, calls - 1) WHERE key = OLD.key; END",
)

# one call counted if the window has room (the count is the triggers')
_TAKE = (
    "INSERT INTO window_calls (key, at) SELECT ?, ? "
    "WHERE coalesce((SELECT calls FROM window_counts WHERE key = ?), 0) < ?"
)
_EXPIRE_CALLS = "DELETE FROM window_calls WHERE key = ? AND at <= ?"
_RECOUNT = (
    "UPDATE window_counts SET calls = (SELECT count(*) FROM window_calls WHERE key = ?) "
    "WHERE key = ?"
)
# one slot taken if fewer than the limit are held (slots whose lease ran out are not counted)
_ACQUIRE = (
    "INSERT INTO call_slots (token, key, expires_at) SELECT ?, ?, ? "
    "WHERE (SELECT count(*) FROM call_slots WHERE key = ? AND expires_at > ?) < ?"
)
_EXPIRE_SLOTS = "DELETE FROM call_slots WHERE key = ? AND expires_at <= ?"


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
        self._lock = threading.Lock()  # guards the two below
        self._open_ones: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._generation = 0  # one more at each ``close``: the connections before it are closed
        self._made = False  # the file's tables and triggers are there
        self._mine = threading.local()  # this thread's ``(generation, connection)``

    def __repr__(self) -> str:
        return f"SqliteBackend({self.path.name})"

    # -- call limits ------------------------------------------------------------------------------

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        """A window's calls are rows, and their number is kept beside them by triggers: counting
        the rows would cost each call as many steps as the window holds (up to thousands)."""

        def work(run: Run) -> float:
            run(_EXPIRE_CALLS, (key, now - window))
            if run(_TAKE, (key, now, key, limit)).rowcount:
                return 0.0
            (oldest,) = run("SELECT min(at) FROM window_calls WHERE key = ?", (key,)).fetchone()
            if oldest is None:  # the count outgrew the rows (the file was changed by hand)
                run(_RECOUNT, (key, key))
                return work(run)
            return float(oldest) + window - now

        return self._each(work)

    def count(self, key: str, window: float, now: float) -> int:
        def work(run: Run) -> int:
            row = run(
                "SELECT count(*) FROM window_calls WHERE key = ? AND at > ?", (key, now - window)
            ).fetchone()
            return int(row[0])

        return self._each(work)

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        token = uuid.uuid4().hex
        taking = (token, key, now + lease, key, now, limit)

        def work(run: Run) -> str | None:
            if run(_ACQUIRE, taking).rowcount:
                return token
            if run(_EXPIRE_SLOTS, (key, now)).rowcount and run(_ACQUIRE, taking).rowcount:
                return token  # a lease had run out (its process died): its slot is free again
            return None

        return self._each(work)

    def release(self, key: str, token: str) -> None:
        self._each(
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
        """Close every thread's connection (a thread that uses the store again opens one)."""
        with self._lock:
            open_ones, self._open_ones = self._open_ones, []
            self._generation += 1
        for _, connection in open_ones:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

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

    def _each(self, work: Callable[[Run], T]) -> T:
        """``work``, each of its statements a transaction of its own; a file that cannot be used
        raises ``StoreUnavailable`` (and is opened again on the next call)."""
        try:
            return work(self._connection().execute)
        except (sqlite3.Error, OSError) as exc:
            self._drop()
            raise StoreUnavailable(self.where, exc) from exc

    def _run(self, work: Callable[[Run], T]) -> T:
        """``work`` in one write transaction, otherwise as ``_each``."""

        def transaction(run: Run) -> T:
            run("BEGIN IMMEDIATE")
            try:
                result = work(run)
            except BaseException:
                run("ROLLBACK")
                raise
            run("COMMIT")
            return result

        return self._each(transaction)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (or after ``close``)."""
        held: tuple[int, sqlite3.Connection] | None = getattr(self._mine, "held", None)
        if held is not None and held[0] == self._generation:
            return held[1]
        generation, connection = self._generation, self._open()
        self._mine.held = (generation, connection)
        with self._lock:  # the connections of threads that ended are closed here
            ended = [c for thread, c in self._open_ones if thread() is None]
            self._open_ones = [(t, c) for t, c in self._open_ones if t() is not None]
            self._open_ones.append((weakref.ref(threading.current_thread()), connection))
        for old in ended:
            with contextlib.suppress(sqlite3.Error):
                old.close()
        return connection

    def _open(self) -> sqlite3.Connection:
        if not self._made:
            self._locks.mkdir(parents=True, exist_ok=True)  # and the file's folder
        connection = sqlite3.connect(
            self.path, timeout=self._busy, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA synchronous=NORMAL")  # nothing must survive a crash
            if not self._made:
                self._make(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _make(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL and make its tables and triggers (once a process)."""
        with (self._locks / "open.lock").open("a") as turn:
            # processes opening the file together take turns: SQLite answers "locked" at once,
            # without its busy timeout, to a second one switching a new file to WAL
            fcntl.flock(turn, fcntl.LOCK_EX)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("BEGIN IMMEDIATE")
            for statement in _DDL:
                connection.execute(statement)
            connection.execute("COMMIT")
        self._made = True

    def _drop(self) -> None:
        """Close this thread's connection after an error (the next call opens another, and
        makes the tables again if they are gone)."""
        held: tuple[int, sqlite3.Connection] | None = getattr(self._mine, "held", None)
        self._mine.held = None
        self._made = False
        if held is None:
            return
        connection = held[1]
        with self._lock:
            self._open_ones = [(t, c) for t, c in self._open_ones if c is not connection]
        with contextlib.suppress(sqlite3.Error):
            connection.close()
