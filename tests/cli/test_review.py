"""``psatriage review``: the queue from the command line, bad input as one line and exit 1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from psatriage import jobs
from psatriage.cli import app
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from tests.harness import TENANT, Harness

runner = CliRunner()


@pytest.fixture
def review(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A pending review of tenant acme (a ConnectWise ticket), in the harness's database."""
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(harness.root / "data"))
    harness.llm.category_probability = 0.6
    runtime: Runtime = harness.runtime(policy={"apply_at": 0.95, "suggest_at": 0.2})
    try:
        ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
        event_id, _ = runtime.ledger.record(
            TicketEvent(TENANT, str(ticket), "added", True, f"k{ticket}"),
            state=EventState.RECEIVED,
        )
        assert jobs.process_event(runtime, event_id) is EventState.DONE
        (row,) = runtime.reviews.search(tenant=TENANT)
    finally:
        runtime.close()
    yield row.id


def test_list_accept_and_a_closed_review(harness: Harness, review: int) -> None:
    listed = runner.invoke(
        app, ["--config", str(harness.root / "psatriage.toml"), "review", "list", "-t", TENANT]
    )
    assert listed.exit_code == 0, listed.output
    assert "Printer" in listed.output and "1 pending review(s)" in listed.output
    base = ["--config", str(harness.root / "psatriage.toml"), "review"]
    accepted = runner.invoke(app, [*base, "accept", str(review)])
    assert accepted.exit_code == 0, accepted.output
    assert f"review {review} accepted" in accepted.output
    again = runner.invoke(app, [*base, "accept", str(review)])
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        line for line in again.output.strip().splitlines() if line.startswith("error:")
    ]
    assert f"review {review} is already accepted (by cli:" in again.output
    assert len(harness.cw.writes_to("PATCH", r"/service/tickets/\d+$")) == 1


def test_bad_input_is_one_line_and_exit_1(harness: Harness, review: int) -> None:
    base = ["--config", str(harness.root / "psatriage.toml"), "review"]
    unknown = runner.invoke(app, [*base, "dismiss", "999999"])
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "error: no review with the id 999999"
    wrong = runner.invoke(app, [*base, "correct", str(review), "no/such/key"])
    assert wrong.exit_code == 1 and len(wrong.output.strip().splitlines()) == 1
    assert "'no/such/key' is not a category tenant 'acme' may use" in wrong.output
    tenant = runner.invoke(app, [*base, "list", "--tenant", "nobody"])
    assert tenant.exit_code == 2 and "no tenant named 'nobody'" in tenant.output
    assert harness.cw.writes_to("PATCH", r"/service/tickets/\d+$") == []
