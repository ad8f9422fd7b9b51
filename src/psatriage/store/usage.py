"""What each tenant's tickets spent on models, per UTC day: the meter its budget is checked against.

One row per tenant and day, incremented with one upsert per model call (so several worker
processes count into the same row); a month's total reads at most 31 rows by primary key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from psatriage.domain import ModelCall
from psatriage.store.tables import BudgetUsageRow

FREE_ENGINES = frozenset({"local"})
"""Engines whose calls cost nothing and are not counted (the local engine runs in-process)."""


@dataclass(frozen=True, slots=True)
class Spent:
    """A tenant's model calls today and estimated cost this month (UTC)."""

    calls_today: int
    cost_this_month: float


class Usage:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(BudgetUsageRow)
        self._add = statement.on_conflict_do_update(
            index_elements=["tenant", "day"],
            set_={
                "model_calls": BudgetUsageRow.model_calls + statement.excluded.model_calls,
                "cost_usd": BudgetUsageRow.cost_usd + statement.excluded.cost_usd,
            },
        )
        self._month = select(
            func.coalesce(func.sum(BudgetUsageRow.cost_usd), 0.0),
            func.coalesce(
                func.sum(
                    case(
                        (BudgetUsageRow.day == bindparam("day"), BudgetUsageRow.model_calls),
                        else_=0,
                    )
                ),
                0,
            ),
        ).where(
            BudgetUsageRow.tenant == bindparam("tenant"),
            BudgetUsageRow.day >= bindparam("first"),
            BudgetUsageRow.day <= bindparam("day"),
        )

    def add(self, call: ModelCall, at: datetime | None = None) -> None:
        """Count one model call (free engines are not counted)."""
        if call.engine in FREE_ENGINES:
            return
        with self._engine.begin() as connection:
            self.add_on(connection, call, at)

    def add_on(self, connection: Connection, call: ModelCall, at: datetime | None = None) -> None:
        """``add`` in the caller's transaction (the model call's audit row is written in it)."""
        if call.engine in FREE_ENGINES:
            return
        row = {
            "tenant": call.tenant,
            "day": _day(at),
            "model_calls": 1,
            "cost_usd": float(call.cost_usd or 0.0),
        }
        connection.execute(self._add, row)

    def spent(self, tenant: str, at: datetime | None = None) -> Spent:
        day = _day(at)
        with self._engine.connect() as connection:
            cost, calls = connection.execute(
                self._month, {"tenant": tenant, "day": day, "first": day[:8] + "01"}
            ).one()
        return Spent(calls_today=int(calls or 0), cost_this_month=float(cost or 0.0))


def _day(at: datetime | None) -> str:
    moment = at or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d")
