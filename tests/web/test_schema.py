"""Schemathesis against the service's own OpenAPI schema: every operation, with generated valid
and invalid input (schemathesis' coverage and fuzzing phases, unexpected methods included), must
answer no 5xx and only what the schema declares (status, content type, body), and must record and
queue nothing.

The app runs in-process through schemathesis' ASGI transport on a real Runtime: a SQLite ledger
(PostgreSQL too for the authorized API) and a Huey queue in a temporary folder, a ConnectWise
tenant and a HaloPSA tenant (HMAC plus a secret URL segment) over their HTTP fakes, and the API
bearer token set. Two events were processed before each test; after every case the ledger holds
exactly those two and the queue is empty. Cases are steered so they reach past the first "no":
webhooks go to any tenant, to each real one, and to HaloPSA with the right URL secret; the API is
called with the right, a wrong and no bearer token.

The seed is fixed and generation derandomized, so a CI run is repeatable. Examples per operation
and variant come from ``PSATRIAGE_FUZZ_EXAMPLES`` (default 25, about 20 s on two cores). The
longer run for developers (it found the NUL-in-a-filter 500 on PostgreSQL that 25 did not), with
``PSATRIAGE_TEST_POSTGRES_URL`` set as ``.ci/run`` sets it:

    PSATRIAGE_FUZZ_EXAMPLES=300 uv run pytest -p no:cacheprovider tests/web/test_schema.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.python import asgi

from psatriage import jobs
from psatriage.config import load_config
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.harness import TENANT, Harness, to_toml
from tests.psa.contract.conftest import kit_for

EXAMPLES = int(os.environ.get("PSATRIAGE_FUZZ_EXAMPLES", "25"))
SEED = 20240611
API_TOKEN = "schema-test-api-token"
HALO = "halo"


@dataclass
class Service:
    app: FastAPI
    runtime: Runtime
    seeded: list[int]
    halo_path_token: str


def _processed_event(harness: Harness, runtime: Runtime, title: str) -> int:
    ticket = harness.cw.add_ticket(title, "My printer has a paper jam")
    event_id, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(ticket), "added", True, f"k{ticket}"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    return event_id


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str | None:
    """SQLite in the data folder (None), unless a test asks for "postgresql" (indirectly)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def service(
    harness: Harness, database: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    halo = kit_for("halopsa")
    try:
        for key, value in halo.env.items():
            monkeypatch.setenv(key, value)
        tenants = {
            TENANT: harness.tenant,
            HALO: {**harness.tenant, "psa": halo.psa, "connection": halo.connection},
        }
        path = tmp_path / "psatriage.toml"
        path.write_text(to_toml({"tenants": tenants}), encoding="utf-8")
        where = {} if database is None else {"database_url": database}
        runtime = Runtime(
            harness.settings(api_token=SecretStr(API_TOKEN), **where), load_config(path)
        )
        try:
            seeded = [_processed_event(harness, runtime, title) for title in ("Printer", "Scanner")]
            yield Service(create_app(runtime), runtime, seeded, halo.webhook_path_suffix.strip("/"))
        finally:
            asgi.shutdown_lifespans()  # the ASGI transport keeps every app's lifespan open till now
            runtime.close()
    finally:
        halo.fake.stop()


def _schema() -> schemathesis.BaseSchema:
    """The schema as the app serves it; it depends on the code only, not on a Runtime, so it is
    built once at import (the app answering each case is ``service.app``, built per test)."""
    config = schemathesis.Config(seed=SEED)
    config.projects.default.generation.update(max_examples=EXAMPLES, deterministic=True)
    return schemathesis.openapi.from_dict(create_app(cast(Runtime, None)).openapi(), config=config)


schema = _schema()


def test_the_app_serves_the_schema_under_test(service: Service) -> None:
    with TestClient(service.app) as client:
        assert client.get("/openapi.json").json() == schema.raw_schema


FIXTURES_PER_OPERATION = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _call(
    case: schemathesis.Case, service: Service, headers: dict[str, str] | None = None
) -> int | None:
    """Send ``case`` in-process, run every schemathesis check (no 5xx among them), then make sure
    the ledger (which is the queue) holds only the seeded events. The status, or None for a
    method the operation does not have (answered 405)."""
    response = case.call_and_validate(app=service.app, headers=headers)
    ledger = [row.id for row in service.runtime.ledger.search()]
    assert ledger == sorted(service.seeded, reverse=True), "input was recorded in the ledger"
    if case.method.upper() != case.operation.method.upper():  # the coverage phase tries others
        assert response.status_code == 405
        return None
    return response.status_code


@schema.include(path_regex="^/webhooks/").parametrize()
@pytest.mark.parametrize("tenant", [None, TENANT, HALO], ids=["any-tenant", "connectwise", "halo"])
@FIXTURES_PER_OPERATION
def test_webhooks_refuse_unproven_input(
    case: schemathesis.Case, tenant: str | None, service: Service
) -> None:
    assert case.path_parameters is not None
    if tenant is not None:
        case.path_parameters["tenant"] = tenant
    assert _call(case, service) in ({None, 404} if tenant is None else {None, 400, 401})


@schema.include(path="/webhooks/{tenant}/{path_token}").parametrize()
@FIXTURES_PER_OPERATION
def test_the_right_url_secret_alone_proves_nothing(
    case: schemathesis.Case, service: Service
) -> None:
    assert case.path_parameters is not None
    case.path_parameters.update(tenant=HALO, path_token=service.halo_path_token)
    assert _call(case, service) in {None, 401}  # the HMAC header is still missing or wrong


@schema.include(path_regex="^/api/").parametrize()
@pytest.mark.parametrize(
    ("bearer", "database"),
    [(API_TOKEN, "sqlite"), (API_TOKEN, "postgresql"), ("wrong", "sqlite"), (None, "sqlite")],
    ids=["right-sqlite", "right-postgresql", "wrong", "none"],
    indirect=["database"],
)
@FIXTURES_PER_OPERATION
def test_the_api_answers_only_the_right_bearer(
    case: schemathesis.Case, bearer: str | None, service: Service
) -> None:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    expected = {None, 200, 400, 404, 422} if bearer == API_TOKEN else {None, 401}
    assert _call(case, service, headers) in expected


@schema.include(path_regex="^/(healthz|readyz|metrics)$").parametrize()
@FIXTURES_PER_OPERATION
def test_health_readiness_and_metrics_stay_open(case: schemathesis.Case, service: Service) -> None:
    assert _call(case, service) in {None, 200}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_a_nul_in_a_filter_is_refused_before_the_database(service: Service) -> None:
    # found by the longer run: PostgreSQL refuses NUL in text, which was a 500
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with TestClient(service.app) as client:
        for query in ("tenant=%00", "state=a%00", "ticket_id=%00"):
            assert client.get(f"/api/events?{query}", headers=auth).status_code == 422
        for query in ("tenant=%00", "ticket_id=%00", "outcome=%00"):
            assert client.get(f"/api/decisions?{query}", headers=auth).status_code == 422
        assert client.get(f"/api/events/{2**63}", headers=auth).status_code == 422  # was a 500
