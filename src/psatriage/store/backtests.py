"""Backtest runs and their per-ticket results: the checkpoint a resumed run starts from, and the
finished reports ``psatriage readiness`` reads.

A run is found again by its key (a hash of the tenant's settings and the command's parameters);
``evaluation.backtest`` decides whether to resume it. Results are written one ticket at a time,
so an interrupt loses at most the tickets in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from psatriage.store.tables import BacktestResultRow, BacktestRunRow, utcnow


class Backtests:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def latest(self, tenant: str, run_key: str) -> BacktestRunRow | None:
        """The newest run of ``tenant`` with this key (finished or not), if any."""
        with self._sessions() as session:
            return session.execute(
                select(BacktestRunRow)
                .where(BacktestRunRow.tenant == tenant, BacktestRunRow.run_key == run_key)
                .order_by(BacktestRunRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def start(
        self, tenant: str, run_key: str, params: Mapping[str, Any], since: datetime
    ) -> BacktestRunRow:
        with self._sessions() as session:
            row = BacktestRunRow(
                tenant=tenant, run_key=run_key, params=dict(params), since=since, context={}
            )
            session.add(row)
            session.commit()
            return row

    def discard(self, run_id: int) -> None:
        """Forget a run and its results (``--fresh``)."""
        with self._sessions() as session:
            session.execute(delete(BacktestResultRow).where(BacktestResultRow.run_id == run_id))
            session.execute(delete(BacktestRunRow).where(BacktestRunRow.id == run_id))
            session.commit()

    def results(self, run_id: int) -> dict[str, dict[str, Any]]:
        """The results saved so far, by ticket id."""
        with self._sessions() as session:
            rows = session.execute(
                select(BacktestResultRow.ticket_id, BacktestResultRow.result).where(
                    BacktestResultRow.run_id == run_id
                )
            ).all()
        return {str(ticket_id): dict(result) for ticket_id, result in rows}

    def save_result(self, run_id: int, ticket_id: str, result: Mapping[str, Any]) -> None:
        """Checkpoint one ticket's result (replacing an earlier try of the same ticket)."""
        with self._sessions() as session:
            session.merge(
                BacktestResultRow(run_id=run_id, ticket_id=ticket_id, result=dict(result))
            )
            session.commit()

    def update_context(self, run_id: int, **values: Any) -> dict[str, Any]:
        """Add to what the run keeps beside its results (category trees met, ticket volume)."""
        with self._sessions() as session:
            row = session.get(BacktestRunRow, run_id)
            if row is None:
                raise LookupError(f"backtest run {run_id} does not exist")
            row.context = {**row.context, **values}
            session.commit()
            return dict(row.context)

    def finish(self, run_id: int, report: Mapping[str, Any]) -> None:
        with self._sessions() as session:
            row = session.get(BacktestRunRow, run_id)
            if row is None:
                raise LookupError(f"backtest run {run_id} does not exist")
            row.report, row.finished_at = dict(report), utcnow()
            session.commit()

    def latest_finished(self, tenant: str) -> BacktestRunRow | None:
        """The tenant's newest finished run (with its report)."""
        with self._sessions() as session:
            return session.execute(
                select(BacktestRunRow)
                .where(BacktestRunRow.tenant == tenant, BacktestRunRow.finished_at.is_not(None))
                .order_by(BacktestRunRow.finished_at.desc(), BacktestRunRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()
