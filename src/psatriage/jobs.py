"""The workers: they take events from the ledger fairly, process them, and keep house.

The ``events`` table is the ledger and the queue. A ``WorkerPool`` (one per worker process) has a
dispatcher thread that claims due events for its free worker threads, tenant by tenant in fair
order (the tenant served longest ago first; paused tenants and tenants at their concurrency cap
left out; each tenant's new tickets first), and hands each claim to a thread. Its ``workers``
tickets at the classifier at once are its turns (``psatriage.model_turns``); it holds
``worker_lookahead`` more tickets a worker, which read and write around their turns. An idle
dispatcher sleeps until the queue's wake-up channel says there is work (``psatriage.queue``), or
at most ``queue_poll_seconds``. A claim carries a lease, renewed while the ticket is worked on: a
worker killed mid-job leaves a lease that runs out, and the reaper (every
``housekeeping_seconds``) makes the event due again. Transient failures are given back with a due
time (exponential backoff with jitter, Retry-After honored) instead of sleeping in a worker.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection

from psatriage import metrics, model_turns, outcomes, pipeline, retention
from psatriage.domain import Outcome, TicketEvent
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


def tenant_caps(runtime: Runtime, workers: int) -> dict[str, int]:
    """How many of a process's ``workers`` each tenant may hold at once (its bulkhead): the
    tenant's ``max_workers``, else ``tenant_share`` of them when several tenants share the
    process (all of them for a lone tenant)."""
    tenants = runtime.config.tenants
    share = max(1, math.ceil(workers * runtime.settings.tenant_share))
    default = workers if len(tenants) <= 1 else share
    return {name: min(workers, tenant.max_workers or default) for name, tenant in tenants.items()}


class WorkerPool:
    """The workers of one process: a dispatcher, the worker threads, the housekeeping and the
    pollers. ``start`` and ``stop``; ``stop`` lets running tickets finish.

    ``workers`` tickets are at the classifier at once (the turns); with ``lookahead`` more
    tickets a worker (default ``worker_lookahead``) the pool has ``workers × (1 + lookahead)``
    threads, and each tenant's cap of tickets is its cap of turns times the same."""

    def __init__(self, runtime: Runtime, *, workers: int, lookahead: int | None = None) -> None:
        self.runtime = runtime
        self.workers = workers
        if lookahead is None:
            lookahead = runtime.settings.worker_lookahead
        self.threads = workers * (1 + lookahead)
        self.turn_caps = tenant_caps(runtime, workers)
        self.caps = {name: cap * (1 + lookahead) for name, cap in self.turn_caps.items()}
        self.turns = model_turns.ModelTurns(workers, self.turn_caps)
        self._inflight: Counter[str] = Counter()
        self._held: dict[int, Claim] = {}  # the claims being worked on, whose leases are renewed
        self._free = self.threads
        self._slots = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.warmed = threading.Event()  # set once the warm-up has built what it builds
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="psatriage-worker")
        self._threads: list[threading.Thread] = []
        self._unlisten: Callable[[], None] | None = None

    def start(self) -> WorkerPool:
        self._unlisten = self.runtime.queue.listen(self.wake)
        self._threads = [
            _thread(self._dispatch, "psatriage-dispatcher"),
            _thread(self._warm_up, "psatriage-warm-up"),
            housekeeping(self.runtime, self._stop),
            _thread(self._poll_loop, "psatriage-poller"),
            _thread(self._keep_leases, "psatriage-leases"),
        ]
        return self

    def wake(self) -> None:
        """There may be work: the dispatcher looks at once."""
        self._wake.set()

    def stop(self, *, graceful: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        with self._slots:
            self._slots.notify_all()
        if self._unlisten is not None:
            self._unlisten()
        for thread in self._threads:
            thread.join(timeout=10)
        self._executor.shutdown(wait=graceful, cancel_futures=not graceful)

    def in_flight(self) -> dict[str, int]:
        with self._slots:
            return {name: count for name, count in self._inflight.items() if count}

    # -- the dispatcher ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        poll = self.runtime.queue.poll_seconds
        more = True
        while not self._stop.is_set():
            with self._slots:
                while self._free == 0 and not self._stop.is_set():
                    self._slots.wait()
            if not more:
                self._wake.wait(timeout=poll)  # a wake-up, or a look every `poll` seconds
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                more = self._claim_some(filled=more)
            except Exception:  # a database blip: look again shortly (logged with trace)
                log.exception("could not claim events; trying again")
                more = False
                self._stop.wait(min(1.0, poll * 10))

    def _warm_up(self) -> None:
        """Build each tenant's PSA adapter and classifier, and let each find out what it needs,
        as the process starts: otherwise the first tickets of a new worker process wait
        together for what the first one loads (libraries, clients, the model server's
        capabilities, a ConnectWise codebase)."""
        for name in self.runtime.config.tenants:
            if self._stop.is_set():
                return
            for part in ("adapter", "classifier"):
                try:
                    getattr(self.runtime.deps(name), part).warm_up()
                except PsatriageError as exc:  # its tickets meet the problem and report it
                    log.warning("could not prepare", tenant=name, part=part, error=str(exc))
        self.warmed.set()

    def _claim_some(self, *, filled: bool = False) -> bool:
        """Claim events for the free threads, fairly; True when there may be more to claim
        at once (every slot asked for was filled). ``filled``: the last claim was."""
        runtime = self.runtime
        with self._slots:
            free = self._free
            room = {name: cap - self._inflight[name] for name, cap in self.caps.items()}
        if free <= 0:
            return False
        if len(room) == 1 and filled:
            # one tenant whose last claim got all it asked for: no order to find, and likely
            # more waiting, so claim at once (the claim itself checks the pause and what is due)
            runtime.ledger.ensure_tenants(room)  # as ``turns`` does; known tenants cost nothing
            wanted = [(name, min(free, left)) for name, left in room.items() if left > 0]
        else:
            turns = [t for t in runtime.ledger.turns(self.caps) if room.get(t.tenant, 0) > 0]
            wanted = _share_out(free, [(t.tenant, room[t.tenant]) for t in turns])
        if not wanted:
            return False
        claims = runtime.ledger.claim_turns(wanted, lease_seconds=runtime.settings.lease_seconds)
        with self._slots:
            for claim in claims:
                self._inflight[claim.tenant] += 1
                self._free -= 1
                self._held[claim.id] = claim
        for claim in claims:
            self._executor.submit(self._run, claim)
        return len(claims) == sum(count for _, count in wanted) and len(claims) > 0

    def _run(self, claim: Claim) -> None:
        try:
            with model_turns.bound(self.turns, claim.tenant):
                run_claim(self.runtime, claim)
        except Exception:  # run_claim handles errors; this is a bug in handling them
            log.exception("worker failed outside an event", event_id=claim.id)
        finally:
            with self._slots:
                self._inflight[claim.tenant] -= 1
                self._free += 1
                self._held.pop(claim.id, None)
                self._slots.notify()
            self._wake.set()  # a slot is free: there may be waiting work for it

    def _keep_leases(self) -> None:
        """Renew the leases of the claims being worked on, three times a lease."""
        lease = self.runtime.settings.lease_seconds
        while not self._stop.wait(lease / 3):
            with self._slots:
                held = list(self._held.values())
            try:
                self.runtime.ledger.extend(held, lease_seconds=lease)
            except Exception:  # a database blip: the next round tries again (logged with trace)
                log.exception("could not renew leases; trying again")

    # -- polling tenants --------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        """Poll each polling tenant when it is due (one poll in flight per tenant here; the
        database's poll marks keep it to one per interval across processes)."""
        tenants = [t.name for t in self.runtime.config.tenants.values() if t.polls]
        if not tenants:
            return
        running: set[str] = set()
        lock = threading.Lock()
        with ThreadPoolExecutor(min(4, len(tenants)), thread_name_prefix="psatriage-poll") as pool:

            def poll(name: str) -> None:
                try:
                    if poll_tenant(self.runtime, name):
                        self.runtime.queue.wake()
                except Exception:
                    log.exception("poll failed", tenant=name)
                finally:
                    with lock:
                        running.discard(name)

            while not self._stop.is_set():
                for name in tenants:
                    with lock:
                        if name in running:
                            continue
                        running.add(name)
                    pool.submit(poll, name)
                self._stop.wait(1.0)


def _share_out(free: int, rooms: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Deal ``free`` slots one at a time, round-robin in the given order, each tenant up to its
    room: ``[(tenant, count)]`` in the same order."""
    counts = dict.fromkeys((name for name, _ in rooms), 0)
    rooms_left = dict(rooms)
    while free > 0:
        dealt = False
        for name, _ in rooms:
            if free > 0 and counts[name] < rooms_left[name]:
                counts[name] += 1
                free -= 1
                dealt = True
        if not dealt:
            break
    return [(name, counts[name]) for name, _ in rooms if counts[name]]


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def housekeeping(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    """A thread that, every ``housekeeping_seconds`` until ``stop``, makes events whose lease ran
    out due again, starts the due outcome sweeps, model retrains and report-facts refreshes (each
    in a thread of its own: they never take a worker from new tickets) and purges what retention
    lets go. Every worker process runs one; each job here is idempotent or claims its turn per
    tenant in the database, so several processes doing it at once is harmless (a purge runs once
    per tenant and ``purge_every_seconds``, ``retention.purge_due``)."""
    interval = runtime.settings.housekeeping_seconds

    def loop() -> None:
        while True:
            try:
                reap(runtime)
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
            if stop.wait(interval):
                return

    return _thread(loop, "psatriage-housekeeping")


def reap(runtime: Runtime) -> int:
    """Make every event whose lease ran out due again, and wake the workers; end the waiting
    events of tenants no longer configured."""
    count = runtime.ledger.reap()
    if count:
        log.info("reaper gave back events whose lease ran out", count=count)
        runtime.queue.wake()
    orphans = runtime.ledger.fail_unconfigured(runtime.config.tenants)
    if orphans:
        log.warning("events of tenants no longer configured failed", count=orphans)
    return count


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
        _, created = runtime.ledger.record(event, state=EventState.RECEIVED, source="poll")
        recorded += created
    runtime.polls.advance(name, started)
    runtime.health.succeeded(name, source="polls")
    if recorded:
        log.info("poll found new tickets", tenant=name, new=recorded, seen=len(found))
    return recorded


def process_event(runtime: Runtime, event_id: int) -> EventState | None:
    """Claim and process one event; returns the state it was left in (None: not claimed)."""
    claim = runtime.ledger.claim(event_id, lease_seconds=runtime.settings.lease_seconds)
    if claim is None:
        return None
    return run_claim(runtime, claim)


def run_claim(runtime: Runtime, claim: Claim) -> EventState:
    """Process a claimed event; returns the state it was left in."""
    bound = log.bind(event_id=claim.id, tenant=claim.tenant, ticket=claim.ticket_id)
    if claim.tenant not in runtime.config.tenants:
        return _finish(runtime, claim, EventState.FAILED, "tenant is no longer configured")
    started = time.perf_counter()
    closed: list[bool] = []  # the event closed with its decision, and whether it was still ours

    def close(outcome: Outcome, reason: str, connection: Connection) -> None:
        state = _OUTCOME_STATES[outcome.value]
        closed.append(runtime.ledger.finish(claim, state, reason, connection=connection))

    try:
        deps = runtime.deps(claim.tenant)
        result = pipeline.categorize(
            claim.id,
            claim.ticket_id,
            claim.claims,
            deps,
            once_per_ticket=claim.source != "cli",
            snapshot=fresh_snapshot(runtime, claim, deps),
            close=close,
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
    state = _OUTCOME_STATES[result.outcome.value]
    if not closed:
        return _finish(runtime, claim, state, result.reason, result.outcome.value)
    if not closed[0]:
        log.warning("lost the lease before finishing", event_id=claim.id, state=state.value)
    return _count(claim, state, result.outcome.value)


def fresh_snapshot(runtime: Runtime, claim: Claim, deps: pipeline.Deps) -> dict[str, Any] | None:
    """The ticket the event's delivery carried, if it still stands for the ticket: only on the
    event's first claim (an earlier one may have written to the ticket, even one that only
    waited for a call limit and spent no attempt) and while no later event about the ticket was
    recorded (see ``Ledger.snapshot``). None: read the ticket."""
    if not claim.first_try or not deps.adapter.keeps_snapshots():
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
    return _count(claim, state, outcome)


def _count(claim: Claim, state: EventState, outcome: str | None) -> EventState:
    metrics.EVENTS.labels(claim.tenant, outcome or state.value).inc()
    metrics.END_TO_END_SECONDS.labels(claim.tenant).observe(
        (utcnow() - claim.received_at).total_seconds()
    )
    return state
