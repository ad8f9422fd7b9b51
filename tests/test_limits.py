from __future__ import annotations

import threading
import time

import pytest

from psatriage.errors import TransientError
from psatriage.limits import (
    CallLimits,
    ConcurrencyLimit,
    RollingWindow,
    share_windows,
    windows_for,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rolling_window_waits_briefly_then_refuses_long_waits() -> None:
    clock = Clock()
    window = RollingWindow(3, 10, max_wait=5, clock=clock, sleep=clock.sleep)
    for _ in range(3):  # calls at 1000, 1001, 1002
        window.acquire("x")
        clock.now += 1
    assert window.used("x") == 3
    window.acquire("y")  # other keys have their own window
    clock.now = 1006  # the call at 1000 leaves the window at 1010: 4 s is short enough to wait
    window.acquire("x")
    assert clock.slept == [pytest.approx(4)]
    strict = RollingWindow(1, 10, max_wait=5, clock=clock, sleep=clock.sleep)
    strict.acquire("x")
    with pytest.raises(TransientError) as caught:  # next room in 10 s: reschedule instead
        strict.acquire("x")
    assert caught.value.retry_after == pytest.approx(10)


def test_concurrency_limit_never_exceeded() -> None:
    limit = ConcurrencyLimit(3)
    active, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal active, peak
        with limit.hold("Tickets"):
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.01)
            with lock:
                active -= 1

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 3


def test_call_limits_per_tenant_or_per_endpoint() -> None:
    clock = Clock()
    tenant_wide = CallLimits(per_window=2, max_wait=0, clock=clock, sleep=clock.sleep)
    with tenant_wide.call("Tickets"), tenant_wide.call("Notes"):
        pass
    with pytest.raises(TransientError), tenant_wide.call("Other"):
        pass
    per_endpoint = CallLimits(
        per_window=2, per_endpoint=True, max_wait=0, clock=clock, sleep=clock.sleep
    )
    for endpoint in ("a", "a", "b", "b"):
        with per_endpoint.call(endpoint):
            pass
    assert per_endpoint.used("a") == 2
    with pytest.raises(TransientError), per_endpoint.call("a"):
        pass


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        RollingWindow(0, 1)
    with pytest.raises(ValueError, match="limit"):
        ConcurrencyLimit(0)


@pytest.fixture(params=["redis", "postgresql"])
def shared_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("redis_url" if request.param == "redis" else "postgres_url")
    return url


def test_shared_windows_count_every_process_against_one_limit(shared_url: str) -> None:
    # two stores on one server stand for two worker processes
    first, second = windows_for(shared_url), windows_for(shared_url)
    assert first is not None and second is not None
    try:
        now = time.time()
        assert first.take("autotask:acme|", 3, 60, now) == 0.0
        assert second.take("autotask:acme|", 3, 60, now + 1) == 0.0
        assert first.take("autotask:acme|", 3, 60, now + 2) == 0.0
        wait = second.take("autotask:acme|", 3, 60, now + 3)
        assert wait == pytest.approx(57, abs=0.01)  # the first call leaves at now + 60
        assert first.take("autotask:other|", 3, 60, now + 3) == 0.0  # another tenant
        assert second.count("autotask:acme|", 60, now + 3) == 3
        assert first.take("autotask:acme|", 3, 60, now + 61) == 0.0  # the window moved on
    finally:
        first.close()
        second.close()


def test_call_limits_use_the_shared_windows_when_the_runtime_shares_them(shared_url: str) -> None:
    store = windows_for(shared_url)
    share_windows(store)
    try:
        one = CallLimits(per_window=2, max_wait=0, scope="kaseya_bms:acme")
        other = CallLimits(per_window=2, max_wait=0, scope="kaseya_bms:acme")
        with one.call("tickets"), other.call("tickets"):
            pass
        with pytest.raises(TransientError), one.call("tickets"):
            pass
        assert other.used() == 2
    finally:
        share_windows(None)
        assert store is not None
        store.close()


def test_sqlite_deployments_keep_windows_in_memory() -> None:
    assert windows_for("sqlite:///queue.db") is None
