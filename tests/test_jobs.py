"""The jobs: the consumer runs them, the reaper re-queues lost events, backoff is capped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage import jobs
from psatriage.config import AppConfig
from psatriage.domain import TicketEvent
from psatriage.jobs import backoff_seconds
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path, queue_poll_seconds=0.01)
    built = Runtime(settings, AppConfig(tenants={}))
    yield built
    built.close()


def _wait_for(runtime: Runtime, event_id: int, timeout: float = 120) -> str:
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


def test_the_consumer_runs_process_event_for_what_is_enqueued(runtime: Runtime) -> None:
    consumer = jobs.consumer(runtime, workers=2, embedded=True)
    consumer.start()
    try:
        event_id = _record(runtime, "a")
        runtime.queue.enqueue(event_id)
        assert _wait_for(runtime, event_id) == "failed"
    finally:
        consumer.stop(graceful=True)
    row = runtime.ledger.get(event_id)
    assert row is not None and row.reason == "tenant is no longer configured"


def test_reaper_requeues_events_the_queue_lost(runtime: Runtime) -> None:
    runtime.settings.lease_seconds = 0  # type: ignore[misc]
    event_id = _record(runtime, "lost")  # recorded, never enqueued
    time.sleep(0.05)
    assert jobs.reap(runtime) == 1
    consumer = jobs.consumer(runtime, workers=1, embedded=True)
    consumer.start()
    try:
        assert _wait_for(runtime, event_id) == "failed"
    finally:
        consumer.stop(graceful=True)


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    delays = [backoff_seconds(n, base=2, cap=60, retry_after=None) for n in range(1, 10)]
    assert 1 <= delays[0] <= 2
    assert all(d <= 60 for d in delays)
    assert 30 <= delays[-1] <= 60
    assert backoff_seconds(1, base=2, cap=60, retry_after=45) >= 45
    assert backoff_seconds(1, base=2, cap=60, retry_after=9999) <= 60
