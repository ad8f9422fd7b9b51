"""The outcome sweep: what each decided ticket ended up as, and who set it.

``sweep(runtime, tenant)`` runs from the housekeeping loop of every worker process (in a thread
of its own, ``kick_sweeps``), at most once per ``outcomes.sweep_every_minutes`` per tenant (a
mark in the database decides which process). It reads the tenant's due decisions' tickets
(``PSAAdapter.read_ticket_states``: list queries where the PSA can filter by id) and records
each outcome:

=========  ===================================================================================
pending    no category on the ticket yet
agreed     the category we wrote is still there (or a kept category stayed)
corrected  a person replaced the category we wrote (or corrected a review)
filled     a person set a category where we only suggested, shadowed or recorded
gone       the ticket was deleted (or merged away)
=========  ===================================================================================

``matches`` says whether the final category is the one the model chose, which is what accuracy
counts. A ticket is read every ``check_every_hours`` while open (at once after the PSA notifies
an update), once more ``recheck_after_days`` after it is seen closed, and then settled; after
``give_up_after_days`` it is settled as it stands. A correction or a fill becomes a labeled
example of the tenant, and a pending review whose ticket a person categorized closes as filled.

The sweep stays below new tickets: it runs outside the worker slots, waits while new tickets of
the tenant wait, stops while the tenant's PSA call window is fuller than
``1 - keep_for_new_tickets``, and stops at the first call limit or PSA failure (the rest stays
due for the next sweep).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select

from psatriage import reviews
from psatriage.config.tenant import Tenant
from psatriage.domain import PATH_SEPARATOR, Chosen, Taxonomy, Ticket, TicketState
from psatriage.errors import PsatriageError
from psatriage.psa.base import PSAAdapter
from psatriage.runtime import Runtime
from psatriage.store.examples import ExampleSource
from psatriage.store.outcomes import Found
from psatriage.store.tables import EventRow, EventState, OutcomeRow, OutcomeState, utcnow

log = structlog.get_logger(__name__)

_WAITING = (EventState.RECEIVED.value, EventState.PROCESSING.value, EventState.RETRYING.value)


@dataclass
class Swept:
    """What one sweep of a tenant did (``skipped``: why it read nothing)."""

    tenant: str
    read: int = 0
    recorded: dict[str, int] | None = None
    skipped: str = ""
    stopped: str = ""


_running: threading.Thread | None = None
_running_lock = threading.Lock()


def kick_sweeps(runtime: Runtime) -> bool:
    """Run the due sweeps in a background thread of this process unless one already runs (the
    housekeeping loop's one call: PSA reads must not hold up reaping and polling, nor take a
    worker slot from new tickets). Returns whether a thread was started."""
    global _running  # noqa: PLW0603 - one sweep thread per process
    with _running_lock:
        if _running is not None and _running.is_alive():
            return False

        def run() -> None:
            try:
                sweep_all(runtime)
            except Exception:  # a database blip: logged, tried again next round
                log.exception("outcome sweep failed; trying again next round")

        _running = threading.Thread(target=run, name="psatriage-outcomes", daemon=True)
        _running.start()
        return True


def sweep_all(runtime: Runtime) -> list[Swept]:
    """Sweep every tenant whose turn it is (the housekeeping loop's one call)."""
    done = []
    for name in sorted(runtime.config.tenants):
        try:
            swept = sweep(runtime, name)
        except PsatriageError as exc:  # one tenant's trouble must not stop the others
            log.warning("outcome sweep failed", tenant=name, error=str(exc))
            continue
        if swept is not None:
            done.append(swept)
    return done


def sweep(runtime: Runtime, name: str, *, force: bool = False) -> Swept | None:
    """Read the tenant's due tickets and record their outcomes. None when it is not this
    caller's turn (``force`` skips the turn, not the other rules)."""
    tenant = runtime.config.tenants.get(name)
    if tenant is None:
        return None
    settings = tenant.outcomes
    if not runtime.sweeps.claim(name, settings.sweep_every_minutes * 60) and not force:
        return None
    swept = Swept(name, recorded={})
    if _new_tickets_waiting(runtime, name):
        swept.skipped = "new tickets of the tenant are waiting"
        return swept
    adapter = runtime.adapter(name)
    due = runtime.outcomes.due(name, settings.max_reads_per_sweep)
    size = max(1, adapter.state_batch_size)
    for start in range(0, len(due), size):
        batch = due[start : start + size]
        if not _room_for_us(adapter, settings.keep_for_new_tickets):
            swept.stopped = "the PSA call window is kept for new tickets"
            break
        try:
            states = adapter.read_ticket_states(sorted({row.ticket_id for row in batch}))
            for row in batch:
                state = _record(runtime, tenant, adapter, row, states.get(row.ticket_id))
                assert swept.recorded is not None
                swept.recorded[state] = swept.recorded.get(state, 0) + 1
        except PsatriageError as exc:  # a limit, an outage, refused credentials: next sweep
            swept.stopped = str(exc)
            log.info("outcome sweep stopped", tenant=name, reason=str(exc))
            break
        swept.read += len(batch)
    if swept.read:
        log.info("outcome sweep", tenant=name, read=swept.read, recorded=swept.recorded)
    return swept


def _new_tickets_waiting(runtime: Runtime, tenant: str) -> bool:
    with runtime.sessions() as session:
        waiting = session.execute(
            select(func.count())
            .select_from(EventRow)
            .where(EventRow.tenant == tenant, EventRow.state.in_(_WAITING))
        ).scalar_one()
    return bool(waiting)


def _room_for_us(adapter: PSAAdapter[Any], keep: float) -> bool:
    """Whether the tenant's call window (or, where the PSA counts per endpoint, the window of
    the endpoint the sweep reads) has room beyond what is kept for new tickets."""
    limits = getattr(getattr(adapter, "client", None), "limits", None)
    window = getattr(limits, "window", None)
    if limits is None or window is None:
        return True
    endpoint = adapter.state_endpoint if limits.per_endpoint else ""
    if limits.per_endpoint and not endpoint:
        return True  # the PSA's per-endpoint limits hold the sweep
    return bool(limits.used(endpoint) < window.limit * (1 - keep))


def _record(
    runtime: Runtime,
    tenant: Tenant,
    adapter: PSAAdapter[Any],
    row: OutcomeRow,
    state: TicketState | None,
) -> str:
    """Judge one outcome from its ticket's state, record it, and act on what changed."""
    now = utcnow()
    if state is None:
        runtime.outcomes.record(row.id, Found(OutcomeState.GONE), next_check_at=now, settled=True)
        return OutcomeState.GONE.value
    pseudo = Ticket(id=state.ticket_id, title="", description="", scope=state.scope,
                    current=state.current)  # fmt: skip
    taxonomy = runtime.taxonomies.get(
        tenant.name, adapter, pseudo, ttl_seconds=tenant.taxonomy.cache_seconds
    )
    found = judge(row, state, taxonomy)
    person_decided = found.state in {OutcomeState.CORRECTED, OutcomeState.FILLED}
    changed = (found.state.value, found.final_key) != (row.state, row.final_key)
    if person_decided and changed:
        _learn_and_close(runtime, tenant, adapter, row, found, taxonomy)
    next_check_at, settled = _schedule(tenant, row, state, now)
    runtime.outcomes.record(row.id, found, next_check_at=next_check_at, settled=settled)
    return found.state.value


def judge(row: OutcomeRow, state: TicketState, taxonomy: Taxonomy) -> Found:
    """The outcome a ticket's state gives a decision."""
    values = tuple(v for v in state.current if v.level in taxonomy.levels)
    leaf = taxonomy.find_by_ids(values)
    changed_at = state.changed_at
    if changed_at is not None and changed_at.tzinfo is not None:
        changed_at = changed_at.astimezone(UTC).replace(tzinfo=None)

    def found(outcome: OutcomeState, matches: bool | None = None, kind: str = "") -> Found:
        return Found(
            outcome,
            final_key=leaf.key if leaf else ("/".join(v.id for v in values) or None),
            final_label=PATH_SEPARATOR.join(v.name for v in values),
            matches=matches,
            changed_by=state.changed_by or "",
            changed_by_kind=kind,
            changed_at=changed_at,
            closed=state.closed,
        )

    if not values:
        return found(OutcomeState.PENDING)
    if row.chosen is None:  # a kept category: only what it ended as
        return found(OutcomeState.AGREED)
    chosen = Chosen.from_dict(row.chosen).category
    matches = [(v.level, v.id) for v in chosen.path] == [(v.level, v.id) for v in values]
    if row.wrote and matches:
        return found(OutcomeState.AGREED, True, "us")
    kind = "us" if state.changed_by_us else "person"
    return found(OutcomeState.CORRECTED if row.wrote else OutcomeState.FILLED, matches, kind)


def _schedule(
    tenant: Tenant, row: OutcomeRow, state: TicketState, now: datetime
) -> tuple[datetime, bool]:
    """When to read the ticket again, and whether the outcome is settled."""
    settings = tenant.outcomes
    if state.closed:
        if row.closed or settings.recheck_after_days == 0:
            return now, True
        return now + timedelta(days=settings.recheck_after_days), False
    if now - row.decided_at >= timedelta(days=settings.give_up_after_days):
        return now, True
    return now + timedelta(hours=settings.check_every_hours), False


def _learn_and_close(
    runtime: Runtime,
    tenant: Tenant,
    adapter: PSAAdapter[Any],
    row: OutcomeRow,
    found: Found,
    taxonomy: Taxonomy,
) -> None:
    """A person corrected or filled the category: keep it as a labeled example, and close the
    decision's pending review as filled. Reads the ticket (its text) once."""
    ticket = adapter.get_ticket(row.ticket_id)
    desk = runtime.review_desk()
    pending = runtime.reviews.pending_for_tickets(tenant.name, [row.ticket_id])
    for review in pending:
        if review.decision_id == row.decision_id:
            reviews.close_as_filled(desk, review, tenant, ticket, taxonomy)
    leaf = taxonomy.get(found.final_key or "")
    if leaf is None:
        return
    source: ExampleSource = "correction" if found.state is OutcomeState.CORRECTED else "fill"
    reviews.learn(runtime.sessions, tenant, ticket, row.decision_id, leaf, source)
