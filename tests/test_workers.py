"""The worker pool with several tenants on one fake ConnectWise (SQLite, real runtime): fair
turns for a flooding tenant and a quiet one, the bulkhead of a tenant whose PSA hangs, per-tenant
PSA timeouts, and pausing a tenant without losing its events. Order and counts are asserted,
never time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from psatriage import jobs
from psatriage.classifiers import _openai_capabilities as capabilities
from psatriage.config import load_config
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.ledger import Turn
from psatriage.store.tables import EventState, utcnow
from tests.harness import Harness, to_toml

DEADLINE = 240  # seconds: generous for a loaded 2-core machine; never asserted on


def _runtime(
    harness: Harness, tenants: Mapping[str, Mapping[str, Any]], **settings: Any
) -> Runtime:
    """A runtime whose tenants are the harness's tenant under each name, with its extra keys."""
    body = {name: {**harness.tenant, **extra} for name, extra in tenants.items()}
    path = harness.root / "psatriage.toml"
    path.write_text(to_toml({"tenants": body}), encoding="utf-8")
    os.environ.update(harness.env)
    return Runtime(harness.settings(**settings), load_config(path))


@pytest.fixture
def built() -> Iterator[list[Runtime]]:
    runtimes: list[Runtime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.close()


def _record(runtime: Runtime, tenant: str, ticket: int) -> int:
    event = TicketEvent(tenant, str(ticket), "added", True, f"{tenant}-{ticket}")
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return event_id


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _state(runtime: Runtime, event_id: int) -> str:
    row = runtime.ledger.get(event_id)
    assert row is not None
    return row.state


def _noted(harness: Harness) -> list[int]:
    """Tickets in the order their psatriage note arrived."""
    return [
        int(r.params["ticket"])
        for r in harness.cw.writes
        if r.method == "POST" and r.path.endswith("/notes") and "psatriage:" in str(r.body)
    ]


def test_a_flooding_tenant_does_not_hold_up_a_quiet_ones_new_ticket(
    harness: Harness, built: list[Runtime]
) -> None:
    runtime = _runtime(harness, {"flood": {}, "quiet": {}})
    built.append(runtime)
    flood = [harness.cw.add_ticket(f"Printer {n}", "paper jam") for n in range(30)]
    flood_events = [_record(runtime, "flood", t) for t in flood]
    quiet = harness.cw.add_ticket("VPN", "The VPN drops")  # arrives after the whole backlog
    quiet_event = _record(runtime, "quiet", quiet)
    pool = jobs.WorkerPool(runtime, workers=1).start()  # one ticket at a time: order is visible
    try:
        _wait(lambda: _state(runtime, quiet_event) == "done", "the quiet ticket was not done")
        _wait(
            lambda: all(_state(runtime, e) == "done" for e in flood_events),
            "the backlog was not done",
        )
    finally:
        pool.stop()
    order = _noted(harness)
    assert len(order) == 31 and set(order) == {*flood, quiet}
    assert order.index(quiet) <= 1  # behind at most the one flood ticket already started


def test_a_tenant_whose_psa_hangs_holds_at_most_its_share_of_workers(
    harness: Harness, built: list[Runtime]
) -> None:
    runtime = _runtime(harness, {"hang": {"psa_timeout_seconds": 300}, "ok": {}})
    built.append(runtime)
    hang = [harness.cw.add_ticket(f"Printer {n}", "paper jam") for n in range(6)]
    ok = [harness.cw.add_ticket(f"VPN {n}", "The VPN drops") for n in range(6)]
    release = harness.cw.hold("GET", rf"/service/tickets/({'|'.join(map(str, hang))})$")
    hang_events = [_record(runtime, "hang", t) for t in hang]
    ok_events = [_record(runtime, "ok", t) for t in ok]
    pool = jobs.WorkerPool(runtime, workers=4).start()  # tenant_share 0.5: two each at most
    try:
        assert pool.turn_caps == {"hang": 2, "ok": 2}
        assert pool.caps == {"hang": 4, "ok": 4}  # and one ticket more a turn (worker_lookahead)
        _wait(
            lambda: all(_state(runtime, e) == "done" for e in ok_events),
            "the other tenant's tickets were not done while one PSA hung",
        )
        assert pool.in_flight() == {"hang": 4}  # its cap; the other four threads kept working
        states = [_state(runtime, e) for e in hang_events]
        assert sorted(states) == ["processing"] * 4 + ["received"] * 2
        release.set()
        _wait(
            lambda: all(_state(runtime, e) == "done" for e in hang_events),
            "the hanging tenant's tickets were not done once its PSA answered",
        )
    finally:
        release.set()
        pool.stop()
    for ticket in (*hang, *ok):
        assert _noted(harness).count(ticket) == 1


def test_a_psa_timeout_of_the_tenant_frees_the_worker_and_retries_later(
    harness: Harness, built: list[Runtime]
) -> None:
    runtime = _runtime(harness, {"slow": {"psa_timeout_seconds": 0.2}})
    built.append(runtime)
    ticket = harness.cw.add_ticket("Printer", "paper jam")
    release = harness.cw.hold("GET", rf"/service/tickets/{ticket}$")
    try:
        event_id = _record(runtime, "slow", ticket)
        assert jobs.process_event(runtime, event_id) is EventState.RETRYING
        row = runtime.ledger.get(event_id)
        assert row is not None and "did not answer" in row.reason
    finally:
        release.set()


def test_a_write_that_got_no_answer_is_not_sent_again_before_it_may_have_landed(
    harness: Harness, built: list[Runtime]
) -> None:
    """A PSA that holds the category write past the tenant's timeout may apply it afterwards; a
    retry that read the ticket meanwhile would write it again. The retry is due no sooner than
    the timeout once more, and finds the write that landed: one write, one note."""
    runtime = _runtime(harness, {"slow": {"psa_timeout_seconds": 1}}, retry_max_seconds=60)
    built.append(runtime)
    ticket = harness.cw.add_ticket("Printer", "paper jam")
    release = harness.cw.hold("PATCH", rf"/service/tickets/{ticket}$")
    try:
        event_id = _record(runtime, "slow", ticket)
        sent = utcnow()
        assert jobs.process_event(runtime, event_id) is EventState.RETRYING
        row = runtime.ledger.get(event_id)
        assert row is not None and row.next_attempt_at is not None
        assert "the write may still be applied" in row.reason
        # the client waited 1 s for the answer, and the retry waits as long again
        assert row.next_attempt_at - sent >= timedelta(seconds=2)
    finally:
        release.set()  # the held write is applied now, after the worker gave up on it
    _wait(lambda: len(harness.cw.patches(ticket)) == 1, "the held write was not applied")
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    assert len(harness.cw.patches(ticket)) == 1
    assert _noted(harness).count(ticket) == 1


def test_a_paused_tenant_keeps_its_events_and_resumes_them(
    harness: Harness, built: list[Runtime]
) -> None:
    runtime = _runtime(harness, {"paused": {}, "other": {}})
    built.append(runtime)
    assert runtime.tenant_states.pause("paused", by="test")
    held = [harness.cw.add_ticket(f"Printer {n}", "paper jam") for n in range(3)]
    held_events = [_record(runtime, "paused", t) for t in held]
    other = harness.cw.add_ticket("VPN", "The VPN drops")
    other_event = _record(runtime, "other", other)
    pool = jobs.WorkerPool(runtime, workers=4).start()
    try:
        _wait(lambda: _state(runtime, other_event) == "done", "the other tenant was held up")
        assert [_state(runtime, e) for e in held_events] == ["received"] * 3
        assert runtime.ledger.turns(["paused", "other"]) == []  # nothing it may take
        assert runtime.tenant_states.resume("paused")
        runtime.queue.wake()
        _wait(
            lambda: all(_state(runtime, e) == "done" for e in held_events),
            "the resumed tenant's events were not done",
        )
    finally:
        pool.stop()
    assert sorted(_noted(harness)) == sorted([*held, other])


def test_one_tenant_is_claimed_at_once_after_a_full_claim_and_still_not_while_paused(
    harness: Harness, built: list[Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(harness, {"only": {}})
    built.append(runtime)
    events = [
        _record(runtime, "only", harness.cw.add_ticket(f"Printer {n}", "jam")) for n in range(3)
    ]
    looked: list[str] = []
    turns = runtime.ledger.turns

    def counted_turns(tenants: Iterable[str]) -> list[Turn]:
        looked.append("turns")
        return turns(tenants)

    monkeypatch.setattr(runtime.ledger, "turns", counted_turns)
    pool = jobs.WorkerPool(runtime, workers=1, lookahead=0)  # not started: the test dispatches
    try:
        assert pool._claim_some()  # got the one it asked for: next time it claims at once
        assert looked == ["turns"]
        _wait(lambda: _state(runtime, events[0]) == "done", "the first event was not done")
        assert runtime.tenant_states.pause("only", by="test")
        assert not pool._claim_some(filled=True)  # claimed at once, and it honours the pause
        assert looked == ["turns"]
        assert [_state(runtime, e) for e in events[1:]] == ["received"] * 2
        assert not pool._claim_some()  # now through the turns: nothing it may take
        assert looked == ["turns", "turns"]
        assert runtime.tenant_states.resume("only")
        assert pool._claim_some()
        _wait(lambda: _state(runtime, events[1]) == "done", "the resumed event was not done")
    finally:
        pool.stop()


@pytest.mark.parametrize("lookahead", [0, 1])
def test_a_worker_reads_its_next_ticket_while_the_model_answers_and_never_calls_it_more(
    harness: Harness, built: list[Runtime], lookahead: int
) -> None:
    runtime = _runtime(harness, {"only": {}})
    built.append(runtime)
    pool = jobs.WorkerPool(runtime, workers=2, lookahead=lookahead).start()
    _wait(pool.warmed.is_set, "the pool did not warm up")  # the model server's capabilities known
    release = harness.llm.hold("POST", r"/chat/completions$")
    tickets = [harness.cw.add_ticket(f"Printer {n}", "paper jam") for n in range(8)]
    events = [_record(runtime, "only", t) for t in tickets]
    pool.wake()
    held = 2 * (1 + lookahead)  # tickets the pool holds: two at the model, the rest read ahead

    def read() -> set[int]:
        return {
            int(r.path.split("/")[-2]) for r in harness.cw.requests if r.path.endswith("/notes")
        }

    try:
        _wait(lambda: harness.llm.active == 2, "the model was not called")
        _wait(lambda: len(read()) == held, "the next tickets were not read")
        states = [_state(runtime, e) for e in events]
        assert sorted(states) == ["processing"] * held + ["received"] * (8 - held)
        assert harness.llm.active == 2  # the tickets read ahead wait for a turn at the model
        release.set()
        _wait(lambda: all(_state(runtime, e) == "done" for e in events), "tickets not done")
    finally:
        release.set()
        pool.stop()
    assert harness.llm.max_active_by_endpoint["POST /v1/chat/completions"] == 2
    assert sorted(_noted(harness)) == sorted(tickets)


def test_caps_default_to_a_share_of_the_workers_and_take_max_workers(
    harness: Harness, built: list[Runtime]
) -> None:
    runtime = _runtime(harness, {"a": {}, "b": {"max_workers": 3}}, tenant_share=0.25)
    built.append(runtime)
    assert jobs.tenant_caps(runtime, 8) == {"a": 2, "b": 3}
    alone = _runtime(harness, {"a": {}})
    built.append(alone)
    assert jobs.tenant_caps(alone, 8) == {"a": 8}  # a lone tenant may use every worker


def test_a_ticket_that_takes_longer_than_a_lease_keeps_its_worker(
    harness: Harness, built: list[Runtime]
) -> None:
    """The pool renews the leases of the tickets it works on: the reaper (every 0.1 s here)
    never hands a slow ticket to a second worker while the first is still on it."""
    runtime = _runtime(harness, {"slow": {}}, lease_seconds=1, housekeeping_seconds=0.1)
    built.append(runtime)
    ticket = harness.cw.add_ticket("Printer", "paper jam")
    release = harness.cw.hold("GET", rf"/service/tickets/{ticket}$")
    event_id = _record(runtime, "slow", ticket)
    pool = jobs.WorkerPool(runtime, workers=2).start()
    try:
        _wait(lambda: _state(runtime, event_id) == "processing", "the ticket was not taken")
        row = runtime.ledger.get(event_id)
        assert row is not None and row.lease_until is not None
        taken_until = row.lease_until
        # several leases pass while the PSA holds the read; each renewal moves the lease on
        _wait(
            lambda: (
                (r := runtime.ledger.get(event_id)) is not None
                and r.lease_until is not None
                and r.lease_until > taken_until + timedelta(seconds=2)
            ),
            "the lease was not renewed",
        )
        release.set()
        _wait(lambda: _state(runtime, event_id) == "done", "the ticket was not done")
    finally:
        release.set()
        pool.stop()
    row = runtime.ledger.get(event_id)
    assert row is not None and (row.claims, row.attempts) == (1, 1)  # never taken again
    assert _noted(harness).count(ticket) == 1


def test_a_new_worker_pool_learns_its_model_server_before_the_first_ticket(
    harness: Harness, built: list[Runtime]
) -> None:
    """The first tickets of a new worker process do not wait together for what the first one
    would load and find out: the pool prepares each tenant's classifier and PSA client (here
    the ConnectWise codebase) as it starts."""
    capabilities.forget()
    runtime = _runtime(harness, {"warm": {}})
    built.append(runtime)
    classifier = runtime.classifier("warm")
    assert "not probed yet" in str(classifier.capabilities())
    pool = jobs.WorkerPool(runtime, workers=2).start()
    try:
        _wait(
            lambda: "not probed yet" not in str(classifier.capabilities()),
            "the model server's capabilities were not probed",
        )
        _wait(pool.warmed.is_set, "the pool did not say it had warmed up")
    finally:
        pool.stop()
    assert harness.llm.requests  # the probe, before any ticket
    assert [r.path for r in harness.cw.requests] == ["/login/companyinfo/psatriage_test"]
    assert not harness.cw.writes and runtime.ledger.get(1) is None
