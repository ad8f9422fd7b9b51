"""The JSON API, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.harness import TENANT, Harness


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def _done_event(harness: Harness, runtime: Runtime) -> int:
    ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
    event_id, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(ticket), "added", True, f"k{ticket}"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    return event_id


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "queue": "ok"}


def test_readiness_fails_when_the_database_is_behind(runtime: Runtime, client: TestClient) -> None:
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'old'")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "not at the newest migration"


def test_event_detail_shows_decision_and_model_calls(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    event_id = _done_event(harness, runtime)
    detail = client.get(f"/api/events/{event_id}").json()
    assert detail["state"] == "done"
    assert detail["decision"]["outcome"] == "applied"
    assert detail["decision"]["category"] == "Hardware › Printer › Paper jam"
    (call,) = detail["model_calls"]
    assert call["chosen_key"] == "10/20/30" and call["tokens_in"] > 0 and call["error"] is None
    assert client.get("/api/events/999999").status_code == 404


def test_filters(harness: Harness, runtime: Runtime, client: TestClient) -> None:
    _done_event(harness, runtime)
    _done_event(harness, runtime)
    assert len(client.get("/api/events", params={"state": "done"}).json()["events"]) == 2
    assert client.get("/api/events", params={"state": "failed"}).json()["events"] == []
    assert len(client.get("/api/events", params={"limit": 1}).json()["events"]) == 1
    decisions = client.get("/api/decisions", params={"tenant": TENANT, "outcome": "applied"})
    assert len(decisions.json()["decisions"]) == 2
    assert client.get("/api/events", params={"limit": 0}).status_code == 422


def test_api_token_when_configured(harness: Harness, runtime: Runtime) -> None:
    runtime.settings.api_token = SecretStr("s3cret")  # type: ignore[misc]
    with TestClient(create_app(runtime)) as client:
        assert client.get("/api/events").status_code == 401
        assert (
            client.get("/api/events", headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        ok = client.get("/api/events", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/healthz").status_code == 200  # health stays open


def test_metrics_count_events_tokens_and_latency(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    _done_event(harness, runtime)
    text = client.get("/metrics").text
    assert f'psatriage_events_total{{outcome="applied",tenant="{TENANT}"}}' in text
    assert "psatriage_model_tokens_total" in text
    assert "psatriage_model_call_seconds_bucket" in text
    assert "psatriage_event_processing_seconds_bucket" in text


def test_readiness_lists_tenant_problems(runtime: Runtime, client: TestClient) -> None:
    runtime.flag_tenant(TENANT, "credentials refused: HTTP 401")
    body = client.get("/readyz").json()
    assert body["tenants"] == {TENANT: ["credentials refused: HTTP 401"]}


def test_unknown_states_and_outcomes_are_refused(client: TestClient) -> None:
    for path, query in (("/api/events", "state=finished"), ("/api/decisions", "outcome=maybe")):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 422
        assert "Input should be" in response.text


def test_the_schema_names_every_field_of_every_answer(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert {"ticket_id", "state", "reason", "received_at"} <= set(components["Event"]["properties"])
    assert set(components["EventState"]["enum"]) == {s.value for s in EventState}
    detail = components["EventDetail"]["properties"]
    assert {"decision", "model_calls"} <= set(detail)
    assert {"category", "confidence", "wrote_note"} <= set(components["Decision"]["properties"])
    assert {"tokens_in", "error"} <= set(components["ModelCall"]["properties"])
    for path in ("/api/events", "/api/events/{event_id}", "/api/decisions", "/healthz"):
        answer = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert "$ref" in answer["schema"], path


def test_times_are_utc(harness: Harness, runtime: Runtime, client: TestClient) -> None:
    event_id = _done_event(harness, runtime)
    detail = client.get(f"/api/events/{event_id}").json()
    assert detail["received_at"].endswith("Z") and detail["finished_at"].endswith("Z")
    assert detail["decision"]["created_at"].endswith("Z")
    assert detail["next_attempt_at"] is None
