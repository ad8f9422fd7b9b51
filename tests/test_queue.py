"""The wake-up channel on its three servers (local sockets, Redis, PostgreSQL): a wake-up sent by
one process's queue reaches the listeners of another's, and the listeners of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage.errors import ConfigError
from psatriage.queue import Queue

DEADLINE = 120  # seconds; a busy CI machine may take long to start a listener


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
def queues(queue_url: str) -> Iterator[tuple[Queue, Queue]]:
    """Two queues on one URL, as the web process and a worker process hold them."""
    web, worker = Queue(queue_url, poll_seconds=0.01), Queue(queue_url, poll_seconds=0.01)
    yield web, worker
    web.close()
    worker.close()


def test_a_wake_up_reaches_the_listeners_of_another_process(queues: tuple[Queue, Queue]) -> None:
    web, worker = queues
    assert web.reachable() and worker.reachable()
    woken = threading.Event()
    unlisten = worker.listen(woken.set)
    try:
        for _ in range(DEADLINE * 10):  # the listener subscribes on its own thread: send again
            web.wake()
            if woken.wait(0.1):
                break
        assert woken.is_set()
    finally:
        unlisten()


def test_a_wake_up_reaches_listeners_in_the_same_process_at_once(queue_url: str) -> None:
    queue = Queue(queue_url, poll_seconds=0.01)
    calls: list[int] = []
    unlisten = queue.listen(lambda: calls.append(1))
    try:
        queue.wake()
        assert calls  # called directly, before any server round trip
    finally:
        unlisten()
        queue.close()


def test_unknown_queue_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PSATRIAGE_QUEUE_URL"):
        Queue("amqp://localhost", poll_seconds=1)
