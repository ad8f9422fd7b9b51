from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
import redis

from psatriage.errors import TransientError
from psatriage.shared.base import LimitStore
from psatriage.shared.limits import (
    CallLimits,
    ConcurrencyLimit,
    MemoryLimits,
    RollingWindow,
    limits_for,
    share_limits,
)
from psatriage.shared.redis_backend import RedisBackend
from psatriage.shared.sqlite_backend import SqliteBackend
from tests.shared.conftest import Database


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


def test_shared_windows_count_every_process_against_one_limit(shared_url: str) -> None:
    # two stores on one server stand for two worker processes
    first, second = limits_for(shared_url), limits_for(shared_url)
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
    store = limits_for(shared_url)
    share_limits(store)
    try:
        one = CallLimits(per_window=2, max_wait=0, scope="kaseya_bms:acme")
        other = CallLimits(per_window=2, max_wait=0, scope="kaseya_bms:acme")
        with one.call("tickets"), other.call("tickets"):
            pass
        with pytest.raises(TransientError), one.call("tickets"):
            pass
        assert other.used() == 2
    finally:
        share_limits(None)
        assert store is not None
        store.close()


def test_sqlite_deployments_share_windows_in_a_file_beside_the_queue(tmp_path: Path) -> None:
    store = limits_for(f"sqlite:///{tmp_path / 'queue.db'}")
    assert isinstance(store, SqliteBackend)
    assert store.path == tmp_path / "queue.db.shared"
    store.close()


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LimitStore, LimitStore]]:
    """Two stores standing for two worker processes (in memory: one process, one store)."""
    if request.param == "memory":
        memory = MemoryLimits()
        yield memory, memory
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        url = request.getfixturevalue("redis_url" if request.param == "redis" else "postgres_url")
    first, second = limits_for(url), limits_for(url)
    assert first is not None and second is not None
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_slots_are_counted_per_key_released_by_token_and_reclaimed_after_the_lease(
    two_stores: tuple[LimitStore, LimitStore],
) -> None:
    first, second = two_stores
    now, key = time.time(), "autotask:acme|Tickets"
    held = [first.acquire(key, 3, 120, now), second.acquire(key, 3, 120, now), None]
    held[2] = first.acquire(key, 3, 120, now)
    assert None not in held and len(set(held)) == 3
    assert second.acquire(key, 3, 120, now + 1) is None  # all three taken, by either process
    assert second.acquire("autotask:other|Tickets", 3, 120, now + 1)  # another tenant
    assert second.acquire("autotask:acme|Companies", 3, 120, now + 1)  # another endpoint
    second.release(key, "not-a-token")  # unknown tokens are harmless and free nothing
    assert first.acquire(key, 3, 120, now + 1) is None
    token = held[0]
    assert token is not None
    second.release(key, token)  # released by another process: the slot is the key's, not ours
    second.release(key, token)  # twice is harmless
    again = first.acquire(key, 3, 120, now + 2)
    assert again is not None
    assert second.acquire(key, 3, 120, now + 119) is None  # the first two leases still run
    reclaimed = second.acquire(key, 3, 120, now + 120.5)  # they ran out: a crash loses nothing
    assert reclaimed is not None
    assert first.acquire(key, 3, 120, now + 120.5) is not None
    assert first.acquire(key, 3, 120, now + 120.5) is None  # "again" (until now + 122) holds one


def test_concurrency_limit_holds_across_processes(
    two_stores: tuple[LimitStore, LimitStore],
) -> None:
    # two limiters on two stores stand for two worker processes, six threads each
    limiters = [
        ConcurrencyLimit(3, scope="autotask:acme", max_wait=30, store=s) for s in two_stores
    ]
    active, peak, calls = 0, 0, 0
    lock = threading.Lock()

    def work(limiter: ConcurrencyLimit) -> None:
        nonlocal active, peak, calls
        for _ in range(5):
            with limiter.hold("Tickets"):
                with lock:
                    active += 1
                    peak, calls = max(peak, active), calls + 1
                time.sleep(0.01)
                with lock:
                    active -= 1

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters for _ in range(6)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"peak {peak} of 3 over {calls} calls in {time.perf_counter() - started:.2f} s")
    assert calls == 60
    assert peak == 3  # never more, and the limit was used


def test_waiting_for_a_slot_ends_in_a_transient_error(
    two_stores: tuple[LimitStore, LimitStore],
) -> None:
    first, second = two_stores
    now = time.time()
    taken = [first.acquire("autotask:acme|Tickets", 3, 120, now) for _ in range(3)]
    limiter = ConcurrencyLimit(3, scope="autotask:acme", max_wait=0.3, store=second)
    started = time.perf_counter()
    with (
        pytest.raises(TransientError, match="3 concurrent calls") as caught,
        limiter.hold("Tickets"),
    ):
        pytest.fail("a slot was given while all three were taken")
    waited = time.perf_counter() - started
    print(f"gave up after {waited:.3f} s")
    assert 0.3 <= waited < 1.0
    assert caught.value.retry_after == 1.0
    with limiter.hold("Notes"):  # other endpoints are not affected
        pass
    token = taken[0]
    assert token is not None
    first.release("autotask:acme|Tickets", token)
    with limiter.hold("Tickets"):  # and the slot given back is there to take
        pass


def test_a_slot_held_past_its_lease_is_taken_back(
    two_stores: tuple[LimitStore, LimitStore],
) -> None:
    first, second = two_stores
    clock = Clock()
    clock.now = time.time()
    crashed = ConcurrencyLimit(1, lease=120, max_wait=0, clock=clock, store=first)
    alive = ConcurrencyLimit(1, lease=120, max_wait=0, clock=clock, store=second)
    with crashed.hold("Tickets"):  # a process that dies here never releases its slot
        with pytest.raises(TransientError), alive.hold("Tickets"):
            pass
        clock.now += 121
        with alive.hold("Tickets"):  # the lease ran out
            pass


def test_call_limits_hold_shared_slots_when_the_runtime_shares_them(shared_url: str) -> None:
    store = limits_for(shared_url)
    share_limits(store)
    try:
        one = CallLimits(concurrent_per_endpoint=1, max_wait=0.1, scope="autotask:acme")
        other = CallLimits(concurrent_per_endpoint=1, max_wait=0.1, scope="autotask:acme")
        elsewhere = CallLimits(concurrent_per_endpoint=1, max_wait=0.1, scope="autotask:beta")
        with one.call("Tickets"):
            with pytest.raises(TransientError), other.call("Tickets"):
                pass
            with other.call("Companies"), elsewhere.call("Tickets"):
                pass
        with other.call("Tickets"):
            pass
    finally:
        share_limits(None)
        assert store is not None
        store.close()


def test_postgres_limits_reconnect_after_the_server_ends_the_connection(
    database: Database,
) -> None:
    store = limits_for(database.url)
    assert store is not None
    try:
        now = time.time()
        assert store.take("autotask:acme|", 10, 60, now) == 0.0
        assert database.end_sessions() == 1  # the store's one connection
        assert store.take("autotask:acme|", 10, 60, now + 1) == 0.0
        token = store.acquire("autotask:acme|Tickets", 3, 120, now + 1)
        assert token is not None
        assert store.count("autotask:acme|", 60, now + 1) == 2
        assert database.end_sessions() == 1
        store.release("autotask:acme|Tickets", token)
        assert store.acquire("autotask:acme|Tickets", 1, 120, now + 1) is not None
        # the database stays away: the job is retried later, not failed
        database.allow_connections(False)
        assert database.end_sessions() == 1
        with pytest.raises(TransientError, match="PostgreSQL"):
            store.take("autotask:acme|", 10, 60, now + 2)
    finally:
        store.close()


def test_a_slot_whose_release_failed_in_an_outage_is_given_back_on_the_next_call(
    database: Database,
) -> None:
    store = limits_for(database.url)
    assert store is not None
    limit = ConcurrencyLimit(1, scope="connectwise:acme", max_wait=0.5, store=store)
    try:
        with limit.hold("GET tickets"):  # the database goes away during the call
            database.allow_connections(False)
            database.end_sessions()
        database.allow_connections(True)
        with limit.hold("GET tickets"):  # not held for the rest of the 120 s lease
            pass
    finally:
        store.close()


def test_redis_limits_recover_from_a_dropped_connection(redis_url: str) -> None:
    store = limits_for(redis_url)
    assert store is not None
    admin = redis.Redis.from_url(redis_url)
    try:
        now = time.time()
        assert store.take("autotask:acme|", 10, 60, now) == 0.0
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        admin.script_flush()  # a restarted server has forgotten the scripts too
        assert store.take("autotask:acme|", 10, 60, now + 1) == 0.0
        assert store.acquire("autotask:acme|Tickets", 3, 120, now + 1) is not None
    finally:
        store.close()
        admin.close()
    gone = RedisBackend("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        with pytest.raises(TransientError, match="Redis"):
            gone.acquire("autotask:acme|Tickets", 3, 120, time.time())
    finally:
        gone.close()


_RECORD = """
local active = redis.call('INCR', KEYS[1])
if active > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], active) end
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
local inside = 0
for _, n in ipairs(redis.call('HVALS', KEYS[3])) do
  if tonumber(n) > 0 then inside = inside + 1 end
end
if inside > 1 then redis.call('SET', KEYS[4], 1) end
return active
"""


def _worker_process(url: str, counters_url: str, name: str, start: Barrier) -> None:
    """One worker process of the multi-process test: four threads, ten calls each, limited in
    the store of the queue ``url``, counted in Redis."""
    store = limits_for(url)
    share_limits(store)
    counters = redis.Redis.from_url(counters_url)
    record = counters.register_script(_RECORD)
    limits = CallLimits(concurrent_per_endpoint=3, max_wait=30, scope="autotask:acme")

    def work() -> None:
        for _ in range(10):
            with limits.call("Tickets"):
                record(keys=["t:active", "t:peak", "t:inside", "t:mixed"], args=[name])
                time.sleep(0.01)
                counters.hincrby("t:inside", name, -1)
                counters.decr("t:active")

    threads = [threading.Thread(target=work) for _ in range(4)]
    start.wait(timeout=60)  # both processes ready: their calls overlap
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters.close()
    assert store is not None
    store.close()


@pytest.mark.slow  # starts two Python processes (about 3 s, mostly their imports)
@pytest.mark.parametrize("queue", ["sqlite", "redis"])
def test_worker_processes_share_the_concurrency_cap(
    queue: str, redis_url: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}" if queue == "sqlite" else redis_url
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    processes = [
        spawn.Process(target=_worker_process, args=(url, redis_url, name, start))
        for name in ("one", "two")
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    assert [p.exitcode for p in processes] == [0, 0]
    counters = redis.Redis.from_url(redis_url)
    try:
        peak, mixed = counters.get("t:peak"), counters.get("t:mixed")
    finally:
        counters.close()
    print(f"peak {peak!r} in {time.perf_counter() - started:.2f} s (mixed: {mixed!r})")
    assert mixed == b"1"  # both processes held slots at the same time
    assert peak == b"3"  # and never more than three together


def _open_fresh_files(paths: list[str], start: Barrier, failures: Queue[str]) -> None:
    """One process of the next test: opens each new file together with the others."""
    for path in paths:
        store = SqliteBackend(Path(path))
        start.wait(timeout=60)
        try:
            store.take("autotask:acme|", 10, 60, time.time())
        except TransientError as exc:
            failures.put(str(exc))
        finally:
            store.close()


@pytest.mark.slow  # starts four Python processes (about 3 s, mostly their imports)
def test_processes_opening_a_new_shared_file_together_all_get_in(tmp_path: Path) -> None:
    """Switching a new SQLite file to WAL answers "locked" at once to a second process doing the
    same, without waiting: 11 of 40 such starts failed before the processes took turns."""
    spawn = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"{n}" / "queue.db.shared") for n in range(20)]
    start, failures = spawn.Barrier(4), spawn.Queue()
    processes = [
        spawn.Process(target=_open_fresh_files, args=(paths, start, failures)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * 4
    assert failures.empty(), failures.get()
    counted = SqliteBackend(Path(paths[-1]))
    assert counted.count("autotask:acme|", 60, time.time()) == 4
    counted.close()


def test_a_window_count_that_outgrew_its_calls_is_set_right(tmp_path: Path) -> None:
    store = SqliteBackend(tmp_path / "queue.db.shared")
    now = time.time()
    assert store.take("autotask:acme|", 2, 60, now) == 0.0
    with closing(sqlite3.connect(store.path)) as connection, connection:
        connection.execute("DELETE FROM window_calls")  # by hand: the count still says one
        connection.execute("UPDATE window_counts SET calls = 5")
    assert store.take("autotask:acme|", 2, 60, now + 1) == 0.0  # the rows count
    assert store.take("autotask:acme|", 2, 60, now + 2) == 0.0
    assert store.take("autotask:acme|", 2, 60, now + 3) == pytest.approx(58)
    store.close()


def test_a_sqlite_window_counts_its_calls_beside_them_and_lets_expired_ones_go(
    tmp_path: Path,
) -> None:
    store = SqliteBackend(tmp_path / "queue.db.shared")
    now, key = time.time(), "autotask:acme|"
    assert [store.take(key, 3, 60, now + n) for n in range(3)] == [0.0, 0.0, 0.0]
    assert store.take(key, 3, 60, now + 3) == pytest.approx(57)  # the first leaves at now + 60
    assert store.take(key, 3, 60, now + 61) == 0.0  # the first two are gone, one more counted
    with closing(sqlite3.connect(store.path)) as connection:
        rows = connection.execute("SELECT count(*) FROM window_calls").fetchone()[0]
        (counted,) = connection.execute(
            "SELECT calls FROM window_counts WHERE key = ?", (key,)
        ).fetchone()
    assert rows == counted == 2  # the expired rows were deleted, and the count followed them
    assert store.count(key, 60, now + 61) == 2
    store.close()


def test_each_thread_has_its_own_sqlite_connection_and_close_closes_them_all(
    tmp_path: Path,
) -> None:
    store = SqliteBackend(tmp_path / "queue.db.shared")
    now, key = time.time(), "autotask:acme|Tickets"
    tokens: list[str | None] = []
    barrier = threading.Barrier(4)

    def take_one() -> None:
        barrier.wait(timeout=10)  # all four at once, each on its own connection
        tokens.append(store.acquire(key, 3, 120, now))

    threads = [threading.Thread(target=take_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(t is None for t in tokens) == [False, False, False, True]  # never a fourth
    store.close()
    assert store.acquire(key, 3, 120, now) is None  # opened again after close: still three held
    store.release(key, next(t for t in tokens if t is not None))
    assert store.acquire(key, 3, 120, now) is not None
    store.close()


def test_a_sqlite_file_whose_tables_went_away_is_made_again_after_one_refusal(
    tmp_path: Path,
) -> None:
    store = SqliteBackend(tmp_path / "queue.db.shared")
    now, key = time.time(), "autotask:acme|"
    assert store.take(key, 2, 60, now) == 0.0
    with closing(sqlite3.connect(store.path)) as connection, connection:
        connection.execute("DROP TABLE window_calls")  # by hand, while the store is in use
    with pytest.raises(TransientError, match="did not answer"):
        store.take(key, 2, 60, now + 1)
    assert store.take(key, 2, 60, now + 2) == 0.0  # the table and its triggers are back
    assert store.count(key, 60, now + 2) == 1
    store.close()
