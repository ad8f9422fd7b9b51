"""The contract, set-up and operation: the connection table, registering the webhook, checking the
connection, the client-side call limits, the CLI and the whole service, for every PSA."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from psatriage import jobs
from psatriage.config import load_config
from psatriage.errors import CallLimitReached
from psatriage.http import make_client
from psatriage.psa.base import PSAAdapter
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.fakes.kit import BadConfig, Concurrency, ContractKit
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.psa.conftest import OPENAI_KEY_ENV, in_parallel, write_tenants
from tests.psa.contract.conftest import Build

os.environ["COLUMNS"] = "200"  # Rich sizes its console when psatriage.cli is imported
from typer.testing import CliRunner

from psatriage.cli import app

HOOK = "https://triage.example.com/webhooks/t1"


def test_the_connection_table_refuses(
    kit: ContractKit, adapter_class: type[PSAAdapter[Any]], bad_config: BadConfig
) -> None:
    table = {k: v for k, v in {**kit.connection, **bad_config.overrides}.items() if v is not None}
    with pytest.raises(ValidationError, match=bad_config.message or None):
        adapter_class.Config.model_validate(table)


def test_register_webhook_is_idempotent(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    assert kit.registrations is not None
    first = adapter.register_webhook(HOOK)
    assert first and adapter.register_webhook(HOOK) == first
    assert kit.registrations() == 1


def test_check_connection_says_what_answered(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    assert re.fullmatch(kit.cases.connection_check, adapter.check_connection())


def test_a_full_window_reschedules_instead_of_sending(kit: ContractKit, build: Build) -> None:
    adapter = build(**kit.cases.window(3))
    ticket_id = kit.new_ticket("VPN", "Down.")
    reads = kit.fail_path(ticket_id)
    with pytest.raises(CallLimitReached) as caught:
        for _ in range(4):
            adapter.get_ticket(ticket_id)
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    sent = len(kit.fake.requests_to(reads))
    assert 1 <= sent <= 3
    with pytest.raises(CallLimitReached):
        adapter.get_ticket(ticket_id)
    assert len(kit.fake.requests_to(reads)) == sent  # refused before it was sent


def test_calls_in_flight_are_capped_per_endpoint(
    kit: ContractKit, build: Build, concurrency: Concurrency
) -> None:
    tickets = [kit.new_ticket(f"T{n}", "x") for n in range(8)]
    with make_client(timeout=10, max_connections=32) as client:
        adapter = build(client=client, **concurrency.overrides)
        adapter.get_ticket(tickets[0])  # what is read once (token, zone...) is read now
        kit.fake.delay = 0.05
        errors = in_parallel(adapter.get_ticket, tickets)
    assert errors == []
    assert kit.fake.max_active_by_endpoint[concurrency.endpoint(kit.fake)] == concurrency.cap


@pytest.fixture
def tenants(kit: ContractKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tenants file with tenant "t1" on the kit's fake and the fake OpenAI, in the
    environment the CLI reads."""
    with FakeOpenAI() as llm:
        path = tmp_path / "psatriage.toml"
        write_tenants(path, "t1", kit.psa, kit.connection, llm, trigger="webhook")
        monkeypatch.setenv(OPENAI_KEY_ENV, DEFAULT_API_KEY)
        monkeypatch.setenv("PSATRIAGE_CONFIG", str(path))
        monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path / "data"))
        yield path


def test_the_cli_checks_shows_registers_and_categorizes(kit: ContractKit, tenants: Path) -> None:
    assert kit.registrations is not None
    runner = CliRunner()
    check = runner.invoke(app, ["config", "check"])
    assert check.exit_code == 0, check.output
    assert re.search(kit.cases.connection_check, " ".join(check.output.split()))
    shown = runner.invoke(app, ["taxonomy", "show", "--tenant", "t1"])
    assert shown.exit_code == 0, shown.output
    assert all(text in shown.output for text in kit.cases.taxonomy_shows)
    assert not any(text in shown.output for text in kit.cases.taxonomy_hides)
    register = ["webhooks", "register", "--tenant", "t1", "--url", HOOK]
    first, second = runner.invoke(app, register), runner.invoke(app, register)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == second.output.splitlines()[-1]
    assert kit.registrations() == 1
    ticket_id = kit.new_ticket("Printer broken", "My printer has a paper jam")
    dry = runner.invoke(app, ["categorize", "--tenant", "t1", "--ticket", ticket_id, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert kit.category_writes(ticket_id) == []
    done = runner.invoke(app, ["categorize", "--tenant", "t1", "--ticket", ticket_id])
    assert done.exit_code == 0 and "done" in done.output, done.output
    assert len(kit.category_writes(ticket_id)) == 1
    assert sum("psatriage:" in text for text in kit.notes(ticket_id)) == 1
    for output in (check.output, shown.output, first.output, dry.output, done.output):
        assert not any(secret in output for secret in kit.secrets)


def test_through_the_service_one_write_and_one_note(kit: ContractKit, tenants: Path) -> None:
    runtime = Runtime(Settings(data_dir=tenants.parent / "data"), load_config(tenants))
    try:
        ticket_id = kit.new_ticket("Printer broken", "My printer has a paper jam")
        body, headers = kit.created(ticket_id)
        url = f"/webhooks/t1{kit.webhook_path_suffix}"
        with TestClient(create_app(runtime)) as client:
            for refused in (kit.tamper((body, headers)), (body, {})):
                assert client.post(url, content=refused[0], headers=refused[1]).status_code == 401
            assert runtime.ledger.search(tenant="t1", limit=10) == []  # nothing stored
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 202, response.text
            assert client.post(url, content=body, headers=headers).status_code == 200
        event_id = response.json()["event_id"]
        assert jobs.process_event(runtime, event_id) is EventState.DONE
    finally:
        runtime.close()
    assert len(kit.category_writes(ticket_id)) == 1
    assert sum("psatriage:" in text for text in kit.notes(ticket_id)) == 1


_WEBHOOK_KEYS = ("webhook_secret", "webhook_path_token", "webhook_secret_previous")


def test_a_poll_only_tenant_needs_no_webhook_secret(
    kit: ContractKit, adapter_class: type[PSAAdapter[Any]]
) -> None:
    from psatriage.config import parse_config  # noqa: PLC0415
    from psatriage.errors import ConfigError  # noqa: PLC0415

    connection = {k: v for k, v in kit.connection.items() if not k.startswith(_WEBHOOK_KEYS)}
    connection.pop("webhook_secret_previous_until", None)
    assert adapter_class.can_poll()
    local = {"kind": "local"}
    polled = parse_config(
        {
            "tenants": {
                "t1": {
                    "psa": kit.psa,
                    "trigger": "poll",
                    "connection": connection,
                    "classifier": local,
                }
            }
        }
    )
    assert polled.tenant("t1").polls
    for trigger in ("webhook", "both"):
        body = {"psa": kit.psa, "trigger": trigger, "connection": connection, "classifier": local}
        try:
            parse_config({"tenants": {"t1": body}})
        except ConfigError as exc:  # where the PSA signs webhooks with a shared secret
            assert "tenant 't1', key 'connection': " in str(exc)
            assert "webhook" in str(exc) and "fix" in str(exc)
