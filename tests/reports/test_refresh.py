"""Refreshing report facts from the PSA: on demand, on the schedule (one process per tenant and
interval, in a thread of its own), and what a refusal, an outage or the per-run limit leave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from psatriage.reports import refresh
from psatriage.reports.refresh import (
    Refreshed,
    leaves_room,
    refresh_due,
    refresh_facts,
    refresh_tenants,
)
from psatriage.runtime import Runtime
from psatriage.store.facts import Facts
from psatriage.store.tables import utcnow
from tests.harness import TENANT, Harness

NOW = datetime.now(UTC)


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


def closed(harness: Harness, title: str, days_ago: int, *hours: float) -> int:
    number = harness.cw.add_ticket(title, title, type_id=10, subtype_id=20, item_id=30)
    harness.cw.close_ticket(number, NOW - timedelta(days=days_ago))
    for spent in hours:
        harness.cw.add_time(number, spent)
    return number


def run(runtime: Runtime, **limits: Any) -> Refreshed:
    return refresh_facts(
        runtime.adapter(TENANT),
        Facts(runtime.engine, runtime.sessions),
        runtime.tenant(TENANT).redactor,
        since=utcnow() - timedelta(days=30),
        until=utcnow(),
        **limits,
    )


def hours(runtime: Runtime) -> list[float | None]:
    found = Facts(runtime.engine, runtime.sessions).closed_between(
        TENANT, utcnow() - timedelta(days=30), utcnow()
    )
    return [fact.hours for fact in found]


def test_titles_are_redacted_and_hours_summed(harness: Harness, runtime: Runtime) -> None:
    closed(harness, "Mail to jane@example.com bounces", 3, 0.5, 0.25)
    closed(harness, "Printer", 2)
    heard: list[tuple[int, int]] = []
    done = run(runtime, progress=lambda n, total: heard.append((n, total)))
    assert (done.tickets, done.new, done.hours_read, done.hours_pending) == (2, 2, 2, 0)
    assert heard == [(0, 2)]  # one batch
    found = Facts(runtime.engine, runtime.sessions).closed_between(
        TENANT, utcnow() - timedelta(days=30), utcnow()
    )
    assert "jane@example.com" not in found[0].title
    assert hours(runtime) == [0.75, 0.0]


def test_refused_time_is_noted_then_read_once_granted(harness: Harness, runtime: Runtime) -> None:
    closed(harness, "Printer", 3, 1.0)
    harness.cw.time_denied = True
    done = run(runtime)
    assert "Time Entry" in done.hours_problem and done.hours_pending == 1
    state = Facts(runtime.engine, runtime.sessions).state(TENANT)
    assert state.hours_problem == done.hours_problem
    harness.cw.time_denied = False
    again = run(runtime)
    assert again.hours_problem == "" and hours(runtime) == [1.0]
    assert Facts(runtime.engine, runtime.sessions).state(TENANT).hours_problem == ""


def test_an_outage_ends_the_run_and_the_next_one_carries_on(
    harness: Harness, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refresh, "TIME_BATCH", 1)
    for n in range(3):
        closed(harness, f"Printer {n}", 3 + n, 1.0)
    done = run(runtime, time_limit=1)
    assert (done.hours_read, done.hours_pending) == (1, 2)  # the per-run limit
    harness.cw.fail("GET", r"/time/entries$", 503, times=10)
    stopped = run(runtime)
    assert stopped.stopped and stopped.hours_read == 0 and stopped.hours_pending == 2
    harness.cw.clear_failures()
    assert run(runtime).hours_pending == 0
    assert hours(runtime) == [1.0, 1.0, 1.0]


def test_the_schedule_refreshes_a_tenant_once_per_interval(
    harness: Harness, runtime: Runtime
) -> None:
    closed(harness, "Printer", 3, 2.0)
    facts = Facts(runtime.engine, runtime.sessions)
    assert refresh_tenants(runtime) == []  # first seen: its first refresh is scheduled
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE fact_refreshes SET next_refresh_at = '2000-01-01'")
    assert refresh_tenants(runtime) == [TENANT]
    assert hours(runtime) == [2.0]
    assert refresh_tenants(runtime) == []  # claimed for facts_refresh_hours
    assert facts.state(TENANT).covered_until is not None


def test_refresh_due_runs_in_its_own_thread_once_per_process(
    harness: Harness, runtime: Runtime
) -> None:
    Facts(runtime.engine, runtime.sessions).claim(TENANT, 1, first_after=-60)  # due now
    closed(harness, "Printer", 3, 2.0)
    assert refresh_due(runtime)
    assert refresh._running.acquire(timeout=120)  # the thread finished
    refresh._running.release()
    assert hours(runtime) == [2.0]
    off = harness.runtime(harness.settings(facts_refresh_hours=0))
    try:
        assert not refresh_due(off)
    finally:
        off.close()


def test_the_schedule_leaves_half_the_call_window_to_new_tickets(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refresh, "TIME_BATCH", 1)
    built = harness.runtime(connection={"requests_per_window": 20})
    try:
        for n in range(12):
            closed(harness, f"Printer {n}", 3, 1.0)
        Facts(built.engine, built.sessions).claim(TENANT, 1, first_after=-60)  # due now
        assert refresh_tenants(built) == [TENANT]
        adapter = built.adapter(TENANT)
        assert not leaves_room(adapter)
        used = adapter.client.limits.used()  # type: ignore[attr-defined]
        assert used == 10  # half the window of 20; the time of the rest waits for the next run
        assert 0 < hours(built).count(None) < 12
    finally:
        built.close()


def test_a_failed_scheduled_run_is_tried_again_soon(harness: Harness, runtime: Runtime) -> None:
    closed(harness, "Printer", 3, 1.0)
    facts = Facts(runtime.engine, runtime.sessions)
    facts.claim(TENANT, 1, first_after=-60)
    harness.cw.fail("GET", r"/service/tickets$", 503, times=10)
    assert refresh_tenants(runtime) == []
    with runtime.engine.connect() as connection:
        due = connection.exec_driver_sql("SELECT next_refresh_at FROM fact_refreshes").scalar()
    assert due is not None
    assert str(due) < str(utcnow() + timedelta(hours=1))  # not the whole 24-hour interval
