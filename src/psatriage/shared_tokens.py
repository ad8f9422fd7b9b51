"""Secrets shared by every worker process of a deployment (HaloPSA's access token), encrypted, in
the Redis or PostgreSQL server of its queue. ``psatriage.psa._halopsa_auth`` uses them.

``SharedTokens`` is what callers see: ``get(name)`` gives ``(value, expires_at)`` or None,
``put(name, value, expires_at)`` stores, and ``refreshing(name, timeout)`` is a lock across
processes, held by the one that renews the value while the others wait. ``expires_at`` is
wall-clock time (``time.time()``): when every process should stop using the value; the server
forgets it then. The Runtime picks the store from the queue URL (``tokens_for``) and makes it the
process's (``share_tokens``), as it does for the call limits.

Values are encrypted with Fernet (``PSATRIAGE_SECRET_KEY``) before they leave the process, together
with their name and expiry: the server holds no token in clear, and a value copied under another
name is refused. A value that does not decrypt (the key changed) counts as absent, and the next
``put`` replaces it.

A server that does not answer never stops the caller: ``get`` then finds nothing, ``put`` stores
nothing and ``refreshing`` holds no lock (it yields False), with a warning, so the caller falls
back to a token of its own. The store is then left alone for ``PAUSE_SECONDS``; after that, a
dropped connection is opened again. The lock does not outlive a process that dies holding it: in
Redis it is a key with a lease (``LOCK_LEASE_SECONDS``) that only its holder's token deletes; in
PostgreSQL a session advisory lock on a connection of its own, which ends with the process.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, Protocol, TypeVar

import psycopg
import redis
import structlog
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from psatriage.settings import shared_server

log = structlog.get_logger(__name__)

T = TypeVar("T")

LOCK_LEASE_SECONDS = 90.0
"""How long a Redis refresh lock lasts without a release: longer than a token request with its
discovery (two HTTP calls of at most 10 s to connect and 30 s to answer)."""

PAUSE_SECONDS = 30.0
"""How long a store that did not answer is left alone: one timeout, not one per token."""

POLL_SECONDS = 0.05
"""Mean pause between two tries for the Redis refresh lock (jittered by half either way)."""

_FIX_KEY = (
    'set PSATRIAGE_SECRET_KEY on every process to one key from: python -c "from '
    'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class Unavailable(Exception):
    """The store's server did not answer, or refused the command; the message says why."""


class Backend(Protocol):
    """Where the encrypted values live; raises ``Unavailable`` when the server does not answer."""

    where: str  # "Redis" or "PostgreSQL", for messages

    def get(self, name: str) -> bytes | None:
        """The value stored under ``name``, unless it expired."""

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        """Store ``value`` until ``expires_at`` (wall clock), replacing any other."""

    def refreshing(self, name: str, timeout: float) -> AbstractContextManager[bool]:
        """Hold ``name``'s lock for the block (True), or False after ``timeout`` seconds."""

    def close(self) -> None:
        """Release the connections."""


class SharedTokens:
    """Encrypted values in a ``Backend``, and the fallback when it does not answer."""

    def __init__(self, backend: Backend, key: SecretStr, *, pause: float = PAUSE_SECONDS) -> None:
        self._backend = backend
        self._fernet = Fernet(key.get_secret_value())
        self._pause = pause
        self._paused_until = 0.0  # time.monotonic(); the store is skipped until then
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"SharedTokens(in {self._backend.where})"

    def get(self, name: str) -> tuple[str, float] | None:
        """``(value, expires_at)``, or None when absent, expired, unreadable or unreachable."""
        raw = self._call("read a shared token", name, lambda: self._backend.get(name), None)
        if raw is None:
            return None
        try:
            data = json.loads(self._fernet.decrypt(raw))
        except (InvalidToken, ValueError):
            log.warning(
                "a shared token could not be decrypted (was PSATRIAGE_SECRET_KEY changed?); "
                "ignored, it will be replaced",
                name=name,
            )
            return None
        if not isinstance(data, dict) or data.get("name") != name:
            log.warning("a shared token was stored under another name; ignored", name=name)
            return None
        value, expires_at = data.get("value"), data.get("expires_at")
        if not isinstance(value, str) or not isinstance(expires_at, int | float):
            return None
        return (value, float(expires_at)) if expires_at > time.time() else None

    def put(self, name: str, value: str, expires_at: float) -> None:
        """Share ``value`` until ``expires_at``; if the store does not answer, it is not shared."""
        sealed = self._fernet.encrypt(
            json.dumps({"name": name, "value": value, "expires_at": expires_at}).encode()
        )
        self._call("share a token", name, lambda: self._backend.put(name, sealed, expires_at), None)

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        """Hold ``name``'s refresh lock for the block; False if it could not be had within
        ``timeout`` seconds or the store does not answer (the block runs all the same)."""
        with ExitStack() as stack:
            held = self._call(
                "take the refresh lock",
                name,
                lambda: stack.enter_context(self._backend.refreshing(name, timeout)),
                False,
            )
            if not held and time.monotonic() >= self._paused_until:  # not down: just busy
                log.warning(
                    f"the shared refresh lock stayed taken for {timeout:.1f} s; renewing "
                    "without it",
                    name=name,
                )
            yield held

    def close(self) -> None:
        self._backend.close()

    def _call(self, what: str, name: str, work: Callable[[], T], fallback: T) -> T:
        """``work()``, or ``fallback`` while the store is paused or when it does not answer."""
        with self._state:
            if time.monotonic() < self._paused_until:
                return fallback
        try:
            return work()
        except Unavailable as exc:
            with self._state:
                self._paused_until = time.monotonic() + self._pause
            log.warning(
                f"could not {what}: the queue's {self._backend.where} failed ({exc}); this "
                "process uses a token of its own until it answers (check that it is up)",
                name=name,
                retry_in=self._pause,
            )
            return fallback


# -- Redis ------------------------------------------------------------------------------------

# KEYS[1]: the lock; ARGV[1]: the holder's token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisTokens:
    """Values as keys with an expiry; the refresh lock as a key with a lease (SET NX PX)."""

    where = "Redis"

    def __init__(self, url: str, *, lease: float = LOCK_LEASE_SECONDS) -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=3,
            socket_timeout=10,
            retry=Retry(NoBackoff(), 1),  # one more try on a fresh connection
        )
        self._release = self._redis.register_script(_RELEASE)
        self._lease = lease

    def get(self, name: str) -> bytes | None:
        with _redis_errors():
            value = self._redis.get(f"psatriage:shared:{name}")
        return value if isinstance(value, bytes) else None

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        left = math.ceil((expires_at - time.time()) * 1000)
        if left > 0:
            with _redis_errors():
                self._redis.set(f"psatriage:shared:{name}", value, px=left)

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        lock, token = f"psatriage:shared-lock:{name}", uuid.uuid4().hex
        held = self._take(lock, token, timeout)
        try:
            yield held
        finally:
            if held:
                try:
                    self._release(keys=[lock], args=[token])
                except redis.RedisError as exc:
                    log.warning(
                        "a shared refresh lock was not released; it lapses with its lease",
                        name=name,
                        error=str(exc),
                        lease=self._lease,
                    )

    def close(self) -> None:
        self._redis.close()

    def _take(self, lock: str, token: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        lease = math.ceil(self._lease * 1000)
        while True:
            with _redis_errors():
                if self._redis.set(lock, token, nx=True, px=lease):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))  # noqa: S311 - jitter


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}") from exc


# -- PostgreSQL -------------------------------------------------------------------------------


class PostgresTokens:
    """Values as rows of ``psatriage_shared_tokens`` (created when first used), on one connection
    per process shared by its threads; the refresh lock as a session advisory lock on a
    connection opened for it, so it ends with that connection, or with the process."""

    where = "PostgreSQL"

    _DDL = (
        "CREATE TABLE IF NOT EXISTS psatriage_shared_tokens (name text PRIMARY KEY, "
        "value bytea NOT NULL, expires_at double precision NOT NULL)"
    )
    _PUT = (
        "INSERT INTO psatriage_shared_tokens (name, value, expires_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
    )
    _LOCK = "SELECT pg_advisory_lock(hashtext('psatriage:shared_tokens'), hashtext(%s))"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None

    def get(self, name: str) -> bytes | None:
        def work(connection: psycopg.Connection[Any]) -> bytes | None:
            row = connection.execute(
                "SELECT value FROM psatriage_shared_tokens WHERE name = %s AND expires_at > %s",
                (name, time.time()),
            ).fetchone()
            return bytes(row[0]) if row else None

        return self._run(work)

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        self._run(lambda connection: connection.execute(self._PUT, (name, value, expires_at)))

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        try:
            connection = self._connect()
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        try:
            held = self._take(connection, name, timeout)
            yield held
        finally:
            connection.close()  # ends the session, and with it the lock

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(  # keepalives: a lock held by a machine that vanished ends too
            self._dsn,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
        )

    def _take(self, connection: psycopg.Connection[Any], name: str, timeout: float) -> bool:
        wait = f"{max(1, math.ceil(timeout * 1000))}ms"  # 0 would mean: wait for ever
        try:
            connection.execute("SELECT set_config('lock_timeout', %s, false)", (wait,))
            connection.execute(self._LOCK, (name,))
        except psycopg.errors.LockNotAvailable:
            return False
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        return True

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` on the process's connection; on a dropped connection, once more on a new
        one."""
        with self._lock:
            try:
                return work(self._open())
            except psycopg.OperationalError:
                self._drop()  # the server restarted or ended our session: reconnect
            except psycopg.Error as exc:
                raise _unavailable(exc) from exc
            try:
                return work(self._open())
            except psycopg.Error as exc:
                self._drop()
                raise _unavailable(exc) from exc

    def _open(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        again = self._connection is not None
        connection = self._connect()
        with connection.transaction():
            # processes starting together must not race on CREATE TABLE IF NOT EXISTS
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('psatriage:ddl'))")
            connection.execute(self._DDL)
        self._connection = connection
        if again:
            log.info("reconnected to PostgreSQL for the shared tokens")
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()


def _unavailable(exc: psycopg.Error) -> Unavailable:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "no message"
    return Unavailable(f"{type(exc).__name__}: {first}")


# -- the process's store ----------------------------------------------------------------------

_shared: SharedTokens | None = None


def share_tokens(store: SharedTokens | None) -> None:
    """Make ``store`` the one this process's token sources use (None: each keeps its own)."""
    global _shared  # noqa: PLW0603 - one deployment-wide setting, made by the Runtime at start
    _shared = store


def current() -> SharedTokens | None:
    """The store set by ``share_tokens``, if any."""
    return _shared


def tokens_for(queue_url: str, secret_key: SecretStr | None) -> SharedTokens | None:
    """Shared tokens where the deployment shares a queue (Redis or PostgreSQL, on the queue's own
    server and database) and has a ``secret_key``; else None. A shared queue without a key logs
    a warning: tokens then stay per process."""
    server = shared_server(queue_url)
    if server is None:
        return None
    if secret_key is None:
        log.warning(
            "HaloPSA access tokens are not shared between worker processes because "
            "PSATRIAGE_SECRET_KEY is not set: each process fetches its own, and each new one may "
            f"invalidate the others' (401, then one more token request); to share them, {_FIX_KEY}"
        )
        return None
    kind, url = server
    backend: Backend = RedisTokens(url) if kind == "redis" else PostgresTokens(url)
    return SharedTokens(backend, secret_key)
