"""The shared stores in Redis: call limits as sorted sets changed by scripts, tokens as keys with an
expiry, the refresh lock as a key with a lease.

One client per backend (a connection pool shared by the process's threads). A dropped connection
is opened again by the client itself, a couple of times with a short backoff, which rides out a
quick restart; a server that stays away raises ``StoreUnavailable``. A restarted server that has
forgotten the scripts gets them again (redis-py reloads on ``NOSCRIPT``).

Taking a slot is safe to repeat (its token is chosen before the first attempt); counting a call in
a window is not, so a call whose answer was lost with the connection may be counted twice (the
window errs on the safe side). The refresh lock is a key only its holder's token deletes; a holder
that dies leaves it to lapse with its lease (``LOCK_LEASE_SECONDS``).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import structlog
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from psatriage.shared.base import StoreUnavailable

log = structlog.get_logger(__name__)

LOCK_LEASE_SECONDS = 90.0
"""How long a refresh lock lasts without a release: longer than a token request with its
discovery (two HTTP calls of at most 10 s to connect and 30 s to answer)."""

POLL_SECONDS = 0.05
"""Mean pause between two tries for the refresh lock (jittered by half either way)."""

# KEYS[1]: the key's calls (member -> time); ARGV: now, window, limit, member
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

# KEYS[1]: the lock; ARGV[1]: the holder's token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisBackend:
    """The call limits and the shared tokens of a deployment whose queue is Redis."""

    where = "Redis"

    def __init__(self, url: str, *, lease: float = LOCK_LEASE_SECONDS) -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            socket_timeout=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 2),
        )
        self._take = self._redis.register_script(_TAKE)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._lease = lease

    def __repr__(self) -> str:
        return "RedisBackend()"

    # -- call limits ------------------------------------------------------------------------------

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        member = f"{now}:{uuid.uuid4().hex}"
        with self._answering():
            wait = self._take(keys=[f"psatriage:window:{key}"], args=[now, window, limit, member])
        return float(wait)

    def count(self, key: str, window: float, now: float) -> int:
        with self._answering():
            return int(self._redis.zcount(f"psatriage:window:{key}", now - window, "+inf"))

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        token = uuid.uuid4().hex
        with self._answering():
            got = self._acquire(keys=[f"psatriage:slots:{key}"], args=[now, lease, limit, token])
        return token if int(got) else None

    def release(self, key: str, token: str) -> None:
        with self._answering():
            self._redis.zrem(f"psatriage:slots:{key}", token)

    # -- shared tokens ----------------------------------------------------------------------------

    def get(self, name: str) -> bytes | None:
        with self._answering():
            value = self._redis.get(f"psatriage:shared:{name}")
        return value if isinstance(value, bytes) else None

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        left = math.ceil((expires_at - time.time()) * 1000)
        if left > 0:
            with self._answering():
                self._redis.set(f"psatriage:shared:{name}", value, px=left)

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        lock, token = f"psatriage:shared-lock:{name}", uuid.uuid4().hex
        held = self._lock(lock, token, timeout)
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

    def _lock(self, lock: str, token: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        lease = math.ceil(self._lease * 1000)
        while True:
            with self._answering():
                if self._redis.set(lock, token, nx=True, px=lease):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))  # noqa: S311 - jitter

    @contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise StoreUnavailable(self.where, exc) from exc
