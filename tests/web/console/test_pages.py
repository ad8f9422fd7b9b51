"""The console's pages over real data: tickets the pipeline decided, and a seeded month."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState, utcnow
from psatriage.web.console.core import Console
from psatriage.web.console.queries import ALL, DecisionFilter
from tests.harness import TENANT, Harness
from tests.web.console.conftest import OTHER, csrf_of, page, sign_in
from tests.web.console.seed import seed


def _decided(
    harness: Harness, runtime: Runtime, title: str = "Printer", tenant: str = TENANT
) -> int:
    ticket = harness.cw.add_ticket(title, "My printer has a paper jam")
    event_id, _ = runtime.ledger.record(
        TicketEvent(tenant, str(ticket), "added", True, f"k{ticket}-{tenant}"),
        state=EventState.RECEIVED,
    )
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    decision = runtime.decisions.decision_for_event(event_id)
    assert decision is not None
    return decision.id


def _failed(
    runtime: Runtime,
    ticket: str,
    reason: str,
    tenant: str = TENANT,
    state: EventState = EventState.FAILED,
) -> int:
    event_id, _ = runtime.ledger.record(
        TicketEvent(tenant, ticket, "added", True, f"f{ticket}"), state=EventState.RECEIVED
    )
    claim = runtime.ledger.claim(event_id, lease_seconds=60)
    assert claim is not None
    runtime.ledger.finish(claim, state, reason)
    return event_id


@pytest.fixture
def admin(client: TestClient, people: object) -> TestClient:
    sign_in(client, "ann")
    return client


# -- overview -------------------------------------------------------------------------------


def test_overview_counts_what_the_pipeline_did(
    harness: Harness, runtime: Runtime, admin: TestClient, console: Console
) -> None:
    _decided(harness, runtime)
    _decided(harness, runtime, tenant=OTHER)  # shadow mode: recorded only
    _failed(runtime, "9001", "gave up after 6 attempts: the model could not be reached")
    console.health.refresh(TENANT)
    shown = page(admin, "/")
    assert shown.status == 200
    assert re.search(r"3 last day 3 last 7 days 3 last 30 days 1 open failures", shown.text)
    assert "applied 33%" in shown.text and "recorded only 33%" in shown.text
    assert "failed 33%" in shown.text
    acme = page(admin, "/", tenant=TENANT)
    assert re.search(r"2 last day .* 1 open failures", acme.text)
    assert "applied 50%" in acme.text and "failed 50%" in acme.text
    assert "reachable" in acme.text and "ConnectWise" not in acme.text  # details on hover only
    assert page(admin, "/", tenant="nope").status == 404


def test_overview_charts_cost_and_tokens_per_day(
    runtime: Runtime, admin: TestClient, console: Console
) -> None:
    seed(runtime.engine, tenants=(TENANT, OTHER), decisions=120, failures=3, days=10)
    html = admin.get("/").text
    cost = html[html.index('id="cost-chart"') : html.index('id="tokens-chart"')]
    values = [float(v) for v in re.findall(r'class="bar"[^>]*data-value="([0-9.e-]+)"', cost)]
    assert len(values) == 30  # a bar a day
    assert sum(1 for v in values if v > 0) >= 8  # calls on (almost) each of the last ten days
    assert sum(values) == pytest.approx(sum(day.cost_usd for day in console.queries.cost_per_day()))
    tokens = html[html.index('id="tokens-chart"') :]
    assert "<title>" in tokens and "No model calls" not in html


def test_overview_windows_count_by_age(runtime: Runtime, console: Console) -> None:
    now = utcnow()
    seed(runtime.engine, tenants=(TENANT,), decisions=0, failures=0)
    seed(runtime.engine, tenants=(TENANT,), decisions=40, failures=0, days=1, now=now)
    seed(
        runtime.engine,
        tenants=(TENANT,),
        decisions=30,
        failures=0,
        days=5,
        now=now - timedelta(days=1, hours=1),
    )
    seed(
        runtime.engine,
        tenants=(TENANT,),
        decisions=20,
        failures=4,
        days=20,
        now=now - timedelta(days=8),
    )
    seed(
        runtime.engine,
        tenants=(TENANT,),
        decisions=10,
        failures=0,
        days=5,
        now=now - timedelta(days=31),
    )
    volume = console.queries.volumes(now)[ALL]
    assert volume.tickets == {1: 40, 7: 70, 30: 94}
    assert volume.open_failures == 4
    assert sum(volume.shares.values()) == 94


def test_the_health_of_each_tenant(
    harness: Harness, runtime: Runtime, admin: TestClient, console: Console
) -> None:
    harness.llm.api_key = "another-key"  # the model now refuses our key
    console.health.refresh(TENANT)
    html = admin.get("/").text
    row = html[html.index('data-tenant="acme"') : html.index('data-tenant="globex"')]
    assert row.count("reachable") == 2 and "unreachable" in row and "AuthFailed" in row
    assert "closed" in row and "last event never" in row


# -- decisions ------------------------------------------------------------------------------


def test_decisions_filter_and_page(runtime: Runtime, admin: TestClient, console: Console) -> None:
    seed(runtime.engine, tenants=(TENANT, OTHER), decisions=130, failures=0)
    everything = page(admin, "/decisions")
    assert "130" in everything.text
    first = admin.get("/decisions").text
    ids = [int(i) for i in re.findall(r'<a href="/decisions/(\d+)">', first)]
    assert len(ids) == 50 and ids == sorted(ids, reverse=True)
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older and 'rel="prev"' not in first
    second = admin.get(older.group(1).replace("&amp;", "&")).text
    more = [int(i) for i in re.findall(r'<a href="/decisions/(\d+)">', second)]
    assert len(more) == 50 and max(more) < min(ids)
    newer = re.search(r'href="([^"]+)" rel="prev"', second)
    assert newer
    back = admin.get(newer.group(1).replace("&amp;", "&")).text
    assert [int(i) for i in re.findall(r'<a href="/decisions/(\d+)">', back)] == ids

    acme = admin.get("/decisions", params={"tenant": OTHER, "outcome": "applied"}).text
    expected = console.queries.decisions(DecisionFilter(tenant=OTHER, outcome="applied")).total
    assert f"{expected} matching" in re.sub(r"<[^>]+>", "", acme)
    rows = re.findall(r"<tr>\s*<td><a href=\"/decisions/\d+\">.*?</tr>", acme, re.S)
    assert rows and all(OTHER in r and "applied" in r and TENANT not in r for r in rows)

    printers = admin.get("/decisions", params={"category": "PRINTER", "engine": "local"}).text
    rows = re.findall(r"<tr>\s*<td><a href=\"/decisions/\d+\">.*?</tr>", printers, re.S)
    assert rows and all("Printer" in r and "local" in r for r in rows)


def test_decisions_by_date_and_a_bad_date(runtime: Runtime, admin: TestClient) -> None:
    now = utcnow()
    seed(runtime.engine, tenants=(TENANT,), decisions=5, failures=0, days=1, now=now)
    seed(
        runtime.engine,
        tenants=(TENANT,),
        decisions=7,
        failures=0,
        days=1,
        now=now - timedelta(days=10),
    )
    old_day = (now - timedelta(days=10)).date()
    window = page(
        admin,
        "/decisions",
        since=(old_day - timedelta(days=1)).isoformat(),
        until=old_day.isoformat(),
    )
    assert "7 matching" in window.text
    bad = page(admin, "/decisions", since="12/05/2026")
    assert bad.status == 200
    assert "'12/05/2026' is not a date; write it as YYYY-MM-DD (since ignored)" in bad.text
    assert "12 " in bad.text


def test_a_decision_page_shows_the_note_as_written(
    harness: Harness, runtime: Runtime, admin: TestClient
) -> None:
    decision_id = _decided(harness, runtime)
    ticket = runtime.decisions.search_decisions()[0].ticket_id
    html = admin.get(f"/decisions/{decision_id}").text
    (posted,) = [n["text"] for n in harness.cw.notes(int(ticket)) if "psatriage:" in n["text"]]
    note = re.search(r'<pre class="note">(.*?)</pre>', html, re.S)
    assert note and note.group(1).replace("&#39;", "'").replace("&amp;", "&") == posted
    assert "Hardware › Printer › Paper jam" in html
    assert f"recid={ticket}" in html and "ConnectWise.aspx" in html
    call = runtime.decisions.calls_for_event(runtime.decisions.search_decisions()[0].event_id)[0]
    assert f"<code>{call.template_hash}</code>" in html
    assert f"{call.tokens_in} / {call.tokens_out}" in html
    assert "The ticket best matches" in html  # the reasoning


def test_a_shadowed_decision_wrote_no_note(
    harness: Harness, runtime: Runtime, admin: TestClient
) -> None:
    decision_id = _decided(harness, runtime, tenant=OTHER)
    shown = page(admin, f"/decisions/{decision_id}")
    assert "No note was written (recorded only)" in shown.text and "shadowed" in shown.text


@pytest.mark.parametrize("wanted", ["999999", "abc", "99999999999999", "²"])
def test_a_decision_that_does_not_exist_is_a_404_page(admin: TestClient, wanted: str) -> None:
    response = admin.get(f"/decisions/{wanted}")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert f"There is no decision {wanted}." in response.text
    assert "Traceback" not in response.text


# -- events ---------------------------------------------------------------------------------


def test_an_admin_retries_a_failed_event(
    runtime: Runtime, admin: TestClient, console: Console
) -> None:
    event_id = _failed(runtime, "9002", "the model chose '99/1', which is not a candidate")
    listed = admin.get("/events").text
    assert "the model chose &#39;99/1&#39;, which is not a candidate" in listed
    before = runtime.ledger.waiting()
    response = admin.post(
        "/events/retry", data={"csrf_token": csrf_of(listed), "event_id": str(event_id)}
    )
    assert response.status_code == 303 and response.headers["location"] == "/events?retried=1"
    event = runtime.ledger.get(event_id)
    assert event is not None and event.state == "received"
    assert event.reason == "retried by an operator"
    assert runtime.ledger.waiting() == before + 1
    assert "Queued again: 1 event(s)" in page(admin, "/events", retried="1").text
    audit = console.audit.recent()[0]
    assert (audit.actor, audit.action, audit.target) == ("ann", "events_retry", str(event_id))


@pytest.mark.parametrize("who", ["val", "rob"])
def test_only_admins_retry_events(
    runtime: Runtime, client: TestClient, people: object, who: str
) -> None:
    event_id = _failed(runtime, "9003", "gave up")
    sign_in(client, who)
    listed = client.get("/events").text
    assert "disabled" in listed and "Only admins may retry events" in listed
    refused = client.post(
        "/events/retry", data={"csrf_token": csrf_of(listed), "event_id": str(event_id)}
    )
    assert refused.status_code == 403
    assert "Only admins and above may retry events" in refused.text
    event = runtime.ledger.get(event_id)
    assert event is not None and event.state == "failed"


def test_an_over_budget_event_is_listed_and_retried(runtime: Runtime, admin: TestClient) -> None:
    event_id = _failed(
        runtime, "9006", "the tenant's 100 model calls a day are used", state=EventState.OVER_BUDGET
    )
    listed = admin.get("/events").text
    assert "100 model calls a day are used" in listed and "over_budget" in listed
    response = admin.post(
        "/events/retry", data={"csrf_token": csrf_of(listed), "event_id": str(event_id)}
    )
    assert response.status_code == 303
    event = runtime.ledger.get(event_id)
    assert event is not None and event.state == "received"


def test_events_of_one_tenant(runtime: Runtime, admin: TestClient) -> None:
    _failed(runtime, "9004", "acme's problem")
    _failed(runtime, "9005", "globex's problem", tenant=OTHER)
    shown = page(admin, "/events", tenant=OTHER)
    assert "globex's problem" in shown.text and "acme's problem" not in shown.text
    assert page(admin, "/events", tenant="nope").status == 404


# -- tenants --------------------------------------------------------------------------------


def test_tenant_configuration_is_shown_with_secrets_masked(
    harness: Harness, admin: TestClient, console: Console
) -> None:
    console.health.refresh(TENANT)
    listed = page(admin, "/tenants")
    assert "acme connectwise webhook openai apply ok ok" in listed.text
    shown = page(admin, f"/tenants/{TENANT}")
    assert shown.status == 200
    for secret in harness.env.values():
        assert secret not in shown.text
    assert "public_key •••••• (set)" in shown.text and "api_key •••••• (set)" in shown.text
    assert "min_confidence_to_change 0.8" in shown.text
    assert "gpt-4o-mini" in shown.text and "{{ reasoning }}" in shown.text
    assert "PSA ok ConnectWise" in shown.text


def test_an_admin_checks_a_tenant_now(harness: Harness, admin: TestClient) -> None:
    harness.cw.requests.clear()
    form = admin.get(f"/tenants/{TENANT}").text
    checked = admin.post(f"/tenants/{TENANT}/check", data={"csrf_token": csrf_of(form)})
    assert checked.status_code == 303
    assert any(r.path.endswith("/system/info") for r in harness.cw.requests)
    assert "model ok" in page(admin, f"/tenants/{TENANT}").text


def test_a_viewer_cannot_run_checks(client: TestClient, people: object) -> None:
    sign_in(client, "val")
    form = client.get(f"/tenants/{TENANT}").text
    assert "Check now" not in form
    refused = client.post(f"/tenants/{TENANT}/check", data={"csrf_token": csrf_of(form)})
    assert refused.status_code == 403


def test_a_tenant_that_does_not_exist_is_a_404_page(admin: TestClient) -> None:
    shown = page(admin, "/tenants/nope")
    assert shown.status == 404 and "There is no tenant named 'nope'." in shown.text


# -- the rest -------------------------------------------------------------------------------


def test_pages_carry_a_strict_content_security_policy(admin: TestClient) -> None:
    response = admin.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert ' style="' not in response.text and "<script" not in response.text


def test_the_api_docs_need_no_internet(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/static/swagger/") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404
    schema = client.get("/openapi.json").json()
    assert "/api/events" in schema["paths"] and "/decisions" not in schema["paths"]


def test_large_counts_stop_at_a_thousand(runtime: Runtime, admin: TestClient) -> None:
    seed(runtime.engine, tenants=(TENANT,), decisions=1001, failures=0)
    assert "Decisions 1,000+" in page(admin, "/decisions").text
    seed(runtime.engine, tenants=(OTHER,), decisions=3, failures=0)
    assert "3 matching" in page(admin, "/decisions", tenant=OTHER).text
