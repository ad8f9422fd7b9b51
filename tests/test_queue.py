"""The job queue on its three storages (SQLite, Redis, PostgreSQL): what is enqueued, scheduled or
polled reaches the consumer's tasks, once each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage.errors import ConfigError
from psatriage.queue import Queue, Tasks, make_huey

DEADLINE = 120  # seconds; a busy CI machine may take long to start a consumer


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
def queue(queue_url: str) -> Iterator[Queue]:
    opened = Queue(queue_url, poll_seconds=0.01)
    yield opened
    opened.close()


class Taken:
    """The tasks a consumer ran, and a way to wait for a number of them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self._changed = threading.Condition()

    def add(self, kind: str, value: object) -> None:
        with self._changed:
            self.items.append((kind, value))
            self._changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, object]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.items) >= count, timeout=DEADLINE)
            return sorted(self.items, key=str)

    def tasks(self) -> Tasks:
        return Tasks(
            process_event=lambda event_id: self.add("event", event_id),
            poll_tenant=lambda tenant: self.add("poll", tenant),
        )


def test_enqueued_scheduled_and_polled_tasks_reach_the_consumer(queue: Queue) -> None:
    assert queue.reachable()
    taken = Taken()
    queue.enqueue(1)
    queue.schedule(2, delay=0.05)
    queue.poll("acme")
    queue.schedule_poll("contoso", delay=0.05)
    consumer = queue.consumer(taken.tasks(), workers=2, embedded=True)
    consumer.start()
    try:
        ran = taken.wait_for(4)
    finally:
        consumer.stop(graceful=True)
    assert ran == [("event", 1), ("event", 2), ("poll", "acme"), ("poll", "contoso")]


def test_an_enqueue_in_the_same_process_reaches_a_running_embedded_consumer(
    queue: Queue,
) -> None:
    taken = Taken()
    consumer = queue.consumer(taken.tasks(), workers=1, embedded=True)
    consumer.start()
    try:
        queue.enqueue(7)
        assert taken.wait_for(1) == [("event", 7)]
    finally:
        consumer.stop(graceful=True)


def test_unknown_queue_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PSATRIAGE_QUEUE_URL"):
        make_huey("amqp://localhost")


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
