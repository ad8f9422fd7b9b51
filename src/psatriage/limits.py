"""Client-side limits on calls to a PSA: a rolling-window rate and a cap on concurrent calls.

One ``CallLimits`` per adapter instance (that is, per tenant and process), shared by its worker
threads. ``with limits.call(endpoint):`` waits for a concurrency slot and for room in the rolling
window; a wait longer than ``max_wait`` raises ``TransientError(retry_after=...)`` so the job is
rescheduled instead of holding a worker.

The window counts per endpoint or for the whole tenant (``per_endpoint``): Autotask limits a
database as a whole (10,000 calls per hour), Kaseya BMS each endpoint (1,500 per hour).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from psatriage.errors import TransientError


class RollingWindow:
    """At most ``limit`` calls in any ``window`` seconds, per key."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rolling window needs limit >= 1 and window > 0")
        self.limit, self.window, self.max_wait = limit, window, max_wait
        self._clock, self._sleep = clock, sleep
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str = "") -> None:
        """Take one call for ``key``, waiting briefly if the window is full."""
        while True:
            with self._lock:
                now = self._clock()
                calls = self._calls.setdefault(key, deque())
                while calls and calls[0] <= now - self.window:
                    calls.popleft()
                if len(calls) < self.limit:
                    calls.append(now)
                    return
                wait = calls[0] + self.window - now
            if wait > self.max_wait:
                raise TransientError(
                    f"client-side limit of {self.limit} calls per {self.window:.0f} s reached",
                    retry_after=wait,
                )
            self._sleep(wait)

    def used(self, key: str = "") -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._calls.get(key, ()) if t > now - self.window)


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
        max_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.window = (
            RollingWindow(per_window, window_seconds, max_wait=max_wait, clock=clock, sleep=sleep)
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
