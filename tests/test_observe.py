"""Observability: the service's gauges on /metrics, PSA call errors by tenant and endpoint,
/readyz naming a degraded tenant and why, and the shipped Grafana dashboard and Prometheus rules
naming only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.observe import state_registry
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.harness import TENANT, Harness

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NAME = re.compile(r"\bpsatriage_[a-z0-9_]+")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _record(runtime: Runtime, ticket: str) -> int:
    event = TicketEvent(TENANT, ticket, "created", True, f"test:{ticket}")
    event_id, _ = runtime.ledger.record(event, state=EventState.RECEIVED)
    return event_id


def test_metrics_show_the_backlog_and_the_oldest_waiting_event(harness: Harness) -> None:
    runtime = harness.runtime()
    try:
        _record(runtime, "1")
        _record(runtime, "2")
        with TestClient(create_app(runtime)) as client:
            body = client.get("/metrics").text
    finally:
        runtime.close()
    samples = _samples(body)
    tenant = (("tenant", TENANT),)
    assert samples[("psatriage_queue_depth", tenant)] == 2
    assert samples[("psatriage_events_in_state", (("state", "received"), ("tenant", TENANT)))] == 2
    assert samples[("psatriage_oldest_waiting_event_age_seconds", tenant)] >= 0
    assert samples[("psatriage_tenant_degraded", tenant)] == 0
    assert samples[("psatriage_review_queue_size", tenant)] == 0


def test_repeated_psa_failures_degrade_the_tenant_with_a_reason(harness: Harness) -> None:
    runtime = harness.runtime(harness.settings(max_attempts=1, degraded_after=3))
    try:
        tickets = [harness.cw.add_ticket("Printer", "jam") for _ in range(3)]
        for ticket in tickets:
            harness.cw.fail("GET", rf"/service/tickets/{ticket}$", 500, times=5)
            assert jobs.process_event(runtime, _record(runtime, str(ticket))) is EventState.FAILED
        with TestClient(create_app(runtime)) as client:
            ready = client.get("/readyz")
            body = client.get("/metrics").text
    finally:
        runtime.close()
    assert ready.status_code == 200  # the service is ready; the tenant is degraded
    degraded = ready.json()["degraded"]
    assert set(degraded) == {TENANT}
    assert "the last 3 events failed" in degraded[TENANT] and "500" in degraded[TENANT]
    assert any(p.startswith("degraded: ") for p in ready.json()["tenants"][TENANT])
    samples = _samples(body)
    assert samples[("psatriage_tenant_degraded", (("tenant", TENANT),))] == 1
    errors = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "psatriage_psa_call_errors_total" and ("tenant", TENANT) in labels
    }
    assert any(("endpoint", "GET service/tickets/{id}") in labels for labels in errors)
    assert any(("kind", "transient") in labels for labels in errors)


def test_failed_polls_are_counted_and_degrade_the_tenant(harness: Harness) -> None:
    harness.tenant.update(trigger="poll", poll_seconds=5)
    runtime = harness.runtime(harness.settings(degraded_after=1))
    try:
        harness.cw.fail("GET", r"/service/tickets$", 500, times=10)
        assert jobs.poll_tenant(runtime, TENANT) == 0
        assert "1 polls failed in a row" in runtime.degraded()[TENANT]
        before = REGISTRY.get_sample_value("psatriage_poll_failures_total", {"tenant": TENANT})
        assert before is not None and before >= 1
    finally:
        runtime.close()


def _known_names(runtime: Runtime) -> set[str]:
    names = set()
    for registry in (REGISTRY, state_registry(runtime)):
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    for family in list(REGISTRY.collect()):  # histograms and counters with no sample yet
        if family.type == "histogram":
            names.update(f"{family.name}_{s}" for s in ("bucket", "count", "sum"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_the_dashboard_and_the_alerts_name_only_metrics_that_exist(harness: Harness) -> None:
    runtime = harness.runtime()
    try:
        known = _known_names(runtime)
    finally:
        runtime.close()
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    exprs += [rule["expr"] for rule in alerts]
    named = {name for expr in exprs for name in NAME.findall(expr)}
    assert named and named <= known, sorted(named - known)
    listed = {rule["alert"] for rule in alerts}
    wanted = {"PsatriageBacklog", "PsatriageEventsFailing", "PsatriageBreakerOpen"}
    assert wanted | {"PsatriageTenantDegraded"} <= listed
    assert all(rule["annotations"]["summary"] for rule in alerts)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
