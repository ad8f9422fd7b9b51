"""Each tenant's health for the console: its PSA and its model answer (the same calls as
``psatriage config check``), its circuit breaker, its last poll or delivery, and its waiting events.

Connection checks call the PSA and the model, so a page never waits for them: a check older than
``health_seconds`` is run again in the background when a page asks, and the page shows the last
result with its age (or that the first check is under way).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from psatriage.errors import PsatriageError
from psatriage.runtime import Runtime
from psatriage.store.tables import utcnow

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str  # what answered, or what is wrong


@dataclass(frozen=True)
class TenantCheck:
    psa: Check
    model: Check
    at: datetime


def check(call: Callable[[], str]) -> Check:
    """Run one connection check; any failure is a result, never an exception."""
    try:
        return Check(True, call())
    except PsatriageError as exc:
        return Check(False, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug in a check must not break the console
        log.exception("connection check failed unexpectedly")
        return Check(False, f"internal error: {type(exc).__name__}")


class HealthProbe:
    """Cached connection checks per tenant, refreshed in the background when stale."""

    def __init__(self, runtime: Runtime, max_age_seconds: float) -> None:
        self._runtime = runtime
        self._max_age = max_age_seconds
        self._checks: dict[str, TenantCheck] = {}
        self._running: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def cached(self, tenant: str) -> TenantCheck | None:
        """The last check (possibly stale); starts a new one in the background when stale."""
        with self._lock:
            found = self._checks.get(tenant)
            stale = found is None or (utcnow() - found.at).total_seconds() > self._max_age
            start = stale and tenant not in self._running
            if start:
                self._running.add(tenant)
        if start:
            thread = threading.Thread(
                target=self._refresh_in_background, args=(tenant,), daemon=True
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        return found

    def wait(self, timeout: float) -> None:
        """Let the checks running in the background finish (at most ``timeout`` seconds), so
        the service closes its connections after them, not under them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            running = list(self._threads)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def refresh(self, tenant: str) -> TenantCheck:
        """Check the tenant's PSA and model now (blocking) and remember the result."""
        result = TenantCheck(
            psa=check(lambda: self._runtime.adapter(tenant).check_connection()),
            model=check(lambda: self._runtime.classifier(tenant).check_connection()),
            at=utcnow(),
        )
        with self._lock:
            self._checks[tenant] = result
        return result

    def _refresh_in_background(self, tenant: str) -> None:
        try:
            self.refresh(tenant)
        finally:
            with self._lock:
                self._running.discard(tenant)

    def breaker_open(self, tenant: str) -> bool:
        """Whether this process's circuit breaker for the tenant's model is open."""
        return self._runtime.deps(tenant).breaker.open
