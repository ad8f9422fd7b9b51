"""Secrets never reach a log line or the database: a full flow with debug logging, then grep."""

from __future__ import annotations

import logging

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import text

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.logging import configure_logging, mask_secrets, register_secrets
from psatriage.store.tables import Base, EventState
from psatriage.web import create_app
from tests.fakes.openai import DEFAULT_API_KEY
from tests.harness import TENANT, Harness


def test_a_full_flow_with_debug_logs_leaks_no_secret(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="debug", json=True)
    try:
        runtime = harness.runtime()
        secrets = [
            harness.cw.public_key,
            harness.cw.private_key,
            harness.cw.signing_key,
            DEFAULT_API_KEY,
        ]
        ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
        body, headers = harness.cw.callback(ticket)
        with TestClient(create_app(runtime)) as client:
            event_id = client.post(f"/webhooks/{TENANT}", content=body, headers=headers).json()[
                "event_id"
            ]
            tampered = client.post(
                f"/webhooks/{TENANT}", content=body + b" ", headers=headers
            ).status_code
        assert tampered == 401
        assert jobs.process_event(runtime, event_id) is EventState.DONE
        # the model server echoes the key it was given in its 401, as some proxies do
        harness.llm.api_key = "another-key"
        second = harness.cw.add_ticket("Laptop", "will not power on")
        failing, _ = runtime.ledger.record(
            TicketEvent(TENANT, str(second), "added", True, "k2"), state=EventState.RECEIVED
        )
        assert jobs.process_event(runtime, failing) is EventState.PARKED
        logging.getLogger("psatriage.test").warning("a stdlib line with %s", DEFAULT_API_KEY)
        structlog.get_logger("t").error("oops", detail=f"key={harness.cw.private_key}")
        with runtime.engine.connect() as connection:
            stored = [
                repr(row)
                for table in Base.metadata.sorted_tables
                for row in connection.execute(text(f"SELECT * FROM {table.name}"))  # noqa: S608
            ]
        runtime.close()
    finally:
        configure_logging(level="info")
    logs = capsys.readouterr().err
    assert '"event": "event done"' in logs and "credentials refused" in logs
    for secret in secrets:
        assert secret not in logs, secret
        assert not any(secret in row for row in stored), secret


def test_mask_secrets_by_field_name_and_by_value() -> None:
    register_secrets(["s3cr3t-value"])
    event = {
        "event": "x",
        "authorization": "Basic abc",
        "api_key": "k",
        "detail": "the key s3cr3t-value leaked",
        "error": ValueError("s3cr3t-value"),
    }
    masked = mask_secrets(None, "info", event)
    assert masked["authorization"] == masked["api_key"] == "***"
    assert masked["detail"] == "the key *** leaked"
    assert masked["error"] == "ValueError: ***"
