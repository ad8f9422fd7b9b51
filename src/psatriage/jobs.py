"""Background work on Huey: ``process_event`` for each accepted event, and the reaper.

Huey only delivers; the ``events`` table is the ledger. A task claims its event with a lease before
working, so a duplicate delivery is a no-op; a worker killed mid-task leaves a lease that runs out,
and the reaper (every ``housekeeping_seconds``) queues the event again. Transient failures are
rescheduled with exponential backoff and jitter (Retry-After honored) instead of sleeping in a
worker.

Queue storage by URL: ``sqlite:///PATH`` (default), ``redis://...``, ``postgresql://...``.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.consumer import Consumer, Worker
from huey.storage import PostgresStorage, SqliteStorage
from sqlalchemy.engine import make_url

from psatriage import metrics, pipeline
from psatriage.domain import TicketEvent
from psatriage.errors import (
    AuthFailed,
    CallLimitReached,
    ConfigError,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.store.ledger import Claim
from psatriage.store.tables import EventState, utcnow

if TYPE_CHECKING:
    from psatriage.runtime import Runtime

log = structlog.get_logger(__name__)

_OUTCOME_STATES = {
    "applied": EventState.DONE,
    "suggested": EventState.DONE,
    "shadowed": EventState.DONE,
    "kept": EventState.KEPT,
}


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


class Queue:
    """The job queue of one process, bound to its ``Runtime``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.huey = make_huey(runtime.settings.effective_queue_url)
        self._wakeup = threading.Condition()
        self._process = self.huey.task(name="process_event")(self._process_event)
        self._poll = self.huey.task(name="poll_tenant")(self._poll_tenant)

    def enqueue(self, event_id: int) -> None:
        self._process(event_id)
        with self._wakeup:  # an idle embedded worker starts now, not at its next poll
            self._wakeup.notify()

    def schedule(self, event_id: int, delay: float) -> None:
        self._process.schedule(args=(event_id,), delay=delay)

    def schedule_poll(self, tenant: str, delay: float) -> None:
        self._poll.schedule(args=(tenant,), delay=delay)

    def kick_polls(self) -> int:
        """Start polling every polling tenant whose chain of polls is not running."""
        kicked = 0
        for tenant in self.runtime.config.tenants.values():
            if tenant.polls and self.runtime.polls.overdue(tenant.name, tenant.poll_seconds + 60):
                self._poll(tenant.name)
                kicked += 1
        return kicked

    def reachable(self) -> bool:
        try:
            self.huey.storage.queue_size()
        except Exception:  # noqa: BLE001 - any storage error means "not reachable" for /readyz
            return False
        return True

    def housekeeping(self, stop: threading.Event) -> threading.Thread:
        """A thread that, every ``housekeeping_seconds`` until ``stop``, re-queues what the reaper
        finds and restarts polling chains that died. Every worker process runs one; both jobs
        are idempotent, so several processes doing it at once is harmless."""
        interval = self.runtime.settings.housekeeping_seconds

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.reap()
                    self.kick_polls()
                except Exception:  # a database blip must not end housekeeping (logged with trace)
                    log.exception("housekeeping failed; trying again next round")

        thread = threading.Thread(target=loop, name="psatriage-housekeeping", daemon=True)
        thread.start()
        return thread

    def consumer(self, *, workers: int, embedded: bool) -> Consumer:
        poll = self.runtime.settings.queue_poll_seconds
        options: dict[str, Any] = {
            "workers": workers,
            "worker_type": "thread",
            "periodic": True,
            "initial_delay": poll,
            "backoff": 1.0,  # keep polling at `poll` when idle: a ticket starts within ~poll
            "max_delay": poll,
            "check_worker_health": True,
        }
        self.kick_polls()
        if embedded:
            return _EmbeddedConsumer(self.huey, wakeup=self._wakeup, **options)
        return self.huey.create_consumer(**options)

    def close(self) -> None:
        self.huey.storage.close()

    # -- tasks --------------------------------------------------------------------------------

    def reap(self) -> int:
        """Queue again every event whose lease ran out or whose queue entry was lost."""
        settings = self.runtime.settings
        due = self.runtime.ledger.due(stale_after=settings.lease_seconds)
        for event_id in due:
            self.enqueue(event_id)
        if due:
            log.info("reaper re-queued events", count=len(due))
        return len(due)

    def _process_event(self, event_id: int) -> None:
        process_event(self.runtime, event_id)

    def _poll_tenant(self, tenant: str) -> None:
        if poll_tenant(self.runtime, tenant) is not None:
            self.schedule_poll(tenant, self.runtime.config.tenants[tenant].poll_seconds)


def poll_tenant(runtime: Runtime, name: str) -> int | None:
    """Record and queue the tickets created since the tenant's mark.

    Returns how many new events were recorded, or None when this caller may not poll now
    (another poll holds the interval, or the tenant does not poll): only a poll that ran
    schedules the next one, so there is one chain of polls per tenant however many start.
    """
    tenant = runtime.config.tenants.get(name)
    if tenant is None or not tenant.polls:
        return None
    mark = runtime.polls.claim(name, tenant.poll_seconds)
    if mark is None:
        return None
    started = utcnow()
    since = mark - timedelta(seconds=tenant.poll_overlap_seconds)
    try:
        found = runtime.adapter(name).list_new_tickets(since)
    except PsatriageError as exc:
        log.warning("poll failed; the mark stays", tenant=name, error=str(exc))
        return 0
    recorded = 0
    for ticket in found:
        event = TicketEvent(
            tenant=name,
            ticket_id=ticket.ticket_id,
            action="created",
            actionable=True,
            dedupe_key=f"poll:{ticket.ticket_id}",
            occurred_at=ticket.created_at,
        )
        event_id, created = runtime.ledger.record(event, state=EventState.RECEIVED, source="poll")
        if created:
            runtime.queue.enqueue(event_id)
            recorded += 1
    runtime.polls.advance(name, started)
    if recorded:
        log.info("poll found new tickets", tenant=name, new=recorded, seen=len(found))
    return recorded


def process_event(runtime: Runtime, event_id: int) -> EventState | None:
    """Claim and process one event; returns the state it was left in (None: not claimed)."""
    settings = runtime.settings
    claim = runtime.ledger.claim(event_id, lease_seconds=settings.lease_seconds)
    if claim is None:
        return None
    bound = log.bind(event_id=claim.id, tenant=claim.tenant, ticket=claim.ticket_id)
    if claim.tenant not in runtime.config.tenants:
        return _finish(runtime, claim, EventState.FAILED, "tenant is no longer configured")
    started = time.perf_counter()
    try:
        result = pipeline.categorize(
            claim.id,
            claim.ticket_id,
            claim.attempts,
            runtime.deps(claim.tenant),
            once_per_ticket=claim.source != "cli",
        )
    except CallLimitReached as exc:
        return _wait_turn(runtime, claim, exc)
    except TransientError as exc:
        return _transient(runtime, claim, exc, str(exc), exc.retry_after)
    except AuthFailed as exc:
        bound.error("credentials refused; event parked", error=str(exc))
        runtime.flag_tenant(claim.tenant, f"credentials refused: {exc}")
        return _finish(runtime, claim, EventState.PARKED, f"credentials refused: {exc}")
    except (PermanentError, ConfigError) as exc:
        bound.warning("event failed", error=str(exc))
        _report(runtime, claim, exc)
        return _finish(runtime, claim, EventState.FAILED, str(exc))
    except PsatriageError as exc:
        return _transient(runtime, claim, exc, str(exc), None)
    except Exception as exc:  # noqa: BLE001 - a bug: retried like a transient failure, logged loudly
        bound.exception("unexpected error while processing")
        return _transient(
            runtime, claim, None, f"internal error: {type(exc).__name__}: {exc}", None
        )
    finally:
        metrics.PROCESSING_SECONDS.labels(claim.tenant).observe(time.perf_counter() - started)
    runtime.tenant_problems.pop(claim.tenant, None)
    if result.outcome is None:
        return _finish(runtime, claim, EventState.IGNORED, result.reason)
    bound.info("event done", outcome=result.outcome.value, wrote=list(result.wrote))
    return _finish(
        runtime, claim, _OUTCOME_STATES[result.outcome.value], result.reason, result.outcome.value
    )


def backoff_seconds(attempt: int, *, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with full jitter over the upper half; never sooner than Retry-After."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def _transient(
    runtime: Runtime,
    claim: Claim,
    error: PsatriageError | None,
    reason: str,
    retry_after: float | None,
) -> EventState:
    settings = runtime.settings
    if claim.attempts >= settings.max_attempts:
        reason = f"gave up after {claim.attempts} attempts: {reason}"
        log.warning("event failed", event_id=claim.id, tenant=claim.tenant, error=reason)
        if error is not None:
            _report(runtime, claim, error)
        return _finish(runtime, claim, EventState.FAILED, reason)
    delay = backoff_seconds(
        claim.attempts,
        base=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
        retry_after=retry_after,
    )
    if runtime.ledger.retry_later(claim, utcnow() + timedelta(seconds=delay), reason):
        runtime.queue.schedule(claim.id, delay)
        log.info("event will be retried", event_id=claim.id, delay=round(delay, 2), error=reason)
    return EventState.RETRYING


def _wait_turn(runtime: Runtime, claim: Claim, exc: CallLimitReached) -> EventState:
    """Our own PSA call limit is reached: reschedule without spending an attempt, so a burst
    larger than the limit waits instead of failing."""
    settings = runtime.settings
    delay = backoff_seconds(
        1, base=settings.retry_base_seconds, cap=settings.retry_max_seconds, retry_after=None
    ) + (exc.retry_after or 0.0)
    reason = f"waiting for its turn: {exc}"
    if runtime.ledger.retry_later(
        claim, utcnow() + timedelta(seconds=delay), reason, spend_attempt=False
    ):
        runtime.queue.schedule(claim.id, delay)
        log.info("event waits for the PSA call limit", event_id=claim.id, delay=round(delay, 2))
    return EventState.RETRYING


def _report(runtime: Runtime, claim: Claim, error: PsatriageError) -> None:
    try:
        deps = runtime.deps(claim.tenant)
    except PsatriageError:
        return
    pipeline.report_failure(deps, claim.ticket_id, error)


def _finish(
    runtime: Runtime, claim: Claim, state: EventState, reason: str, outcome: str | None = None
) -> EventState:
    if state in {EventState.FAILED, EventState.PARKED}:
        runtime.records.release_ticket(claim.id)  # a later event may decide this ticket
    if not runtime.ledger.finish(claim, state, reason):
        log.warning("lost the lease before finishing", event_id=claim.id, state=state.value)
    metrics.EVENTS.labels(claim.tenant, outcome or state.value).inc()
    metrics.END_TO_END_SECONDS.labels(claim.tenant).observe(
        (utcnow() - claim.received_at).total_seconds()
    )
    return state
