"""The wake-up channel between the processes that record events and the workers that take them.

The ``events`` table is the queue of record: a worker claims the next event straight from the
ledger, in fair order (``psatriage.store.ledger``). What this module carries is only a nudge,
"there is new work", so an idle worker claims at once instead of at its next look: nothing is
lost when a nudge is, because idle workers also look at the ledger every ``queue_poll_seconds``.

The channel, by ``PSATRIAGE_QUEUE_URL``:

- ``sqlite:///PATH`` (default): one machine. Each worker process binds a Unix datagram socket in
  the folder ``PATH.wake``; a wake-up is one non-blocking datagram to each of them.
- ``redis://...``: a Redis pub/sub channel (``psatriage:wake:<db>``).
- ``postgresql://...``: PostgreSQL ``NOTIFY psatriage_wake``.

``wake()`` never blocks and never raises: on Redis and PostgreSQL a background thread sends at
most one message per burst of calls. Listeners in the same process are called directly.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy.engine import make_url

from psatriage.errors import ConfigError
from psatriage.settings import shared_server

log = structlog.get_logger(__name__)

Callback = Callable[[], None]
_PG_CHANNEL = "psatriage_wake"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


class _Channel(Protocol):
    def send(self) -> None: ...
    def listen(self, callback: Callback, stop: threading.Event) -> None: ...
    def check(self) -> None: ...
    def close(self) -> None: ...


class Queue:
    """The wake-up channel of one process (see the module docstring)."""

    def __init__(self, url: str, *, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._channel = _channel_for(url)
        self._local: list[Callback] = []
        self._lock = threading.Lock()
        self._pending = threading.Event()
        self._closed = threading.Event()
        self._sender: threading.Thread | None = None
        self._listeners: list[tuple[threading.Thread, threading.Event]] = []

    def wake(self) -> None:
        """Tell idle workers (here and in other processes) there is work; never blocks."""
        for callback in tuple(self._local):
            callback()
        if isinstance(self._channel, _LocalChannel):
            self._channel.send()  # non-blocking datagrams: no thread needed
            return
        self._pending.set()
        if self._sender is None:
            with self._lock:
                if self._sender is None and not self._closed.is_set():
                    self._sender = threading.Thread(
                        target=self._send_loop, name="psatriage-wake-sender", daemon=True
                    )
                    self._sender.start()

    def listen(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` on every wake-up from any process until the returned function is
        called. The callback runs on a listener thread and must be quick."""
        with self._lock:
            self._local.append(callback)
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set() and not self._closed.is_set():
                try:
                    self._channel.listen(callback, stop)
                except Exception as exc:  # noqa: BLE001 - the channel comes back; polls cover it
                    log.warning("wake-up channel lost; listening again", error=str(exc))
                    stop.wait(1.0)

        thread = threading.Thread(target=run, name="psatriage-wake-listener", daemon=True)
        thread.start()
        self._listeners.append((thread, stop))

        def unlisten() -> None:
            stop.set()
            with self._lock:
                if callback in self._local:
                    self._local.remove(callback)
            thread.join(timeout=5)

        return unlisten

    def check(self) -> None:
        """Raise the server's own error when the channel's server does not answer."""
        self._channel.check()

    def reachable(self) -> bool:
        try:
            self.check()
        except Exception:  # noqa: BLE001 - any error means "not reachable" for /readyz
            return False
        return True

    def close(self) -> None:
        self._closed.set()
        self._pending.set()
        for thread, stop in self._listeners:
            stop.set()
            thread.join(timeout=5)
        if self._sender is not None:
            self._sender.join(timeout=5)
        self._channel.close()

    def _send_loop(self) -> None:
        failing_since: float | None = None
        while True:
            self._pending.wait()
            if self._closed.is_set():
                return
            self._pending.clear()
            try:
                self._channel.send()
                failing_since = None
            except Exception as exc:  # noqa: BLE001 - workers poll the ledger meanwhile
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("could not send a wake-up; workers will poll", error=str(exc))
                self._closed.wait(0.5)


def _channel_for(url: str) -> _Channel:
    server = shared_server(url)
    if server is not None:
        kind, address = server
        return _RedisChannel(address) if kind == "redis" else _PostgresChannel(address)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ConfigError(
            f"PSATRIAGE_QUEUE_URL: unsupported scheme {parsed.drivername!r}; "
            "fix: use sqlite:///PATH, redis://HOST:PORT/DB or postgresql://USER@HOST/DB"
        )
    return _LocalChannel(sqlite_queue_file(url))


def sqlite_queue_file(url: str) -> Path:
    """The file a ``sqlite:///PATH`` queue URL names, beside which the processes of one machine
    keep their wake-up sockets and their shared stores (``psatriage.shared.sqlite_backend``)."""
    return Path(make_url(url).database or "queue.db")


# -- one machine: Unix datagram sockets ------------------------------------------------------------

_LISTENERS = itertools.count(1)  # names this process's listening sockets
_SOCKET_NAME_MAX = 24  # "<pid>-<n>.sock"


def _wake_folder(database: Path) -> Path:
    """Beside the SQLite file, or, where that path is too long for a socket's address, a folder
    in the temporary directory named after the file (the same for every process using it)."""
    folder = database.with_name(database.name + ".wake")
    if len(str(folder)) + 1 + _SOCKET_NAME_MAX <= _MAX_SOCKET_PATH:
        return folder
    digest = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"psatriage-wake-{digest}"


class _LocalChannel:
    """A folder of Unix datagram sockets, one per listening worker process."""

    def __init__(self, database: Path) -> None:
        self.folder = _wake_folder(database)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._targets: list[str] = []
        self._listed = 0.0
        self._lock = threading.Lock()

    def send(self) -> None:
        now = time.monotonic()
        if now - self._listed > 1.0:  # new listeners are found within a second
            with contextlib.suppress(OSError):
                self._targets = [str(p) for p in self.folder.glob("*.sock")]
            self._listed = now
        for target in self._targets:
            try:
                self._sender.sendto(b"!", target)
            except (ConnectionRefusedError, FileNotFoundError):  # a process that is gone
                with contextlib.suppress(OSError):
                    Path(target).unlink()
                self._listed = 0.0
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):  # full: it is awake already
                    log.debug("wake-up not sent", target=target, error=str(exc))

    def listen(self, callback: Callback, stop: threading.Event) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{os.getpid()}-{next(_LISTENERS)}.sock"
        if len(str(path)) > _MAX_SOCKET_PATH:  # too long for a socket: the polls alone
            stop.wait()
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            listener.bind(str(path))
            listener.settimeout(0.5)
            while not stop.is_set():
                try:
                    listener.recv(64)
                except TimeoutError:
                    continue
                callback()
        finally:
            listener.close()
            with contextlib.suppress(OSError):
                path.unlink()

    def check(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self._sender.close()


# -- Redis pub/sub --------------------------------------------------------------------------------


class _RedisChannel:
    def __init__(self, url: str) -> None:
        import redis  # noqa: PLC0415 - a service on SQLite never loads the Redis client

        self._client: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        database = self._client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"psatriage:wake:{database}"

    def send(self) -> None:
        self._client.publish(self.channel, b"!")

    def listen(self, callback: Callback, stop: threading.Event) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            while not stop.is_set():
                if pubsub.get_message(timeout=0.5) is not None:
                    callback()
        finally:
            pubsub.close()

    def check(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()


# -- PostgreSQL LISTEN/NOTIFY ---------------------------------------------------------------------


class _PostgresChannel:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg  # noqa: PLC0415 - a service on SQLite never loads the driver

        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)

    def send(self) -> None:
        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = self._connect()
            try:
                self._connection.execute(f"NOTIFY {_PG_CHANNEL}")
            except Exception:
                self._connection.close()
                self._connection = None
                raise

    def listen(self, callback: Callback, stop: threading.Event) -> None:
        with self._connect() as connection:
            connection.execute(f"LISTEN {_PG_CHANNEL}")
            while not stop.is_set():
                for _ in connection.notifies(timeout=0.5, stop_after=1):
                    callback()

    def check(self) -> None:
        with self._connect() as connection:
            connection.execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
