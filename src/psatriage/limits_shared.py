"""Call limits shared by every worker process: rolling windows and concurrency slots in Redis or
PostgreSQL (whichever the deployment's queue uses). ``psatriage.limits`` picks one and uses it.

Each store has the methods of ``psatriage.limits.LimitStore``: ``take``/``count`` for rolling
windows, ``acquire``/``release`` for concurrency slots. A slot is a lease: it is given back by
``release``, or comes back by itself ``lease`` seconds after it was taken, so the slots of a
process that crashed mid-call are not lost. Times are the callers' wall clocks (``time.time()``).

Both stores survive a restart of their server: a dropped connection is opened again (Redis by its
client, PostgreSQL here, once per call); a server that stays away raises ``TransientError`` so the
job is retried later. Taking a slot is safe to repeat (the token is chosen before the first
attempt); counting a call in a window is not, so a call whose answer was lost with the connection
may be counted twice (the window errs on the safe side).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import redis
import structlog
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from psatriage.errors import TransientError

log = structlog.get_logger(__name__)

T = TypeVar("T")
_Run = Callable[..., "psycopg.Cursor[tuple[Any, ...]]"]  # a connection's ``execute``

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

# KEYS[1]: the key's slots (token -> lease expiry); ARGV: now, lease, limit, token
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(ARGV[2] * 1000))
  return 1
end
return 0
"""


class RedisLimits:
    """Windows and slots in Redis: one sorted set per key, changed atomically by a script."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=10,
            socket_timeout=30,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 2),  # rides out a quick restart
        )
        self._take = self._redis.register_script(_TAKE)
        self._acquire = self._redis.register_script(_ACQUIRE)

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        member = f"{now}:{uuid.uuid4().hex}"
        with _redis_errors():
            wait = self._take(keys=[f"psatriage:window:{key}"], args=[now, window, limit, member])
        return float(wait)

    def count(self, key: str, window: float, now: float) -> int:
        with _redis_errors():
            return int(self._redis.zcount(f"psatriage:window:{key}", now - window, "+inf"))

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        token = uuid.uuid4().hex
        with _redis_errors():
            got = self._acquire(keys=[f"psatriage:slots:{key}"], args=[now, lease, limit, token])
        return token if int(got) else None

    def release(self, key: str, token: str) -> None:
        with _redis_errors():
            self._redis.zrem(f"psatriage:slots:{key}", token)

    def close(self) -> None:
        self._redis.close()


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TransientError(
            f"Redis, which holds the shared PSA call limits, did not answer ({exc}); "
            "retrying later (check that the queue's Redis is up)"
        ) from exc


class PostgresLimits:
    """Windows and slots in PostgreSQL: a row per call or held slot, each key changed under an
    advisory lock. One connection per process, shared by its threads and opened again when the
    server dropped it."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS psatriage_window_calls (key text NOT NULL, "
        "at double precision NOT NULL); CREATE INDEX IF NOT EXISTS "
        "ix_psatriage_window_calls_key_at ON psatriage_window_calls (key, at); "
        "CREATE TABLE IF NOT EXISTS psatriage_call_slots (token text PRIMARY KEY, "
        "key text NOT NULL, expires_at double precision NOT NULL); CREATE INDEX IF NOT EXISTS "
        "ix_psatriage_call_slots_key_expires_at ON psatriage_call_slots (key, expires_at)"
    )

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._connection = self._connect()
        with self._lock, self._connection.transaction():
            # processes starting together must not race on CREATE TABLE IF NOT EXISTS
            self._connection.execute("SELECT pg_advisory_xact_lock(hashtext('psatriage:ddl'))")
            self._connection.execute(self._DDL)

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        def work(run: _Run) -> float:
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
        def work(run: _Run) -> int:
            row = run(
                "SELECT count(*) FROM psatriage_window_calls WHERE key = %s AND at > %s",
                (key, now - window),
            ).fetchone()
            return int(row[0]) if row else 0

        return self._run(work)

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        token = uuid.uuid4().hex  # chosen once: a retry finds its own slot instead of a second

        def work(run: _Run) -> str | None:
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
        def work(run: _Run) -> None:
            run("DELETE FROM psatriage_call_slots WHERE key = %s AND token = %s", (key, token))

        self._run(work)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)

    def _run(self, work: Callable[[_Run], T]) -> T:
        """``work`` in one transaction; on a dropped connection, once more on a new one."""
        with self._lock:
            try:
                return self._attempt(work)
            except psycopg.OperationalError:
                self._connection.close()  # the server restarted or ended our session: reconnect
            try:
                return self._attempt(work)
            except psycopg.OperationalError as exc:
                self._connection.close()
                raise TransientError(
                    "PostgreSQL, which holds the shared PSA call limits, did not answer "
                    f"({type(exc).__name__}: {_first_line(exc)}); retrying later (check that "
                    "the queue's database is up)"
                ) from exc

    def _attempt(self, work: Callable[[_Run], T]) -> T:
        if self._connection.closed:
            self._connection = self._connect()
            log.info("reconnected to PostgreSQL for the shared PSA call limits")
        with self._connection.transaction():
            return work(self._connection.execute)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
