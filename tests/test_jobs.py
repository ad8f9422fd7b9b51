"""The queue on its three storages (SQLite, Redis, PostgreSQL), the worker loop and the reaper."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage.config import AppConfig
from psatriage.domain import TicketEvent
from psatriage.errors import ConfigError
from psatriage.jobs import backoff_seconds, make_huey
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def runtime(tmp_path: Path, queue_url: str) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path, queue_url=queue_url, queue_poll_seconds=0.01)
    built = Runtime(settings, AppConfig(tenants={}))
    yield built
    built.close()


def _wait_for(runtime: Runtime, event_id: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = runtime.ledger.get(event_id)
        assert row is not None
        if EventState(row.state).terminal:
            return row.state
        time.sleep(0.02)
    raise AssertionError(f"event {event_id} did not finish")


def _record(runtime: Runtime, key: str) -> int:
    event = TicketEvent("gone", "1", "added", True, key)
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return event_id


def test_enqueued_event_is_processed_by_a_consumer(runtime: Runtime) -> None:
    assert runtime.queue.reachable()
    consumer = runtime.queue.consumer(workers=2, embedded=True)
    consumer.start()
    try:
        started = time.monotonic()
        event_id = _record(runtime, "a")
        runtime.queue.enqueue(event_id)
        assert _wait_for(runtime, event_id) == "failed"
        took = time.monotonic() - started
    finally:
        consumer.stop(graceful=True)
    row = runtime.ledger.get(event_id)
    assert row is not None and row.reason == "tenant is no longer configured"
    assert took < 5


def test_reaper_requeues_events_the_queue_lost(runtime: Runtime) -> None:
    runtime.settings.lease_seconds = 0  # type: ignore[misc]
    event_id = _record(runtime, "lost")  # recorded, never enqueued
    time.sleep(0.05)
    assert runtime.queue.reap() == 1
    consumer = runtime.queue.consumer(workers=1, embedded=True)
    consumer.start()
    try:
        assert _wait_for(runtime, event_id) == "failed"
    finally:
        consumer.stop(graceful=True)


def test_unknown_queue_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PSATRIAGE_QUEUE_URL"):
        make_huey("amqp://localhost")


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    delays = [backoff_seconds(n, base=2, cap=60, retry_after=None) for n in range(1, 10)]
    assert 1 <= delays[0] <= 2
    assert all(d <= 60 for d in delays)
    assert 30 <= delays[-1] <= 60
    assert backoff_seconds(1, base=2, cap=60, retry_after=45) >= 45
    assert backoff_seconds(1, base=2, cap=60, retry_after=9999) <= 60


def test_queues_opened_together_on_a_blank_postgresql_all_start(postgres_url: str) -> None:
    """Huey creates its tables when a process opens the queue; processes that start together
    must not trip over each other's CREATE TABLE IF NOT EXISTS."""
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_queue() -> None:
        try:
            start.wait()
            huey = make_huey(postgres_url)
            huey.storage.close()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_queue) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
