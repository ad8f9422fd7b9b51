"""Accuracy from outcomes: how often the category the model chose is the one the ticket kept.

``accuracy(sessions, tenant, since)`` counts the tenant's outcomes decided since ``since`` per
client company, category (the model's choice), engine and model, confidence band, what the
decision did (applied, suggested, shadowed, recorded) and day. An outcome is *known* once the
ticket has a final category (agreed, corrected or filled); it is *correct* when that category is
the model's choice (``matches``). Accuracy is correct ÷ known; pending and gone tickets are
counted beside it, not in it. Kept decisions have no choice of the model and are left out.

Shadow mode is measured the same way: its outcomes answer "would it have been right?".
``/api/accuracy``, ``psatriage report accuracy`` and the ``psatriage_accuracy`` gauge read this.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from psatriage import metrics
from psatriage.store.tables import OutcomeRow, OutcomeState, utcnow

KNOWN = frozenset({OutcomeState.AGREED.value, OutcomeState.CORRECTED.value,
                   OutcomeState.FILLED.value})  # fmt: skip
DIMENSIONS = ("company", "category", "engine", "band", "decision", "day")


@dataclass
class Tally:
    """Counts of one group of outcomes."""

    key: str
    label: str = ""
    decided: int = 0
    known: int = 0
    correct: int = 0
    states: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.known if self.known else None

    def add(self, state: str, matches: bool | None) -> None:
        self.decided += 1
        self.states[state] = self.states.get(state, 0) + 1
        if state in KNOWN:
            self.known += 1
            self.correct += bool(matches)


@dataclass
class Report:
    """One tenant's accuracy since a moment: overall and per dimension (``DIMENSIONS``)."""

    tenant: str
    since: datetime
    overall: Tally
    groups: dict[str, list[Tally]]


@dataclass(frozen=True, slots=True)
class _Row:
    company_id: str | None
    company_name: str
    chosen_key: str
    chosen_label: str
    engine: str
    model: str
    band: str
    decision_outcome: str
    decided_at: datetime
    state: str
    matches: bool | None


_KEYS: dict[str, Callable[[_Row], tuple[str, str]]] = {
    "company": lambda r: (
        r.company_id or r.company_name or "",
        r.company_name or r.company_id or "",
    ),
    "category": lambda r: (r.chosen_key, r.chosen_label),
    "engine": lambda r: (f"{r.engine}/{r.model}", f"{r.engine} {r.model}".strip()),
    "band": lambda r: (r.band, r.band),
    "decision": lambda r: (r.decision_outcome, r.decision_outcome),
    "day": lambda r: (r.decided_at.date().isoformat(), r.decided_at.date().isoformat()),
}


def accuracy(
    sessions: sessionmaker[Session], tenant: str, since: datetime, *, company: str | None = None
) -> Report:
    """The tenant's accuracy for decisions made at or after ``since`` (naive UTC); ``company``
    (its PSA id or name) narrows it to one client company."""
    return tally(tenant, since, _rows(sessions, tenant, since, company))


def tally(tenant: str, since: datetime, rows: Iterable[_Row]) -> Report:
    overall = Tally("all", "all decisions")
    groups: dict[str, dict[str, Tally]] = {name: {} for name in DIMENSIONS}
    for row in rows:
        overall.add(row.state, row.matches)
        for name in DIMENSIONS:
            key, label = _KEYS[name](row)
            group = groups[name].setdefault(key, Tally(key, label))
            group.add(row.state, row.matches)
    ordered = {
        name: sorted(found.values(), key=(_by_day if name == "day" else _by_size))
        for name, found in groups.items()
    }
    return Report(tenant, since, overall, ordered)


def _by_size(group: Tally) -> tuple[int, str]:
    return (-group.decided, group.key)


def _by_day(group: Tally) -> tuple[str]:
    return (group.key,)


def _rows(
    sessions: sessionmaker[Session], tenant: str, since: datetime, company: str | None
) -> list[_Row]:
    query = select(
        OutcomeRow.company_id,
        OutcomeRow.company_name,
        OutcomeRow.chosen_key,
        OutcomeRow.chosen_label,
        OutcomeRow.engine,
        OutcomeRow.model,
        OutcomeRow.band,
        OutcomeRow.decision_outcome,
        OutcomeRow.decided_at,
        OutcomeRow.state,
        OutcomeRow.matches,
    ).where(
        OutcomeRow.tenant == tenant,
        OutcomeRow.decided_at >= since,
        OutcomeRow.chosen_key.is_not(None),
    )
    if company:
        query = query.where(
            (OutcomeRow.company_id == company) | (OutcomeRow.company_name == company)
        )
    with sessions() as session:
        return [
            _Row(
                company_id=row.company_id,
                company_name=row.company_name,
                chosen_key=row.chosen_key or "",
                chosen_label=row.chosen_label,
                engine=row.engine,
                model=row.model,
                band=row.band,
                decision_outcome=row.decision_outcome,
                decided_at=row.decided_at,
                state=row.state,
                matches=row.matches,
            )
            for row in session.execute(query)
        ]


GAUGE_DAYS = 30
GAUGE_SECONDS = 60.0  # the gauges are computed at most this often
_refreshed: dict[str, float] = {}
_refreshing = threading.Lock()


def refresh_gauges(sessions: sessionmaker[Session], tenants: Iterable[str]) -> None:
    """Set ``psatriage_accuracy`` and ``psatriage_outcomes`` from the last 30 days of
    outcomes, at most once a minute (``/metrics`` calls this before it answers)."""
    with _refreshing:
        now = time.monotonic()
        if now - _refreshed.get("at", -GAUGE_SECONDS) < GAUGE_SECONDS:
            return
        _refreshed["at"] = now
    since = utcnow() - timedelta(days=GAUGE_DAYS)
    for tenant in tenants:
        report = accuracy(sessions, tenant, since)
        for band in [report.overall, *report.groups["band"]]:
            name = "all" if band is report.overall else band.key
            if band.accuracy is not None:
                metrics.ACCURACY.labels(tenant, name).set(band.accuracy)
        for state in OutcomeState:
            metrics.OUTCOMES.labels(tenant, state.value).set(
                report.overall.states.get(state.value, 0)
            )
