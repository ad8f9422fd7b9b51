"""Which tenants are degraded, and why: repeated failures of their PSA or their model.

Two sources, so the web process knows what worker processes met:

- the ledger: when the tenant's ``after`` newest events that were worked on all ended failed,
  parked or retrying (waiting for the call limit does not count), the tenant is degraded with the
  newest event's reason;
- this process's own record (``TenantHealth``) of consecutive failures, which also counts polls
  (a poll that fails writes no event).

A success of either kind clears the process's record; the ledger's clears with the next event
that ends well.
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import EventRow, EventState

_WORKED_ON = [
    EventState.DONE.value,
    EventState.KEPT.value,
    EventState.IGNORED.value,
    EventState.FAILED.value,
    EventState.PARKED.value,
    EventState.RETRYING.value,
]
_BAD = {EventState.FAILED.value, EventState.PARKED.value, EventState.RETRYING.value}
_WAITING_TURN = "waiting for its turn"  # a full call window is no failure


class TenantHealth:
    """This process's count of consecutive failures per tenant and source (``events`` or
    ``polls``: a poll that works does not clear failing events), with the last reason."""

    def __init__(self, after: int) -> None:
        self.after = after
        self._failures: dict[tuple[str, str], tuple[int, str]] = {}
        self._lock = threading.Lock()

    def failed(self, tenant: str, reason: str, source: str = "events") -> None:
        with self._lock:
            count, _ = self._failures.get((tenant, source), (0, ""))
            self._failures[(tenant, source)] = (count + 1, reason)

    def succeeded(self, tenant: str, source: str = "events") -> None:
        with self._lock:
            self._failures.pop((tenant, source), None)

    def degraded(self) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for (tenant, source), (count, reason) in sorted(self._failures.items()):
                if count >= self.after:
                    found.setdefault(
                        tenant, f"{count} {source} failed in a row; the last: {reason}"
                    )
        return found


def degraded_in_ledger(
    sessions: sessionmaker[Session], tenants: list[str], after: int
) -> dict[str, str]:
    """Per tenant whose ``after`` newest worked-on events all went wrong: why."""
    found: dict[str, str] = {}
    with sessions() as session:
        for tenant in tenants:
            rows = session.execute(
                select(EventRow.state, EventRow.reason)
                .where(EventRow.tenant == tenant, EventRow.state.in_(_WORKED_ON))
                .order_by(EventRow.id.desc())
                .limit(after)
            ).all()
            if len(rows) < after:
                continue
            if all(
                state in _BAD and not reason.startswith(_WAITING_TURN) for state, reason in rows
            ):
                found[tenant] = f"the last {after} events failed; the newest: {rows[0].reason}"
    return found
