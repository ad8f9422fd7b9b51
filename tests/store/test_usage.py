"""The budget meter on real SQLite and PostgreSQL: per UTC day and month, free engines not
counted, several writers adding into one row."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from psatriage.domain import ModelCall
from psatriage.store import db
from psatriage.store.usage import Usage

NOW = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


@pytest.fixture
def usage(database_url: str) -> Iterator[Usage]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield Usage(engine)
    engine.dispose()


def _call(engine: str = "openai", cost: float = 0.5, tenant: str = "acme") -> ModelCall:
    return ModelCall(tenant, "1", None, engine, "m", "", "", 10, 1, 5.0, cost, None, None, None)


def test_counts_today_and_this_month_in_utc(usage: Usage) -> None:
    for _ in range(3):
        usage.add(_call(), NOW)
    usage.add(_call("local", 0.0), NOW)  # the local engine is free
    usage.add(_call(cost=2.0), NOW - timedelta(days=1))
    usage.add(_call(cost=7.0), NOW - timedelta(days=31))  # February
    usage.add(_call(cost=9.0), NOW.replace(tzinfo=None) + timedelta(hours=1))  # April (naive UTC)
    usage.add(_call(tenant="other"), NOW)
    spent = usage.spent("acme", NOW)
    assert spent.calls_today == 3
    assert spent.cost_this_month == pytest.approx(3.5)
    assert usage.spent("nobody", NOW).calls_today == 0


def test_concurrent_writers_lose_no_call(usage: Usage) -> None:
    def add() -> None:
        for _ in range(10):
            usage.add(_call(cost=0.25), NOW)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = usage.spent("acme", NOW)
    assert spent.calls_today == 40 and spent.cost_this_month == pytest.approx(10.0)
