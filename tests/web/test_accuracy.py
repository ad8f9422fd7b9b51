"""``GET /api/accuracy`` and the accuracy gauges on ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from psatriage import accuracy
from psatriage.runtime import Runtime
from psatriage.store.tables import utcnow
from psatriage.web import create_app
from tests.harness import TENANT, Harness
from tests.test_accuracy import add_outcome


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def test_accuracy_per_dimension(runtime: Runtime, client: TestClient) -> None:
    now = utcnow()
    add_outcome(runtime.sessions, state="agreed", matches=True, tenant=TENANT, when=now)
    add_outcome(runtime.sessions, state="filled", matches=False, tenant=TENANT, when=now,
                band="suggest", decision="shadowed")  # fmt: skip
    add_outcome(runtime.sessions, state="agreed", matches=True, tenant=TENANT,
                when=now - timedelta(days=40))  # fmt: skip
    body = client.get("/api/accuracy", params={"tenant": TENANT}).json()
    assert body["tenant"] == TENANT and body["since"].endswith("Z")
    assert body["overall"] | {"states": {}} == {
        "key": "all", "label": "all decisions", "decided": 2, "known": 2, "correct": 1,
        "accuracy": 0.5, "states": {},
    }  # fmt: skip
    assert {g["key"]: g["accuracy"] for g in body["by_band"]} == {"apply": 1.0, "suggest": 0.0}
    assert [g["key"] for g in body["by_decision"]] == ["applied", "shadowed"]
    assert len(body["by_day"]) == 1 and body["by_company"][0]["label"] == "Contoso"
    wider = client.get("/api/accuracy", params={"tenant": TENANT, "since": "60d"}).json()
    assert wider["overall"]["decided"] == 3


def test_bad_input(client: TestClient) -> None:
    unknown = client.get("/api/accuracy", params={"tenant": "nobody"})
    assert unknown.status_code == 404 and "no tenant named 'nobody'" in unknown.json()["detail"]
    future = client.get("/api/accuracy", params={"tenant": TENANT, "since": "2999-01-01"})
    assert future.status_code == 400 and "in the future" in future.json()["detail"]
    assert (
        client.get("/api/accuracy", params={"tenant": TENANT, "since": "soon"}).status_code == 400
    )
    assert client.get("/api/accuracy").status_code == 422


def test_metrics_show_the_accuracy_gauges(runtime: Runtime, client: TestClient) -> None:
    add_outcome(runtime.sessions, state="agreed", matches=True, tenant=TENANT, when=utcnow())
    accuracy._refreshed.clear()
    text = client.get("/metrics").text
    assert f'psatriage_accuracy{{band="all",tenant="{TENANT}"}} 1.0' in text
    assert f'psatriage_outcomes{{state="agreed",tenant="{TENANT}"}} 1.0' in text
