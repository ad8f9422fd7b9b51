"""Client-side limits on calls to a PSA: a rolling-window rate and a cap on concurrent calls.

One ``CallLimits`` per adapter instance (that is, per tenant and process), shared by its worker
threads. ``with limits.call(endpoint):`` waits for a concurrency slot and for room in the rolling
window; a wait longer than ``max_wait`` raises ``TransientError(retry_after=...)`` so the job is
rescheduled instead of holding a worker.

The window counts per endpoint or for the whole tenant (``per_endpoint``): Autotask limits a
database as a whole (10,000 calls per hour), Kaseya BMS each endpoint (1,500 per hour). Where the
deployment shares a queue (Redis or PostgreSQL), the windows live there too, so every worker
process counts against one limit (``share_windows``, set up by the Runtime); the cap on concurrent
calls stays per process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import psycopg
import redis

from psatriage.errors import TransientError


class WindowStore(Protocol):
    """Where rolling windows count calls: in this process, or shared by every process."""

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        """Count one call if ``key`` has room; return 0.0, else the seconds until it has."""

    def count(self, key: str, window: float, now: float) -> int:
        """Calls counted for ``key`` in the window ending at ``now``."""

    def close(self) -> None:
        """Release the connection, if any."""


class MemoryWindows:
    """This process's windows (the default: SQLite deployments run one process)."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) < limit:
                calls.append(now)
                return 0.0
            return calls[0] + window - now

    def count(self, key: str, window: float, now: float) -> int:
        with self._lock:
            return sum(1 for t in self._calls.get(key, ()) if t > now - window)

    def close(self) -> None:
        return


_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(ARGV[2] * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(oldest[2] + ARGV[2] - ARGV[1])
"""


class RedisWindows:
    """Windows in Redis (one sorted set per key, trimmed atomically by a script): every process
    of the deployment counts against the same window."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._take = self._redis.register_script(_TAKE)

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        member = f"{now}:{uuid.uuid4().hex}"
        return float(
            self._take(keys=[f"psatriage:window:{key}"], args=[now, window, limit, member])
        )

    def count(self, key: str, window: float, now: float) -> int:
        return int(self._redis.zcount(f"psatriage:window:{key}", now - window, "+inf"))

    def close(self) -> None:
        self._redis.close()


class PostgresWindows:
    """Windows in PostgreSQL (a row per call, one key at a time under an advisory lock)."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS psatriage_window_calls (key text NOT NULL, "
        "at double precision NOT NULL); CREATE INDEX IF NOT EXISTS "
        "ix_psatriage_window_calls_key_at ON psatriage_window_calls (key, at)"
    )

    def __init__(self, dsn: str) -> None:
        self._connection = psycopg.connect(dsn, autocommit=True)
        self._lock = threading.Lock()
        with self._lock:
            self._connection.execute(self._DDL)

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        with self._lock, self._connection.transaction():
            run = self._connection.execute
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

    def count(self, key: str, window: float, now: float) -> int:
        with self._lock:
            row = self._connection.execute(
                "SELECT count(*) FROM psatriage_window_calls WHERE key = %s AND at > %s",
                (key, now - window),
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._connection.close()


_shared: WindowStore | None = None


def share_windows(store: WindowStore | None) -> None:
    """Make ``store`` the windows of every limiter in this process (None: each its own)."""
    global _shared  # noqa: PLW0603 - one deployment-wide setting, made by the Runtime at start
    _shared = store


def windows_for(queue_url: str) -> WindowStore | None:
    """Shared windows where the deployment shares a queue: Redis or PostgreSQL; else None."""
    scheme = queue_url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in {"redis", "rediss"}:
        return RedisWindows(queue_url)
    if scheme in {"postgresql", "postgres"}:
        return PostgresWindows(queue_url.replace("postgresql+psycopg://", "postgresql://", 1))
    return None


class RollingWindow:
    """At most ``limit`` calls in any ``window`` seconds, per key.

    Counted in the shared windows when the deployment has them (``share_windows``), so several
    worker processes stay under one limit together; else in this instance's memory.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        scope: str = "",
        max_wait: float = 2.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rolling window needs limit >= 1 and window > 0")
        self.limit, self.window, self.max_wait, self.scope = limit, window, max_wait, scope
        self._clock, self._sleep = clock, sleep
        self._memory = MemoryWindows()

    def _store(self) -> tuple[WindowStore, float]:
        store = _shared if _shared is not None and self._clock is None else self._memory
        now = self._clock() if self._clock else time.time()  # wall clock: shared by processes
        return store, now

    def acquire(self, key: str = "") -> None:
        """Take one call for ``key``, waiting briefly if the window is full."""
        while True:
            store, now = self._store()
            wait = store.take(f"{self.scope}|{key}", self.limit, self.window, now)
            if wait <= 0:
                return
            if wait > self.max_wait:
                raise TransientError(
                    f"client-side limit of {self.limit} calls per {self.window:.0f} s reached",
                    retry_after=wait,
                )
            self._sleep(wait)

    def used(self, key: str = "") -> int:
        store, now = self._store()
        return store.count(f"{self.scope}|{key}", self.window, now)


class ConcurrencyLimit:
    """At most ``limit`` calls in flight at once, per key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a concurrency limit needs limit >= 1")
        self.limit = limit
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str = "") -> Iterator[None]:
        with self._lock:
            slot = self._slots.setdefault(key, threading.BoundedSemaphore(self.limit))
        with slot:
            yield


class CallLimits:
    """The limits one adapter applies to its calls (either part may be off)."""

    def __init__(
        self,
        *,
        per_window: int | None = None,
        window_seconds: float = 3600.0,
        per_endpoint: bool = False,
        concurrent_per_endpoint: int | None = None,
        scope: str = "",
        max_wait: float = 2.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.window = (
            RollingWindow(
                per_window,
                window_seconds,
                scope=scope,
                max_wait=max_wait,
                clock=clock,
                sleep=sleep,
            )
            if per_window
            else None
        )
        self.per_endpoint = per_endpoint
        self.concurrency = (
            ConcurrencyLimit(concurrent_per_endpoint) if concurrent_per_endpoint else None
        )

    @contextmanager
    def call(self, endpoint: str) -> Iterator[None]:
        """Hold a slot for one call to ``endpoint`` (e.g. ``"Tickets"``, ``"GET tickets"``)."""
        if self.concurrency is None:
            self._count(endpoint)
            yield
            return
        with self.concurrency.hold(endpoint):
            self._count(endpoint)
            yield

    def used(self, endpoint: str = "") -> int:
        """Calls counted in the current window (for the endpoint, or the tenant)."""
        if self.window is None:
            return 0
        return self.window.used(endpoint if self.per_endpoint else "")

    def _count(self, endpoint: str) -> None:
        if self.window is not None:
            self.window.acquire(endpoint if self.per_endpoint else "")
