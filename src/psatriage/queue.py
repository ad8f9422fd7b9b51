"""The job queue: Huey on the queue URL, carrying two tasks (process an event, poll a tenant).

Huey only delivers; the ``events`` table is the ledger, and what the tasks do is
``psatriage.jobs``. A process that only enqueues (the web edge) needs no task bodies; a consumer is
given them when it is created (``Queue.consumer``).

Queue storage by URL: ``sqlite:///PATH`` (default), ``redis://...``, ``postgresql://...``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.consumer import Consumer, Worker
from huey.storage import PostgresStorage, SqliteStorage
from sqlalchemy.engine import make_url

from psatriage.errors import ConfigError


def make_huey(url: str) -> Huey:
    """A Huey instance for the queue URL (no results are stored: the ledger has them)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"results": False, "utc": True}
    if backend == "sqlite":
        database = parsed.database or "queue.db"
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey("psatriage", filename=database, storage_class=_SqliteQueue, **options)
    if backend == "redis":
        return RedisHuey("psatriage", url=url, **options)
    if backend in {"postgresql", "postgres"}:
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresHuey("psatriage", dsn=dsn, storage_class=_PostgresQueue, **options)
    raise ConfigError(
        f"PSATRIAGE_QUEUE_URL: unsupported scheme {parsed.drivername!r}; "
        "fix: use sqlite:///PATH, redis://HOST:PORT/DB or postgresql://USER@HOST/DB"
    )


class _SqliteQueue(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite storage with ``synchronous=NORMAL`` (WAL): no fsync per enqueue.

    Safe here because the queue is not the record: the ledger is, and the reaper re-queues any
    event whose queue entry a power cut lost.
    """

    def _create_connection(self) -> Any:
        connection = super()._create_connection()
        connection.execute("pragma synchronous=1")
        return connection


class _PostgresQueue(PostgresStorage):  # type: ignore[misc]
    """Huey's PostgreSQL storage, its tables created under an advisory lock: the web and worker
    processes start together, and concurrent ``CREATE TABLE IF NOT EXISTS`` can fail."""

    def initialize_schema(self) -> None:
        with self.db(commit=True, close=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('psatriage:queue-ddl'))")
            for statement in self.ddl:
                cursor.execute(statement)


class _WakeableWorker(Worker):  # type: ignore[misc]
    """A worker that an enqueue in the same process wakes at once, instead of at its next poll."""

    wakeup: threading.Condition

    def sleep(self) -> None:
        with self.wakeup:
            self.wakeup.wait(timeout=min(self.delay, self.max_delay))


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves signal handling to its host (uvicorn in ``psatriage serve``) and
    whose idle workers wake up when the web path enqueues."""

    def __init__(self, huey: Huey, *, wakeup: threading.Condition, **options: Any) -> None:
        self._wakeup = wakeup
        super().__init__(huey, **options)

    def _create_worker(self) -> Worker:
        worker = _WakeableWorker(
            huey=self.huey,
            stop_flag=self.stop_flag,
            default_delay=self.default_delay,
            max_delay=self.max_delay,
            backoff=self.backoff,
            max_tasks=self.max_tasks,
        )
        worker.wakeup = self._wakeup
        return worker

    def _set_signal_handlers(self) -> None:
        return


@dataclass(frozen=True, slots=True)
class Tasks:
    """What a consumer does with each task it takes (``psatriage.jobs`` provides them)."""

    process_event: Callable[[int], object]
    poll_tenant: Callable[[str], object]


class Queue:
    """The job queue of one process."""

    def __init__(self, url: str, *, poll_seconds: float) -> None:
        self.huey = make_huey(url)
        self._poll_seconds = poll_seconds
        self._wakeup = threading.Condition()
        self._tasks: Tasks | None = None
        self._process = self.huey.task(name="process_event")(self._run_process)
        self._poll = self.huey.task(name="poll_tenant")(self._run_poll)

    def enqueue(self, event_id: int) -> None:
        self._process(event_id)
        with self._wakeup:  # an idle embedded worker starts now, not at its next poll
            self._wakeup.notify()

    def schedule(self, event_id: int, delay: float) -> None:
        self._process.schedule(args=(event_id,), delay=delay)

    def poll(self, tenant: str) -> None:
        self._poll(tenant)

    def schedule_poll(self, tenant: str, delay: float) -> None:
        self._poll.schedule(args=(tenant,), delay=delay)

    def reachable(self) -> bool:
        try:
            self.huey.storage.queue_size()
        except Exception:  # noqa: BLE001 - any storage error means "not reachable" for /readyz
            return False
        return True

    def consumer(self, tasks: Tasks, *, workers: int, embedded: bool) -> Consumer:
        """A consumer running ``tasks``: ``embedded`` in a host process (``psatriage serve``),
        or on its own (``psatriage worker``)."""
        self._tasks = tasks
        poll = self._poll_seconds
        options: dict[str, Any] = {
            "workers": workers,
            "worker_type": "thread",
            "periodic": True,
            "initial_delay": poll,
            "backoff": 1.0,  # keep polling at `poll` when idle: a ticket starts within ~poll
            "max_delay": poll,
            "check_worker_health": True,
        }
        if embedded:
            return _EmbeddedConsumer(self.huey, wakeup=self._wakeup, **options)
        return self.huey.create_consumer(**options)

    def close(self) -> None:
        self.huey.storage.close()

    def _run_process(self, event_id: int) -> None:
        assert self._tasks is not None  # tasks are only taken by a consumer, which has them
        self._tasks.process_event(event_id)

    def _run_poll(self, tenant: str) -> None:
        assert self._tasks is not None
        self._tasks.poll_tenant(tenant)
