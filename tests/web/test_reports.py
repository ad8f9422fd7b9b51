"""``GET /api/reports/...``: the reports as typed JSON from the stored facts, over a ConnectWise
tenant whose fake holds closed tickets and time; bad input as a 4xx with one clear detail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.reports.refresh import refresh_facts
from psatriage.runtime import Runtime
from psatriage.store.facts import Facts
from psatriage.store.tables import EventState, utcnow
from psatriage.web import create_app
from tests.harness import TENANT, Harness

NOW = datetime.now(UTC)


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


@pytest.fixture
def client(harness: Harness, runtime: Runtime) -> Iterator[TestClient]:
    """The API over facts of three closed tickets: two printer tickets at Contoso (1.5 h, one of
    them decided by psatriage, and 0.5 h) and one e-mail ticket at Fabrikam (3 h)."""
    cw = harness.cw
    decided = cw.add_ticket("Printer jams", "My printer has a paper jam")
    event_id, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(decided), "added", True, f"k{decided}"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    cw.close_ticket(decided, NOW - timedelta(days=2))
    cw.add_time(decided, 1.5)
    other = cw.add_ticket("Printer jams again", "jam", type_id=10, subtype_id=20, item_id=30)
    cw.close_ticket(other, NOW - timedelta(days=3))
    cw.add_time(other, 0.5)
    mail = cw.add_ticket("Mailbox full", "full", type_id=11, subtype_id=22, item_id=32,
                         company=(251, "Fabrikam Inc"))  # fmt: skip
    cw.close_ticket(mail, NOW - timedelta(days=4))
    cw.add_time(mail, 3.0)
    config = runtime.tenant(TENANT)
    refresh_facts(
        runtime.adapter(TENANT),
        Facts(runtime.engine, runtime.sessions),
        config.redactor,
        since=utcnow() - timedelta(days=60),
        until=utcnow(),
    )
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def test_categories(client: TestClient) -> None:
    answer = client.get("/api/reports/categories", params={"tenant": TENANT, "since": "30d"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    summary = body["summary"]
    assert (summary["tickets"], summary["hours"], summary["decided"]) == (3, 5.0, 1)
    assert summary["since"].endswith("Z") and summary["refreshed_at"].endswith("Z")
    assert [level["level"] for level in body["levels"]] == ["type", "type › subtype", "full path"]
    full = {row["category"]: row for row in body["levels"][-1]["rows"]}
    printer = full["Hardware › Printer › Paper jam"]
    assert (printer["tickets"], printer["hours"], printer["median_hours"]) == (2, 2.0, 1.0)
    assert printer["previous_tickets"] == 0 and printer["tickets_trend"] is None


def test_automation_and_companies(client: TestClient) -> None:
    automation = client.get("/api/reports/automation", params={"tenant": TENANT}).json()
    assert [(r["category"], r["hours"]) for r in automation["by_hours"]] == [
        ("Software › Email › Setup", 3.0),
        ("Hardware › Printer › Paper jam", 2.0),
    ]
    assert automation["recurring"] == [] and automation["criteria"]["recurring_at_tickets"] == 3
    companies = client.get("/api/reports/companies", params={"tenant": TENANT}).json()
    assert [(c["company"], c["tickets"], c["hours"]) for c in companies["companies"]] == [
        ("Fabrikam Inc", 1, 3.0),
        ("Contoso Ltd", 2, 2.0),
    ]


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"tenant": "nobody"}, 404, "no tenant named 'nobody'"),
        ({"tenant": TENANT, "since": "soon"}, 400, "since 'soon' is not a date"),
        ({"tenant": TENANT, "until": "2026-02-30"}, 400, "until '2026-02-30' is not a date"),
        ({"tenant": TENANT, "since": "2026-02-01", "until": "2026-01-01"}, 400, "is not before"),
    ],
)
def test_bad_input_is_a_4xx_with_one_detail(
    client: TestClient, params: dict[str, str], status: int, detail: str
) -> None:
    answer = client.get("/api/reports/companies", params=params)
    assert answer.status_code == status
    assert detail in answer.json()["detail"]
    assert client.get("/api/reports/companies").status_code == 422  # the tenant is required


def test_an_empty_period_says_so(client: TestClient) -> None:
    params = {"tenant": TENANT, "since": "2020-01-01", "until": "2020-02-01"}
    body = client.get("/api/reports/categories", params=params).json()
    assert body["summary"]["tickets"] == 0
    assert body["summary"]["message"].startswith("no tickets closed between 2020-01-01")
