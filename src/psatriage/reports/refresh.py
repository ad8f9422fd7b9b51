"""Keeping a tenant's facts current: the closed tickets of a period from the PSA, then the time
spent on those whose hours are not known yet, in batches.

::

    refresh_facts(adapter, facts, ...)   one tenant, one period (``psatriage report --refresh``)
    refresh_due(runtime)                 the housekeeping loop's one call: starts, at most once
                                         per process at a time, a thread that refreshes every
                                         tenant whose turn it is (``Facts.claim``)

A PSA that will not show time (``TimeUnavailable``) leaves hours unknown and the permission to
grant noted; our own call limit (``CallLimitReached``) or a PSA outage ends a run early, and the
next run carries on from the tickets still without hours. A scheduled run also stops reading time
once ``WINDOW_SHARE`` of a tenant-wide call window is used, so new tickets keep the rest; a run
that fails outright is tried again after ``RETRY_AFTER`` instead of a whole interval.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from psatriage.errors import PsatriageError, TimeUnavailable, TransientError
from psatriage.psa.base import PSAAdapter
from psatriage.psa.client import PSAClient
from psatriage.redact import Redactor
from psatriage.store.facts import Facts
from psatriage.store.tables import utcnow

if TYPE_CHECKING:
    from psatriage.runtime import Runtime

log = structlog.get_logger(__name__)

TIME_BATCH = 50  # tickets per time_spent call: each batch is saved before the next is asked
OVERLAP = timedelta(days=7)  # a scheduled refresh reads again what changed late (a reopen)
WINDOW_SHARE = 0.5  # of a tenant-wide call window a scheduled refresh may fill
RETRY_AFTER = timedelta(minutes=15)
_running = threading.Lock()


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What one refresh did: closed tickets read (of them new), hours read, tickets still without
    hours, the permission that hides hours ("" if none), and why it stopped early ("" if not)."""

    tickets: int
    new: int
    hours_read: int
    hours_pending: int
    hours_problem: str
    stopped: str


def refresh_facts(
    adapter: PSAAdapter[Any],
    facts: Facts,
    redactor: Redactor,
    *,
    since: datetime,
    until: datetime,
    time_limit: int | None = None,
    room: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Refreshed:
    """Record the tickets closed in ``[since, until)``, then read the hours of at most
    ``time_limit`` tickets still without them (all when None), batch by batch while ``room()``
    says the call limits have room (always, when None); ``progress(done, total)`` hears of each
    batch. Errors while listing tickets propagate; while reading time, a refusal is noted and a
    transient failure ends the run."""
    tenant = adapter.tenant
    tickets = adapter.list_closed_tickets(since, until)
    titles = {t.ticket_id: redactor.text(t.title, Counter()) for t in tickets}
    new = facts.record(tenant, tickets, titles)
    pending = facts.without_hours(tenant, limit=time_limit or 10_000_000)
    read, problem, stopped = _read_hours(adapter, facts, pending, room, progress)
    facts.refreshed(tenant, covered_until=until, hours_problem=problem)
    left = len(facts.without_hours(tenant, limit=10_000_000))
    return Refreshed(len(tickets), new, read, left, problem, stopped)


def _read_hours(
    adapter: PSAAdapter[Any],
    facts: Facts,
    pending: Sequence[str],
    room: Callable[[], bool] | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, str, str]:
    read = 0
    for start in range(0, len(pending), TIME_BATCH):
        if progress is not None:
            progress(start, len(pending))
        if room is not None and not room():
            return read, "", "the call window is half used: the rest is left to new tickets"
        batch = pending[start : start + TIME_BATCH]
        try:
            hours = adapter.time_spent(batch)
        except TimeUnavailable as exc:
            return read, exc.permission, ""
        except TransientError as exc:  # our call limit, a 429 or an outage: carry on next time
            return read, "", str(exc)
        facts.set_hours(adapter.tenant, hours)
        read += len(hours)
    return read, "", ""


def leaves_room(adapter: PSAAdapter[Any]) -> bool:
    """Whether less than ``WINDOW_SHARE`` of the tenant's call window is used. A PSA limited per
    endpoint (Kaseya BMS) always has room: its time endpoints serve reports alone."""
    client = getattr(adapter, "client", None)
    limits = client.limits if isinstance(client, PSAClient) else None
    window = limits.window if limits is not None else None
    if limits is None or window is None or limits.per_endpoint:
        return True
    return window.used("") < window.limit * WINDOW_SHARE


def refresh_due(runtime: Runtime) -> bool:
    """Start refreshing, in a thread of its own, the facts of every tenant whose scheduled
    refresh is due; False when the schedule is off or this process is already refreshing.
    The housekeeping loop calls it every round."""
    settings = runtime.settings
    if settings.facts_refresh_hours <= 0 or not _running.acquire(blocking=False):
        return False

    def run() -> None:
        try:
            refresh_tenants(runtime)
        except Exception:  # a database blip must not go unseen (logged with its trace)
            log.exception("facts refresh failed; it runs again next round")
        finally:
            _running.release()

    threading.Thread(target=run, name="psatriage-facts", daemon=True).start()
    return True


def refresh_tenants(runtime: Runtime) -> list[str]:
    """Refresh every tenant whose turn it is (claimed in the database, so one process does it);
    return their names."""
    settings = runtime.settings
    facts = Facts(runtime.engine, runtime.sessions)
    done = []
    for tenant in runtime.config.tenants.values():
        adapter = runtime.adapter(tenant.name)
        if not adapter.can_read_time():
            continue
        if not facts.claim(tenant.name, settings.facts_refresh_hours * 3600):
            continue
        now = utcnow()
        covered = facts.state(tenant.name).covered_until
        since = covered - OVERLAP if covered else now - timedelta(days=settings.facts_lookback_days)
        try:
            result = refresh_facts(
                adapter,
                facts,
                tenant.redactor,
                since=since,
                until=now,
                time_limit=settings.facts_time_per_run,
                room=partial(leaves_room, adapter),
            )
        except PsatriageError as exc:
            facts.reschedule(tenant.name, utcnow() + RETRY_AFTER)
            log.warning("facts refresh failed; it is tried again soon", tenant=tenant.name,
                        error=str(exc))  # fmt: skip
            continue
        done.append(tenant.name)
        log.info(
            "facts refreshed",
            tenant=tenant.name,
            tickets=result.tickets,
            new=result.new,
            hours_read=result.hours_read,
            hours_pending=result.hours_pending,
            hours_problem=result.hours_problem or None,
            stopped=result.stopped or None,
        )
    return done
