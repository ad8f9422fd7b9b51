"""A noise action on ConnectWise, where the board owns the category tree: a configured category
is looked up on the board the noise is routed to, and board and category go in one PATCH. The
pipeline runs on SQLite with the real ConnectWise adapter against the fake ConnectWise."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from psatriage import pipeline
from psatriage.domain import Decision, Outcome
from psatriage.errors import PermanentError
from psatriage.http import make_client
from psatriage.psa.connectwise import ConnectWiseAdapter, ConnectWiseConfig
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.inprocess import ScriptedClassifier, answer
from tests.pipeline_kit import PipelineKit, make_database
from tests.psa.conftest import serving

NETWORK = 2  # the fake's "Network Operations" board: types Outage/Change, not Help Desk's


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnectWise]:
    yield from serving(FakeConnectWise(), monkeypatch)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with make_client(timeout=5.0, connect_timeout=2.0) as client:
        yield client


@pytest.fixture
def kit(tmp_path: Path) -> PipelineKit:
    return PipelineKit(make_database(tmp_path / "noise.db"), classifier=ScriptedClassifier())


def _run(
    kit: PipelineKit,
    fake: FakeConnectWise,
    http: httpx.Client,
    auto_reply: dict[str, Any],
    title: str = "Automatic reply: firewall",
) -> tuple[int, int, Decision]:
    kit.with_tenant(fields={"enabled": ["noise", "routing"], "noise": {"auto_reply": auto_reply}})
    config = ConnectWiseConfig.model_validate(fake.connection_config())
    deps = dataclasses.replace(kit.deps, adapter=ConnectWiseAdapter("acme", config, http))
    ticket = fake.add_ticket(title, "I am away until Monday.")
    assert fake.tickets[ticket]["board"]["id"] == 1  # Help Desk
    event = kit.event(str(ticket))
    return ticket, event, pipeline.categorize(event, str(ticket), 1, deps)


def test_a_noise_category_of_the_board_it_is_routed_to_is_one_patch(
    kit: PipelineKit, fake: FakeConnectWise, http: httpx.Client
) -> None:
    action = {"action": "set", "category": "Outage > Firewall", "routing": "Network Operations"}
    ticket, event, decision = _run(kit, fake, http, action)
    assert decision.outcome is Outcome.APPLIED
    assert decision.wrote[:2] == ("category", "routing")
    (patch,) = fake.patches(ticket)
    assert [op["path"] for op in patch] == ["board", "type", "subType", "item"]
    stored = fake.tickets[ticket]
    assert stored["board"]["id"] == NETWORK
    assert (stored["type"]["id"], stored["subType"]["id"], stored["item"]["id"]) == (60, 70, 80)
    assert kit.decision(event).scope == str(NETWORK)  # a later update is no board change
    assert kit.classifier.requests == []


def test_a_noise_category_only_the_current_board_has_is_not_written_with_another_board(
    kit: PipelineKit, fake: FakeConnectWise, http: httpx.Client
) -> None:
    action = {"action": "set", "category": "Hardware", "routing": "Network Operations"}
    with pytest.raises(
        PermanentError,
        match=r"tenant 'acme', key 'fields.noise.auto_reply.category': 'Hardware' is not an "
        r"active category of Network Operations \(where the routing moves the ticket\); fix: "
        r"name an active category of Network Operations \(key or path\)",
    ):
        _run(kit, fake, http, action)
    assert all(not fake.patches(t) for t in fake.tickets)


def test_a_refused_write_is_retried_on_the_tree_of_the_board_it_moves_to(
    kit: PipelineKit, fake: FakeConnectWise, http: httpx.Client
) -> None:
    """The PSA refuses the PATCH once: the tree read again is the new board's, where the
    category still is, so the write is sent again."""
    fake.fail("PATCH", r"/service/tickets/\d+$", 400, body={"code": "InvalidObject"})
    action = {"action": "set", "category": "Outage > Firewall", "routing": "Network Operations"}
    ticket, _, decision = _run(kit, fake, http, action)
    assert decision.outcome is Outcome.APPLIED
    assert fake.tickets[ticket]["board"]["id"] == NETWORK
    assert fake.tickets[ticket]["type"]["id"] == 60


def test_a_refused_routed_write_reads_the_new_boards_tree_again(
    kit: PipelineKit, fake: FakeConnectWise, http: httpx.Client
) -> None:
    """The model routes to Network Operations and chooses a category of its tree; the PSA
    refuses the PATCH once: the tree read again is the new board's, not the one the ticket is
    still on, so the write is sent again."""
    kit.classifier.then(answer("2"), answer("60/70/80"))  # the board first, then the category
    fake.fail("PATCH", r"/service/tickets/\d+$", 400, body={"code": "InvalidObject"})
    ticket, _, decision = _run(kit, fake, http, {"action": "categorize"}, "Firewall down")
    assert decision.outcome is Outcome.APPLIED
    assert len(fake.patches(ticket)) == 2
    assert fake.tickets[ticket]["board"]["id"] == NETWORK
    assert fake.tickets[ticket]["type"]["id"] == 60
