"""``psatriage backfill``: the tenant's existing tickets through the pipeline, in its own process.

The tickets created in the period are listed once through the adapter (``list_new_tickets``,
oldest first) and stored as the run's items; each is then decided as a new ticket would be:
an event in the ledger (source ``backfill``, dedupe key ``backfill:<ticket>``), claimed, and
``pipeline.categorize`` with the tenant's policy. The ledger's dedupe key and the decisions'
one-per-ticket key mean a ticket is never written twice: not by a second backfill, and not
when a webhook or a poll already decided it. The run never queues work for the workers.

Calls go through an adapter whose per-window call limit is cut to ``backfill_call_share`` of
the tenant's, on the same counters: the backfill takes a call only while that share of the
window is unused, so new tickets keep the rest. A full window is waited out in this process.

A dry run decides without writing to the PSA, the ledger or the decisions table; what would
change is kept per ticket and written as CSV. Either kind resumes when the same command runs
again; an interrupt loses at most the ticket in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from psatriage import jobs, metrics, pipeline
from psatriage.bulk import run_key
from psatriage.domain import Decision, Ticket, TicketEvent
from psatriage.errors import (
    AuthFailed,
    CallLimitReached,
    ConfigError,
    OverBudget,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.pipeline import Deps
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter
from psatriage.runtime import Runtime
from psatriage.store.bulk import RETRY, BulkRuns
from psatriage.store.ledger import Claim
from psatriage.store.tables import EventState, utcnow

log = structlog.get_logger(__name__)

KIND = "backfill"
BACKFILL_PRIORITY = 10  # the ledger takes a tenant's new tickets (0) first
LONGEST_WAIT_SECONDS = 60.0  # between two tries of one ticket inside a run

Progress = Callable[[int, int], None]  # (tickets done, tickets in the run)
Sleep = Callable[[float], None]

_WRITES = {"applied": "category and note", "suggested": "note", "shadowed": "nothing"}


@dataclass(frozen=True)
class Params:
    since: datetime
    until: datetime | None = None
    only_uncategorized: bool = False
    limit: int | None = None
    dry_run: bool = False
    since_text: str = ""  # --since as written: a period (30d) names the same run tomorrow
    until_text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since_text or self.since.isoformat(),
            "until": self.until_text or (self.until.isoformat() if self.until else None),
            "only_uncategorized": self.only_uncategorized,
            "limit": self.limit,
            "dry_run": self.dry_run,
        }


class Stopped(PsatriageError):
    """The run cannot go on now (credentials refused); what was done is kept."""


@dataclass
class Outcome:
    """How a call ended: the run, the tickets an earlier call had done, and every result."""

    run_id: int
    total: int
    resumed: int
    results: list[tuple[str, str, dict[str, Any]]]


def bulk_adapter(runtime: Runtime, name: str) -> PSAAdapter[Any]:
    """An adapter of the tenant's own, limited to its ``backfill_call_share`` of the calls."""
    tenant = runtime.tenant(name)
    adapter_cls = adapters()[tenant.psa]
    if not adapter_cls.can_poll():
        raise ConfigError(f"tenant {name!r}: the {tenant.psa} adapter cannot list tickets")
    connection = tenant.connection.with_call_share(tenant.backfill_call_share)
    return adapter_cls(tenant.name, connection, runtime.http)


def backfill_deps(runtime: Runtime, name: str) -> Deps:
    """The tenant's pipeline with the bulk adapter (``bulk_adapter``)."""
    adapter = bulk_adapter(runtime, name)
    return replace(runtime.deps(name), adapter=adapter)


def backfill(
    runtime: Runtime,
    name: str,
    params: Params,
    *,
    progress: Progress = lambda done, total: None,
    sleep: Sleep = time.sleep,
) -> Outcome:
    """Run (or resume) the backfill of tenant ``name``; raises ``Stopped`` when it must stop."""
    deps = backfill_deps(runtime, name)
    runs = BulkRuns(runtime.sessions)
    key = run_key(name, KIND, params.as_dict())
    run = runs.unfinished(name, KIND, key) or runs.start(name, KIND, key, params.as_dict())
    if not run.listed:
        runs.add_items(run.id, _listed(deps, params))
    todo = runs.open_items(run.id)
    total = sum(runs.states(run.id).values())
    done = total - len(todo)
    resumed = done
    progress(done, total)
    worker = _Worker(runtime, deps, params, runs, run.id, sleep)
    for ticket_id in todo:
        worker.one(ticket_id)
        done += 1
        progress(done, total)
    runs.finish(run.id)
    return Outcome(run.id, total, resumed, runs.results(run.id))


def _listed(deps: Deps, params: Params) -> list[str]:
    """The tickets of the period, oldest first, at most ``limit``."""
    found = deps.adapter.list_new_tickets(params.since)
    until = params.until
    kept = [t.ticket_id for t in found if until is None or _naive_utc(t.created_at) < until]
    return kept[: params.limit] if params.limit else kept


@dataclass
class _Worker:
    runtime: Runtime
    deps: Deps
    params: Params
    runs: BulkRuns
    run_id: int
    sleep: Sleep

    def one(self, ticket_id: str) -> None:
        """Decide one ticket and checkpoint its result."""
        try:
            ticket = self.deps.adapter.get_ticket(ticket_id)
        except AuthFailed as exc:
            raise Stopped(f"{self.deps.tenant.psa} refused the credentials: {exc}") from exc
        except PsatriageError as exc:
            self._save(ticket_id, RETRY if _passing(exc) else "failed", {"error": str(exc)})
            return
        row = {
            "ticket": ticket_id,
            "company": ticket.company_name or ticket.company_id or "",
            "current": ticket.current_label,
        }
        if self.params.only_uncategorized and ticket.current:
            self._save(ticket_id, "skipped", {**row, "reason": "already categorized"})
            return
        if self.params.dry_run:
            self._dry(ticket, row)
        else:
            self._live(ticket, row)

    def _save(self, ticket_id: str, state: str, result: dict[str, Any]) -> None:
        self.runs.done(self.run_id, ticket_id, state, result)

    # -- dry run --------------------------------------------------------------------------

    def _dry(self, ticket: Ticket, row: dict[str, Any]) -> None:
        for attempt in range(1, self.runtime.settings.max_attempts + 1):
            try:
                decision = pipeline.categorize(0, ticket.id, 1, self.deps, dry_run=True)
            except AuthFailed as exc:
                raise Stopped(f"credentials refused: {exc}") from exc
            except OverBudget as exc:
                raise Stopped(str(exc)) from exc
            except TransientError as exc:
                if attempt == self.runtime.settings.max_attempts:
                    self._save(ticket.id, RETRY, {**row, "error": str(exc)})
                    return
                self._wait(attempt, exc)
                continue
            except PsatriageError as exc:
                self._save(ticket.id, "failed", {**row, "error": str(exc)})
                return
            self._save(ticket.id, "done", {**row, **_described(decision)})
            return

    # -- live -----------------------------------------------------------------------------

    def _live(self, ticket: Ticket, row: dict[str, Any]) -> None:
        ledger = self.runtime.ledger
        event = TicketEvent(
            tenant=self.deps.tenant.name,
            ticket_id=ticket.id,
            action="backfill",
            actionable=True,
            dedupe_key=f"backfill:{ticket.id}",
        )
        # below new tickets: were a worker to take it (after a give-back), new tickets go first
        event_id, _ = ledger.record(
            event, state=EventState.RECEIVED, source=KIND, priority=BACKFILL_PRIORITY
        )
        row["event"] = event_id
        attempt = 0
        while True:
            claim = self._claim(event_id)
            if claim is None:
                earlier = ledger.get(event_id)
                state = earlier.state if earlier else "unknown"
                reason = f"already handled by event {event_id} ({state})"
                self._save(ticket.id, "skipped", {**row, "reason": reason})
                return
            attempt += 1
            try:
                decision = pipeline.categorize(
                    claim.id, ticket.id, claim.claims, self.deps, once_per_ticket=True
                )
            except KeyboardInterrupt:  # Ctrl-C: hand the event back for the resumed run
                self._give_back(claim, "backfill interrupted", spend=False)
                raise
            except CallLimitReached as exc:
                self._give_back(claim, f"waiting for its turn: {exc}", spend=False)
                attempt -= 1
                self._wait(1, exc)
                continue
            except TransientError as exc:
                if attempt >= self.runtime.settings.max_attempts:
                    self._end(claim, EventState.FAILED, str(exc))
                    self._save(ticket.id, RETRY, {**row, "error": str(exc)})
                    return
                self._give_back(claim, str(exc), spend=True)
                self._wait(attempt, exc)
                continue
            except AuthFailed as exc:
                self._end(claim, EventState.PARKED, f"credentials refused: {exc}")
                self._save(ticket.id, RETRY, {**row, "error": str(exc)})
                raise Stopped(f"credentials refused: {exc}") from exc
            except OverBudget as exc:  # no model is asked until the day or month turns
                self._end(claim, EventState.OVER_BUDGET, str(exc))
                self._save(ticket.id, RETRY, {**row, "error": str(exc)})
                raise Stopped(str(exc)) from exc
            except (PermanentError, ConfigError, PsatriageError) as exc:
                pipeline.report_failure(self.deps, ticket.id, exc)
                self._end(claim, EventState.FAILED, str(exc))
                self._save(ticket.id, "failed", {**row, "error": str(exc)})
                return
            try:
                self._decided(claim, decision, row)
            except KeyboardInterrupt:  # decided but not closed: the resumed run closes it
                self._give_back(claim, "backfill interrupted", spend=False)
                raise
            return

    def _claim(self, event_id: int) -> Claim | None:
        """Own the event; one a failed, parked or over-budget earlier try left is opened again
        (this item was to be retried)."""
        ledger, lease = self.runtime.ledger, self.runtime.settings.lease_seconds
        claim = ledger.claim(event_id, lease_seconds=lease)
        if claim is None:
            earlier = ledger.get(event_id)
            if earlier is not None and earlier.state in {"failed", "parked", "over_budget"}:
                retried = self.runs.was_retry(self.run_id, str(earlier.ticket_id))
                if retried and ledger.reopen([event_id]):
                    claim = ledger.claim(event_id, lease_seconds=lease)
        return claim

    def _decided(self, claim: Claim, decision: Decision, row: dict[str, Any]) -> None:
        if decision.outcome is None:
            self._end(claim, EventState.IGNORED, decision.reason)
            self._save(claim.ticket_id, "skipped", {**row, "reason": decision.reason})
            return
        state = EventState.KEPT if decision.outcome.value == "kept" else EventState.DONE
        self._end(claim, state, decision.reason, decision.outcome.value)
        self._save(claim.ticket_id, "done", {**row, **_described(decision)})

    def _give_back(self, claim: Claim, reason: str, *, spend: bool) -> None:
        self.runtime.ledger.retry_later(claim, utcnow(), reason, spend_attempt=spend)

    def _end(self, claim: Claim, state: EventState, reason: str, outcome: str = "") -> None:
        if state in {EventState.FAILED, EventState.PARKED}:
            self.runtime.decisions.release_ticket(claim.id)
        self.runtime.ledger.finish(claim, state, reason)
        metrics.EVENTS.labels(claim.tenant, outcome or state.value).inc()

    def _wait(self, attempt: int, error: TransientError) -> None:
        settings = self.runtime.settings
        delay = jobs.backoff_seconds(
            attempt,
            base=settings.retry_base_seconds,
            cap=min(settings.retry_max_seconds, LONGEST_WAIT_SECONDS),
            retry_after=error.retry_after,
        )
        log.info("backfill waits", seconds=round(delay, 2), error=str(error))
        self.sleep(min(delay, LONGEST_WAIT_SECONDS))


def _naive_utc(moment: datetime) -> datetime:
    """Adapters give creation times naive (UTC) or aware; compare them as naive UTC."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _passing(error: PsatriageError) -> bool:
    return isinstance(error, TransientError)


def _described(decision: Decision) -> dict[str, Any]:
    """What a decision did (or, in a dry run, would do), for the item's result and the CSV."""
    outcome = decision.outcome.value if decision.outcome else ""
    described: dict[str, Any] = {
        "outcome": outcome,
        "writes": _WRITES.get(outcome, "nothing"),
        "reason": decision.reason,
    }
    if decision.chosen is not None:
        described["category"] = decision.chosen.category.label
        described["key"] = decision.chosen.target.key
    if decision.classification is not None:
        described["confidence"] = round(decision.classification.confidence, 4)
    return described
