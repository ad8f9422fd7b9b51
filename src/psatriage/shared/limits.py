"""Client-side limits on calls to a PSA: a rolling-window rate and a cap on concurrent calls.

One ``CallLimits`` per adapter instance (that is, per tenant and process), shared by its worker
threads. ``with limits.call(endpoint):`` waits for a concurrency slot and for room in the rolling
window; a wait longer than ``max_wait`` raises ``CallLimitReached(retry_after=...)`` so the job is
rescheduled instead of holding a worker.

The window counts per endpoint or for the whole tenant (``per_endpoint``): Autotask limits a
database as a whole (10,000 calls per hour), Kaseya BMS each endpoint (1,500 per hour). The cap
on concurrent calls is per endpoint (Autotask: 3 threads per endpoint and integration). Windows
and slots live where every process of the deployment sees them (``share_limits``, set up by the
Runtime with a backend of ``psatriage.shared``): in the queue's Redis or PostgreSQL, or in a file
beside the queue's SQLite file, so every worker process counts against one limit. A limiter in a
process without a Runtime keeps them in memory. Keys carry the limiter's ``scope``
(e.g. ``"autotask:acme"``), so tenants never share a limit.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from psatriage.errors import CallLimitReached, TransientError
from psatriage.shared import backend_for
from psatriage.shared.base import LimitStore

log = structlog.get_logger(__name__)

LEASE_SECONDS = 120.0
"""How long a concurrency slot stays taken without a release: longer than any one HTTP call (30 s
read, 10 s connect), short enough that the slots of a crashed process come back soon."""

POLL_SECONDS = 0.05
"""Mean pause between two tries for a shared slot (jittered by half either way)."""


class MemoryLimits:
    """This process's windows and slots (a limiter's own, when no store is shared)."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._slots: dict[str, dict[str, float]] = {}
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

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        with self._lock:
            held = self._slots.setdefault(key, {})
            for token in [t for t, expires in held.items() if expires <= now]:
                del held[token]
            if len(held) >= limit:
                return None
            token = uuid.uuid4().hex
            held[token] = now + lease
            return token

    def release(self, key: str, token: str) -> None:
        with self._lock:
            self._slots.get(key, {}).pop(token, None)

    def close(self) -> None:
        return


_shared: LimitStore | None = None
_patience = 0.0


@contextmanager
def patience(max_wait: float) -> Iterator[None]:
    """Within the block, every limiter in this process waits up to ``max_wait`` seconds for its
    turn instead of raising ``CallLimitReached``: for a long command (``psatriage train``) that
    has no queue to be rescheduled on."""
    global _patience  # noqa: PLW0603 - one process-wide setting, for the length of a command
    before, _patience = _patience, max_wait
    try:
        yield
    finally:
        _patience = before


def share_limits(store: LimitStore | None) -> None:
    """Make ``store`` hold the windows and slots of every limiter in this process (None: each
    limiter keeps its own in memory)."""
    global _shared  # noqa: PLW0603 - one deployment-wide setting, made by the Runtime at start
    _shared = store


def limits_for(queue_url: str) -> LimitStore:
    """The windows and slots every process of the deployment shares: on the queue's Redis or
    PostgreSQL server and database, or in a file beside its SQLite file."""
    return backend_for(queue_url)


class RollingWindow:
    """At most ``limit`` calls in any ``window`` seconds, per key.

    Counted in ``store`` if given, else in the shared windows when the deployment has them
    (``share_limits``), so several worker processes stay under one limit together; else in
    this instance's memory.
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
        store: LimitStore | None = None,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rolling window needs limit >= 1 and window > 0")
        self.limit, self.window, self.max_wait, self.scope = limit, window, max_wait, scope
        self._clock, self._sleep = clock, sleep
        self._given, self._memory = store, MemoryLimits()

    def _store(self) -> tuple[LimitStore, float]:
        return _pick(self._given, self._memory, self._clock)

    def acquire(self, key: str = "") -> None:
        """Take one call for ``key``, waiting briefly if the window is full."""
        while True:
            store, now = self._store()
            wait = store.take(f"{self.scope}|{key}", self.limit, self.window, now)
            if wait <= 0:
                return
            if wait > max(self.max_wait, _patience):
                raise CallLimitReached(
                    f"client-side limit of {self.limit} calls per {self.window:.0f} s reached",
                    retry_after=wait,
                )
            self._sleep(wait)

    def used(self, key: str = "") -> int:
        store, now = self._store()
        return store.count(f"{self.scope}|{key}", self.window, now)


class ConcurrencyLimit:
    """At most ``limit`` calls in flight at once, per key.

    Threads of this process first queue on a local semaphore (so at most ``limit`` of them ask
    the store), then take a slot in ``store`` if given, else in the shared store when the
    deployment has one (``share_limits``), else in this instance's memory, polling every
    ``POLL_SECONDS`` or so while all are taken. A slot is a lease of ``lease`` seconds: a process
    that dies mid-call frees its slots when the lease runs out. If no slot comes within
    ``max_wait``, ``hold`` raises ``CallLimitReached`` so the job is rescheduled.
    """

    def __init__(
        self,
        limit: int,
        *,
        scope: str = "",
        max_wait: float = 2.0,
        lease: float = LEASE_SECONDS,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        store: LimitStore | None = None,
    ) -> None:
        if limit < 1 or lease <= 0:
            raise ValueError("a concurrency limit needs limit >= 1 and lease > 0")
        self.limit, self.scope, self.max_wait, self.lease = limit, scope, max_wait, lease
        self._clock, self._sleep = clock, sleep
        self._given, self._memory = store, MemoryLimits()
        self._local: dict[str, threading.BoundedSemaphore] = {}
        self._unreleased: list[tuple[LimitStore, str, str]] = []
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str = "") -> Iterator[None]:
        """Hold one of ``key``'s slots for the duration of the block."""
        deadline = self._elapsed() + max(self.max_wait, _patience)
        name = f"{self.scope}|{key}"
        with self._lock:
            local = self._local.setdefault(key, threading.BoundedSemaphore(self.limit))
        if not local.acquire(timeout=max(0.0, deadline - self._elapsed())):
            raise self._busy(name)
        try:
            store = _pick(self._given, self._memory, self._clock)[0]
            token = self._acquire(store, name, deadline)
            try:
                yield
            finally:
                self._release(store, name, token)
        finally:
            local.release()

    def _elapsed(self) -> float:
        return self._clock() if self._clock else time.monotonic()

    def _acquire(self, store: LimitStore, name: str, deadline: float) -> str:
        self._release_late()
        while True:
            now = self._clock() if self._clock else time.time()  # leases: comparable wall clock
            token = store.acquire(name, self.limit, self.lease, now)
            if token is not None:
                return token
            left = deadline - self._elapsed()
            if left <= 0:
                raise self._busy(name)
            self._sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))  # noqa: S311 - jitter

    def _release(self, store: LimitStore, name: str, token: str) -> None:
        try:
            store.release(name, token)
        except TransientError as exc:  # the call is done: give the slot back on a later call
            log.warning("concurrency slot not released yet", key=name, error=str(exc))
            with self._lock:
                self._unreleased.append((store, name, token))

    def _release_late(self) -> None:
        """Give back the slots whose release failed while the store was away, so a short outage
        does not hold them for a whole lease (the lease remains the backstop)."""
        with self._lock:
            late, self._unreleased = self._unreleased, []
        for store, name, token in late:
            self._release(store, name, token)

    def _busy(self, name: str) -> CallLimitReached:
        """All slots stayed taken for ``max_wait``: try again after about as long."""
        return CallLimitReached(
            f"client-side limit of {self.limit} concurrent calls ({name}) stayed reached for "
            f"{self.max_wait:.1f} s",
            retry_after=max(self.max_wait, 1.0),
        )


def _pick(
    given: LimitStore | None, memory: LimitStore, clock: Callable[[], float] | None
) -> tuple[LimitStore, float]:
    """The store a limiter uses and its ``now``: the one it was given, else the shared one
    (unless a test injected a clock), else its own memory."""
    if given is not None:
        store = given
    else:
        store = _shared if _shared is not None and clock is None else memory
    now = clock() if clock else time.time()  # wall clock: comparable between processes
    return store, now


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
        self.scope = scope
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
            ConcurrencyLimit(
                concurrent_per_endpoint, scope=scope, max_wait=max_wait, clock=clock, sleep=sleep
            )
            if concurrent_per_endpoint
            else None
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
