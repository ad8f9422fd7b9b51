"""Turns at the classifier: at most ``workers`` at once, each tenant at most its cap, only where a
worker bound them, never nested. Counts are asserted, never time."""

from __future__ import annotations

import threading
from collections.abc import Callable

from psatriage import model_turns
from psatriage.model_turns import ModelTurns

DEADLINE = 240  # seconds: generous for a loaded 2-core machine; never asserted on


class Peak:
    """How many threads are inside ``visit`` at once, at most; each stays until ``release``."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._lock = threading.Lock()

    def visit(self) -> None:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()
        assert self.release.wait(DEADLINE)
        with self._lock:
            self.inside -= 1


def _run_all(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def _turn_of(turns: ModelTurns, tenant: str, peak: Peak) -> Callable[[], None]:
    def run() -> None:
        with model_turns.bound(turns, tenant), model_turns.turn():
            peak.visit()

    return run


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()


def test_at_most_workers_turns_at_once_and_the_others_wait_for_one() -> None:
    turns, peak = ModelTurns(2, {"a": 2}), Peak()
    threads = _run_all([_turn_of(turns, "a", peak) for _ in range(5)])
    for _ in range(2):
        assert peak.entered.acquire(timeout=DEADLINE)
    assert not peak.entered.acquire(timeout=0.2)  # the third waits for a turn
    assert peak.inside == 2
    peak.release.set()
    _join(threads)
    assert peak.most == 2


def test_a_tenant_holds_at_most_its_cap_and_leaves_the_other_turns_to_the_others() -> None:
    turns, flood, quiet = ModelTurns(3, {"flood": 1, "quiet": 2}), Peak(), Peak()
    threads = _run_all([_turn_of(turns, "flood", flood) for _ in range(4)])
    assert flood.entered.acquire(timeout=DEADLINE)
    quiet_threads = _run_all([_turn_of(turns, "quiet", quiet) for _ in range(2)])
    for _ in range(2):  # both get a turn while the flooding tenant waits behind its cap
        assert quiet.entered.acquire(timeout=DEADLINE)
    assert flood.inside == 1
    quiet.release.set()
    flood.release.set()
    _join(threads + quiet_threads)
    assert flood.most == 1 and quiet.most == 2


def test_no_turn_is_taken_where_no_worker_bound_them_nor_inside_a_turn() -> None:
    turns = ModelTurns(1, {"a": 1})
    with model_turns.turn():  # outside the workers: nothing to wait for
        pass
    with model_turns.bound(turns, "a"), model_turns.turn(), model_turns.turn():
        pass  # the inner turn is the outer one's: with one turn in all, nesting would hang
    peak = Peak()
    peak.release.set()
    _join(_run_all([_turn_of(turns, "a", peak) for _ in range(3)]))  # every turn was given back
    assert peak.most == 1


def test_a_tenant_the_turns_do_not_know_takes_a_turn_of_all() -> None:
    turns, peak = ModelTurns(1, {}), Peak()
    threads = _run_all([_turn_of(turns, "new", peak) for _ in range(2)])
    assert peak.entered.acquire(timeout=DEADLINE)
    assert not peak.entered.acquire(timeout=0.2)
    peak.release.set()
    _join(threads)
    assert peak.most == 1
