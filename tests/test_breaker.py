"""The per-tenant circuit breaker: stops calling a dead model, resumes on its own."""

from __future__ import annotations

import pytest

from psatriage import jobs
from psatriage.breaker import CircuitBreaker
from psatriage.domain import TicketEvent
from psatriage.errors import InvalidAnswer, TransientError
from psatriage.store.tables import EventState
from tests.harness import TENANT, Harness


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise TransientError("down")


def test_opens_after_the_threshold_then_half_opens_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    calls = 0

    def counted_failure() -> None:
        nonlocal calls
        calls += 1
        _fail()

    for _ in range(3):
        with pytest.raises(TransientError):
            breaker.call(counted_failure)
    assert breaker.open and calls == 3
    with pytest.raises(TransientError, match="circuit open") as caught:
        breaker.call(counted_failure)
    assert calls == 3 and caught.value.retry_after == pytest.approx(10)
    clock.now = 11  # half-open: one trial; it fails, the circuit opens again
    with pytest.raises(TransientError, match="down"):
        breaker.call(counted_failure)
    with pytest.raises(TransientError, match="circuit open"):
        breaker.call(counted_failure)
    clock.now = 22  # the next trial succeeds: closed
    assert breaker.call(lambda: "ok") == "ok"
    assert not breaker.open


def test_other_errors_do_not_count() -> None:
    breaker = CircuitBreaker(threshold=1)

    def invalid() -> None:
        raise InvalidAnswer("nonsense")

    for _ in range(3):
        with pytest.raises(InvalidAnswer):
            breaker.call(invalid)
    assert not breaker.open


def test_a_dead_model_is_not_hammered(harness: Harness) -> None:
    runtime = harness.runtime(harness.settings(breaker_failures=2, max_attempts=10))
    try:
        harness.llm.fail("POST", "chat/completions", 503, times=100)
        events = []
        for n in range(5):
            ticket = harness.cw.add_ticket(f"Printer {n}", "paper jam")
            event_id, _ = runtime.ledger.record(
                TicketEvent(TENANT, str(ticket), "added", True, f"k{n}"), state=EventState.RECEIVED
            )
            events.append(event_id)
        states = [jobs.process_event(runtime, e) for e in events]
        assert states == [EventState.RETRYING] * 5
        chat = [r for r in harness.llm.requests if r.path.endswith("/chat/completions")]
        assert len(chat) == 2  # the circuit opened after two failures
        row = runtime.ledger.get(events[-1])
        assert row is not None and "circuit open" in row.reason
    finally:
        runtime.close()
