"""The jobs the queue carries: process an event, poll a tenant; and the housekeeping around them.

The ``events`` table is the ledger. A job claims its event with a lease before working, so a
duplicate delivery is a no-op; a worker killed mid-job leaves a lease that runs out, and the
reaper (every ``housekeeping_seconds``) queues the event again. Transient failures are
rescheduled with exponential backoff and jitter (Retry-After honored) instead of sleeping in a
worker. The queue itself (Huey, its storages, the consumer) is ``psatriage.queue``.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from typing import Any

import structlog
from huey.consumer import Consumer

from psatriage import metrics, outcomes, pipeline, retention
from psatriage.domain import TicketEvent
from psatriage.errors import (
    AuthFailed,
    CallLimitReached,
    ConfigError,
    OverBudget,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.learning import retrain
from psatriage.queue import Tasks
from psatriage.reports.refresh import refresh_due
from psatriage.runtime import Runtime
from psatriage.store.ledger import Claim
from psatriage.store.tables import EventState, utcnow

log = structlog.get_logger(__name__)

_OUTCOME_STATES = {
    "applied": EventState.DONE,
    "suggested": EventState.DONE,
    "shadowed": EventState.DONE,
    "recorded": EventState.DONE,
    "kept": EventState.KEPT,
    "skipped": EventState.DONE,  # noise the tenant leaves alone
}


def consumer(runtime: Runtime, *, workers: int, embedded: bool) -> Consumer:
    """The queue consumer of this process, running the jobs below. Polling chains that are not
    running are started first."""
    kick_polls(runtime)
    tasks = Tasks(
        process_event=lambda event_id: process_event(runtime, event_id),
        poll_tenant=lambda tenant: _poll_and_reschedule(runtime, tenant),
    )
    return runtime.queue.consumer(tasks, workers=workers, embedded=embedded)


def housekeeping(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    """A thread that, every ``housekeeping_seconds`` until ``stop``, re-queues what the reaper
    finds, restarts polling chains that died, starts the due outcome sweeps, model retrains and
    report-facts refreshes (each in a thread of its own) and purges what retention lets go.
    Every worker process runs one; the jobs are idempotent or claim their turn per tenant in the
    database, so several processes doing them at once is harmless (a purge runs once per tenant
    and ``purge_every_seconds``, ``retention.purge_due``)."""
    interval = runtime.settings.housekeeping_seconds

    def loop() -> None:
        while not stop.wait(interval):
            try:
                reap(runtime)
                kick_polls(runtime)
                outcomes.kick_sweeps(runtime)  # below new tickets: in a thread of their own
                retrain.kick_retrains(runtime)
                retention.purge_due(
                    runtime.engine,
                    runtime.sessions,
                    runtime.config.tenants.values(),
                    runtime.settings.purge_every_seconds,
                )
                refresh_due(runtime)  # report facts, in a thread of their own when due
            except Exception:  # a database blip must not end housekeeping (logged with trace)
                log.exception("housekeeping failed; trying again next round")

    thread = threading.Thread(target=loop, name="psatriage-housekeeping", daemon=True)
    thread.start()
    return thread


def reap(runtime: Runtime) -> int:
    """Queue again every event whose lease ran out or whose queue entry was lost."""
    due = runtime.ledger.due(stale_after=runtime.settings.lease_seconds)
    for event_id in due:
        runtime.queue.enqueue(event_id)
    if due:
        log.info("reaper re-queued events", count=len(due))
    return len(due)


def kick_polls(runtime: Runtime) -> int:
    """Start polling every polling tenant whose chain of polls is not running."""
    kicked = 0
    for tenant in runtime.config.tenants.values():
        if tenant.polls and runtime.polls.overdue(tenant.name, tenant.poll_seconds + 60):
            runtime.queue.poll(tenant.name)
            kicked += 1
    return kicked


def _poll_and_reschedule(runtime: Runtime, name: str) -> None:
    if poll_tenant(runtime, name) is not None:
        runtime.queue.schedule_poll(name, runtime.config.tenants[name].poll_seconds)


def poll_tenant(runtime: Runtime, name: str) -> int | None:
    """Record and queue the tickets created since the tenant's mark.

    Returns how many new events were recorded, or None when this caller may not poll now
    (another poll holds the interval, or the tenant does not poll): only a poll that ran
    schedules the next one, so there is one chain of polls per tenant however many start.
    """
    tenant = runtime.config.tenants.get(name)
    if tenant is None or not tenant.polls:
        return None
    mark = runtime.polls.claim(name, tenant.poll_seconds, start=tenant.poll_start)
    if mark is None:
        return None
    started = utcnow()
    since = mark - timedelta(seconds=tenant.poll_overlap_seconds)
    try:
        found = runtime.adapter(name).list_new_tickets(since)
    except PsatriageError as exc:
        log.warning("poll failed; the mark stays", tenant=name, error=str(exc))
        metrics.POLL_FAILURES.labels(name).inc()
        runtime.health.failed(name, str(exc), source="polls")
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
    runtime.health.succeeded(name, source="polls")
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
        deps = runtime.deps(claim.tenant)
        result = pipeline.categorize(
            claim.id,
            claim.ticket_id,
            claim.attempts,
            deps,
            once_per_ticket=claim.source != "cli",
            snapshot=fresh_snapshot(runtime, claim, deps),
        )
    except CallLimitReached as exc:
        return _wait_turn(runtime, claim, exc)
    except TransientError as exc:
        return _transient(runtime, claim, exc, str(exc), exc.retry_after)
    except OverBudget as exc:
        bound.warning("over budget; no model asked", error=str(exc))
        _report(runtime, claim, exc)
        return _finish(runtime, claim, EventState.OVER_BUDGET, str(exc))
    except AuthFailed as exc:
        bound.error("credentials refused; event parked", error=str(exc))
        runtime.flag_tenant(claim.tenant, f"credentials refused: {exc}")
        runtime.health.failed(claim.tenant, f"credentials refused: {exc}")
        return _finish(runtime, claim, EventState.PARKED, f"credentials refused: {exc}")
    except (PermanentError, ConfigError) as exc:
        bound.warning("event failed", error=str(exc))
        runtime.health.failed(claim.tenant, str(exc))
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
    runtime.health.succeeded(claim.tenant)
    if result.outcome is None:
        return _finish(runtime, claim, EventState.IGNORED, result.reason)
    bound.info("event done", outcome=result.outcome.value, wrote=list(result.wrote))
    return _finish(
        runtime, claim, _OUTCOME_STATES[result.outcome.value], result.reason, result.outcome.value
    )


def fresh_snapshot(runtime: Runtime, claim: Claim, deps: pipeline.Deps) -> dict[str, Any] | None:
    """The ticket the event's delivery carried, if it still stands for the ticket: only on the
    first attempt (an earlier one may have written to the ticket) and while no later event
    about the ticket was recorded (see ``Ledger.snapshot``). None: read the ticket."""
    if claim.attempts > 1 or not deps.adapter.keeps_snapshots():
        return None
    return runtime.ledger.snapshot(claim.id)


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
    runtime.health.failed(claim.tenant, reason)
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
    if state in {EventState.FAILED, EventState.PARKED, EventState.OVER_BUDGET}:
        runtime.decisions.release_ticket(claim.id)  # a later event may decide this ticket
    if not runtime.ledger.finish(claim, state, reason):
        log.warning("lost the lease before finishing", event_id=claim.id, state=state.value)
    metrics.EVENTS.labels(claim.tenant, outcome or state.value).inc()
    metrics.END_TO_END_SECONDS.labels(claim.tenant).observe(
        (utcnow() - claim.received_at).total_seconds()
    )
    return state
