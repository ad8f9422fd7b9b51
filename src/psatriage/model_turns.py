"""Turns at the classifier: how many of a worker process's tickets are being classified at once.

A worker process holds ``workers × (1 + worker_lookahead)`` tickets. ``workers`` of them may be
at the classifier at once (for a model server: that many calls in flight), each tenant at most
its bulkhead of them; the others read their ticket before their turn or write their category and
note after it. So when the model answers one ticket, the worker's next ticket is ready to be
sent, and the model does not wait for our own work (``docs/PERFORMANCE.md``, round 13).

Turns are taken only where a worker thread has bound them (``bound``): a classification outside
the workers (the CLI, a backtest, the console) takes none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar


class ModelTurns:
    """``workers`` turns in all, and each tenant at most its cap of them."""

    def __init__(self, workers: int, caps: Mapping[str, int]) -> None:
        self._all = threading.Semaphore(workers)
        self._tenants = {name: threading.Semaphore(cap) for name, cap in caps.items()}

    @contextmanager
    def turn(self, tenant: str) -> Iterator[None]:
        """Wait for a turn of ``tenant`` (a tenant the pool does not know only for a turn of
        all), hold it while the block runs."""
        own = self._tenants.get(tenant)
        if own is not None:
            own.acquire()
        try:
            with self._all:
                yield
        finally:
            if own is not None:
                own.release()


# the turns of the worker thread's ticket, and whether it holds one now (a turn is not nested)
_bound: ContextVar[tuple[ModelTurns, str] | None] = ContextVar("model_turns", default=None)
_holding: ContextVar[bool] = ContextVar("model_turn_held", default=False)


@contextmanager
def bound(turns: ModelTurns, tenant: str) -> Iterator[None]:
    """In this block, ``turn()`` takes a turn of ``tenant`` from ``turns``."""
    token = _bound.set((turns, tenant))
    try:
        yield
    finally:
        _bound.reset(token)


@contextmanager
def turn() -> Iterator[None]:
    """A turn at the classifier for the block, if the thread's ticket is to take one (see
    ``bound``) and does not hold one already; otherwise the block just runs."""
    current = _bound.get()
    if current is None or _holding.get():
        yield
        return
    turns, tenant = current
    with turns.turn(tenant):
        token = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(token)
