"""Alert storms: one model call for many tickets saying the same thing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from psatriage import metrics
from psatriage.domain import Ticket
from psatriage.fields import storms
from tests.fakes.inprocess import ScriptedClassifier, answer
from tests.pipeline_kit import PipelineKit, make_database


@pytest.fixture
def kit(tmp_path: Path) -> PipelineKit:
    return PipelineKit(make_database(tmp_path / "storms.db"))


def _saved(tenant: str = "acme") -> float:
    return metrics.CALLS_SAVED.labels(tenant, "storm")._value.get()


def test_what_varies_between_alerts_is_blanked_out() -> None:
    first = Ticket(
        id="1",
        title="Disk C: 91% full on SRV-01",
        description="At 2026-12-05 10:32 on 10.0.0.12 (id 6f1c2e7a-1b2c-4d3e-8f90-123456789abc)",
        scope="1",
        company_id="7",
    )
    again = Ticket(
        id="2",
        title="Disk C: 97% full on SRV-02",
        description="At 2026-12-05 11:04 on 10.0.0.13 (id 0a1b2c3d-1b2c-4d3e-8f90-fedcba987654)",
        scope="1",
        company_id="7",
    )
    assert storms.normalized(first.title) == "disk c: #% full on srv-#"
    assert storms.key(first) == storms.key(again)
    assert storms.key(replace(again, company_id="8")) != storms.key(first)
    assert storms.key(replace(again, title="Disk D: 97% full on SRV-02")) != storms.key(first)


def test_a_storm_of_twenty_tickets_makes_one_model_call(kit: PipelineKit) -> None:
    kit.with_tenant(fields={"enabled": ["priority"]}, storm_window_minutes=10)
    kit.classifier = ScriptedClassifier(answer("10/21", fields={"priority": "1"}))
    before = _saved()
    tickets = [
        kit.psa.add_ticket(f"Backup failed on SRV-{n:02}", f"Job {n} ended with error 0x{n:x}.",
                           company_id="7")
        for n in range(1, 21)
    ]  # fmt: skip
    for ticket in tickets:
        kit.run(kit.event(ticket))
    assert len(kit.classifier.requests) == 1 and len(kit.calls()) == 1
    assert all(kit.psa.category_writes(t) == ["10/21+priority=1"] for t in tickets)
    leader, *followers = tickets
    assert "Same as ticket" not in kit.psa.ours(leader)[0]
    for ticket in followers:
        (note,) = kit.psa.ours(ticket)
        assert f"Same as ticket {leader} (an alert storm)" in note
        assert "Priority: High" in note
    assert _saved() - before == 19


def test_another_company_or_no_window_asks_the_model(kit: PipelineKit) -> None:
    kit.with_tenant(storm_window_minutes=10)
    kit.classifier = ScriptedClassifier(answer("10/21"), answer("10/21"), answer("10/21"))
    kit.run(kit.event(kit.psa.add_ticket("Backup failed", "Error 1", company_id="7")))
    kit.run(kit.event(kit.psa.add_ticket("Backup failed", "Error 2", company_id="8")))
    kit.with_tenant(storm_window_minutes=0)
    kit.run(kit.event(kit.psa.add_ticket("Backup failed", "Error 3", company_id="7")))
    assert len(kit.classifier.requests) == 3
