"""Pausing and resuming a tenant, and what the operator sees of each tenant's queue.

A paused tenant's deliveries are still accepted and recorded; workers leave its events in the
ledger until it is resumed (``psatriage tenants pause|resume``). The row also keeps when a worker
last claimed one of the tenant's events: the fair order of ``Ledger.turns``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from psatriage.store.tables import WAITING_STATES, EventRow, EventState, TenantStateRow, utcnow


@dataclass(frozen=True, slots=True)
class TenantQueue:
    """One tenant as ``tenants list`` shows it."""

    tenant: str
    paused: bool
    paused_at: datetime | None
    paused_by: str
    waiting: int
    processing: int
    last_claim_at: datetime | None


class TenantStates:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def pause(self, tenant: str, *, by: str) -> bool:
        """Pause ``tenant``; False if it was paused already (nothing changes then)."""
        return self._set(tenant, paused=True, by=by)

    def resume(self, tenant: str) -> bool:
        """Resume ``tenant``; False if it was not paused."""
        return self._set(tenant, paused=False, by="")

    def paused(self) -> set[str]:
        with self._engine.connect() as connection:
            return set(
                connection.execute(
                    select(TenantStateRow.tenant).where(TenantStateRow.paused.is_(True))
                ).scalars()
            )

    def overview(self, tenants: Iterable[str]) -> list[TenantQueue]:
        """Every named tenant (and any other with a state row), by name."""
        waiting = func.sum(case((EventRow.state.in_(WAITING_STATES), 1), else_=0))
        processing = func.sum(case((EventRow.state == EventState.PROCESSING.value, 1), else_=0))
        with self._engine.connect() as connection:
            states = {row.tenant: row for row in connection.execute(select(TenantStateRow)).all()}
            counts = {
                row.tenant: (int(row.waiting or 0), int(row.processing or 0))
                for row in connection.execute(
                    select(
                        EventRow.tenant,
                        waiting.label("waiting"),
                        processing.label("processing"),
                    )
                    .where(EventRow.state.in_([*WAITING_STATES, EventState.PROCESSING.value]))
                    .group_by(EventRow.tenant)
                ).all()
            }
        found = []
        for name in sorted(set(tenants) | set(states)):
            state = states.get(name)
            waiting_count, processing_count = counts.get(name, (0, 0))
            found.append(
                TenantQueue(
                    tenant=name,
                    paused=bool(state and state.paused),
                    paused_at=state.paused_at if state else None,
                    paused_by=state.paused_by if state else "",
                    waiting=waiting_count,
                    processing=processing_count,
                    last_claim_at=state.last_claim_at if state else None,
                )
            )
        return found

    def _set(self, tenant: str, *, paused: bool, by: str) -> bool:
        now = utcnow()
        with self._engine.begin() as connection:
            connection.execute(
                self._insert(TenantStateRow)
                .values(tenant=tenant, paused=False, paused_by="", updated_at=now)
                .on_conflict_do_nothing(index_elements=["tenant"])
            )
            changed = connection.execute(
                update(TenantStateRow)
                .where(TenantStateRow.tenant == tenant, TenantStateRow.paused.is_(not paused))
                .values(
                    paused=paused,
                    paused_at=now if paused else None,
                    paused_by=by[:255],
                    updated_at=now,
                )
            )
            return bool(changed.rowcount)
