"""A per-tenant circuit breaker in front of the model.

After ``threshold`` consecutive transient failures the circuit opens: for ``cooldown`` seconds no
call is made and events are rescheduled at once (``TransientError`` with the time left), instead
of every worker hammering a dead model. Then one trial call is let through (half-open): success
closes the circuit, failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from psatriage.errors import TransientError

T = TypeVar("T")


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.cooldown, self._clock = threshold, cooldown, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def call(self, function: Callable[[], T]) -> T:
        self._before()
        try:
            result = function()
        except TransientError:
            self._failed()
            raise
        except BaseException:
            self._release_trial()
            raise
        self._succeeded()
        return result

    def _before(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            left = self._opened_at + self.cooldown - self._clock()
            if left > 0 or self._trial:
                raise TransientError(
                    f"the model failed {self._failures} times in a row; paused (circuit open)",
                    retry_after=max(left, 1.0),
                )
            self._trial = True  # half-open: this call is the trial

    def _failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if self._failures >= self.threshold:
                self._opened_at = self._clock()

    def _succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def _release_trial(self) -> None:
        with self._lock:
            self._trial = False
