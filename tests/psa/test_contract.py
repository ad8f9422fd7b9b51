"""The contract every PSA adapter keeps, run against each registered adapter and its fake.

Each fake module provides ``kit()`` (see ``tests/fakes/kit.py``); a new adapter gets these checks
for free and cannot land without them (``tests/test_plugins.py`` checks the kit exists).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from psatriage import jobs
from psatriage.config import load_config
from psatriage.domain import TicketEvent
from psatriage.errors import AuthFailed, TransientError, WebhookRejected
from psatriage.http import make_client
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter, RotatingWebhookSecret
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.fakes.kit import ContractKit
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import to_toml

JUNK = [b"", b"null", b"[]", b"{}", b'{"a": 1}', b"\xff\xfe", b'"text"', b"42", b"{" * 50]


def kit_for(kind: str) -> ContractKit:
    module = adapters()[kind].__module__.split(".")[2]
    made: ContractKit = importlib.import_module(f"tests.fakes.{module}").kit()
    return made


@pytest.fixture(params=sorted(adapters()))
def kit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractKit]:
    made = kit_for(request.param)
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    yield made
    made.fake.stop()


@pytest.fixture
def adapter(kit: ContractKit) -> Iterator[PSAAdapter[Any]]:
    cls = adapters()[kit.psa]
    http = make_client(timeout=5)
    yield cls("contract", cls.Config.model_validate(kit.connection), http)
    http.close()


def test_created_delivery_verifies_and_parses_as_actionable(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    ticket = kit.new_ticket("Printer", "My printer has a paper jam")
    body, headers = kit.created(ticket)
    adapter.verify(headers, body)
    event = adapter.parse(body)
    assert isinstance(event, TicketEvent)
    assert event.actionable and event.ticket_id == ticket and event.tenant == "contract"
    assert event.dedupe_key
    again = adapter.parse(body)
    assert again is not None and again.dedupe_key == event.dedupe_key


def test_other_events_are_not_acted_on(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    body, headers = kit.updated(kit.new_ticket("Printer", "jam"))
    adapter.verify(headers, body)
    event = adapter.parse(body)
    assert event is None or not event.actionable


def test_tampered_or_unsigned_deliveries_are_refused(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    delivery = kit.created(kit.new_ticket("Printer", "jam"))
    body, headers = kit.tamper(delivery)
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify(headers, body)
    assert caught.value.status == 401
    with pytest.raises(WebhookRejected):
        adapter.verify({}, delivery[0])


@pytest.mark.parametrize("body", JUNK)
def test_parse_is_total(adapter: PSAAdapter[Any], body: bytes) -> None:
    try:
        event = adapter.parse(body)
    except WebhookRejected as exc:
        assert exc.status == 400
    else:
        assert event is None or isinstance(event, TicketEvent)


def test_reads_ticket_and_taxonomy(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket = adapter.get_ticket(kit.new_ticket("Printer on floor 3", "My printer has a paper jam"))
    assert ticket.title == "Printer on floor 3"
    assert "paper jam" in ticket.description + ticket.initial_note
    assert ticket.scope
    taxonomy = adapter.get_taxonomy(ticket)
    keys = [leaf.key for leaf in taxonomy.leaves]
    assert keys and len(keys) == len(set(keys))
    assert all(leaf.path and leaf.active for leaf in taxonomy.leaves)


def test_writes_category_and_an_internal_note_it_can_find(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    ticket_id = kit.new_ticket("Printer", "jam")
    ticket = adapter.get_ticket(ticket_id)
    leaf = adapter.get_taxonomy(ticket).leaves[0]
    adapter.set_category(ticket, leaf)
    assert len(kit.category_writes(ticket_id)) == 1
    reread = adapter.get_ticket(ticket_id)
    assert [(v.level, v.id) for v in reread.current][: len(leaf.path)] == [
        (v.level, v.id) for v in leaf.path
    ]
    adapter.add_note(ticket, "categorized [psatriage:contract-1]")
    assert any("psatriage:contract-1" in text for text in kit.notes(ticket_id))
    assert adapter.find_note(ticket, "psatriage:contract-1")
    assert not adapter.find_note(ticket, "psatriage:contract-2")


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (401, {}, AuthFailed),
        (429, {"Retry-After": "3"}, TransientError),
        (503, {}, TransientError),
        (500, {}, TransientError),
    ],
)
def test_errors_map_to_the_tree(
    kit: ContractKit,
    adapter: PSAAdapter[Any],
    status: int,
    headers: dict[str, str],
    error: type[Exception],
) -> None:
    ticket_id = kit.new_ticket("Printer", "jam")
    kit.fake.fail("*", kit.fail_path(ticket_id), status, times=10, headers=headers)
    with pytest.raises(error) as caught:
        adapter.get_ticket(ticket_id)
    if headers:
        assert isinstance(caught.value, TransientError) and caught.value.retry_after == 3
    for secret in kit.secrets:
        assert secret not in str(caught.value)


def test_secrets_never_in_reprs_or_logs(
    kit: ContractKit, adapter: PSAAdapter[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ticket = adapter.get_ticket(kit.new_ticket("Printer", "jam"))
    adapter.add_note(ticket, "x")
    shown = repr(adapter) + repr(adapter.config) + str(adapter.config) + caplog.text
    for secret in kit.secrets:
        assert secret not in shown


def test_through_the_service_one_write_and_one_note(kit: ContractKit, tmp_path: Path) -> None:
    with FakeOpenAI() as llm:
        config = tmp_path / "psatriage.toml"
        tenant = {
            "psa": kit.psa,
            "trigger": "webhook",
            "connection": kit.connection,
            "classifier": {
                "api_key": "env:CONTRACT_OPENAI_KEY",
                "base_url": f"{llm.url}/v1",
                "inner_retries": 0,
            },
        }
        config.write_text(to_toml({"tenants": {"t1": tenant}}), encoding="utf-8")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CONTRACT_OPENAI_KEY", DEFAULT_API_KEY)
            runtime = Runtime(Settings(data_dir=tmp_path / "data"), load_config(config))
        try:
            ticket_id = kit.new_ticket("Printer broken", "My printer has a paper jam")
            body, headers = kit.created(ticket_id)
            with TestClient(create_app(runtime)) as client:
                url = f"/webhooks/t1{kit.webhook_path_suffix}"
                response = client.post(url, content=body, headers=headers)
                assert response.status_code == 202, response.text
                assert client.post(url, content=body, headers=headers).status_code == 200
            event_id = response.json()["event_id"]
            assert jobs.process_event(runtime, event_id) is EventState.DONE
        finally:
            runtime.close()
        assert len(kit.category_writes(ticket_id)) == 1
        assert sum("psatriage:" in text for text in kit.notes(ticket_id)) == 1


ROTATING = sorted(k for k, a in adapters().items() if issubclass(a.Config, RotatingWebhookSecret))


@pytest.fixture(params=ROTATING)
def rotating_kit(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ContractKit]:
    """The kits of the PSAs that sign webhooks with a shared secret (ConnectWise does not)."""
    made = kit_for(request.param)
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    yield made
    made.fake.stop()


@pytest.mark.parametrize("still_valid", [True, False], ids=["in-grace", "expired"])
def test_a_rotated_webhook_secret_is_accepted_only_during_its_grace_period(
    rotating_kit: ContractKit, monkeypatch: pytest.MonkeyPatch, still_valid: bool
) -> None:
    kit = rotating_kit
    cls = adapters()[kit.psa]
    monkeypatch.setenv("CONTRACT_NEW_WEBHOOK_SECRET", "a-brand-new-webhook-secret")
    until = datetime.now(UTC) + timedelta(hours=1 if still_valid else -1)
    connection = {
        **kit.connection,
        "webhook_secret": "env:CONTRACT_NEW_WEBHOOK_SECRET",
        "webhook_secret_previous": kit.connection["webhook_secret"],  # what the fake signs with
        "webhook_secret_previous_until": until.isoformat(),
    }
    with make_client(timeout=5) as http:
        rotated = cls("contract", cls.Config.model_validate(connection), http)
        body, headers = kit.created(kit.new_ticket("Printer", "jam"))
        if still_valid:
            rotated.verify(headers, body)
        else:
            with pytest.raises(WebhookRejected):
                rotated.verify(headers, body)
    unfinished = {**connection}
    del unfinished["webhook_secret_previous_until"]
    with pytest.raises(ValueError, match="a rotation must end"):
        cls.Config.model_validate(unfinished)
