"""POST /webhooks/{tenant}: verify → parse → ledger → wake → 202, and every way it says no."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.errors import WebhookRejected
from psatriage.psa.base import PATH_TOKEN_HEADER
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.web import create_app, webhooks
from psatriage.web.webhooks import refuse_replay
from tests.harness import TENANT, Harness


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    built = harness.runtime()
    yield built
    built.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:  # no embedded workers
        yield test_client


def _queued(runtime: Runtime) -> int:
    """Events waiting for a worker: the ledger is the queue."""
    return runtime.ledger.waiting()


def _post(client: TestClient, body: bytes, headers: dict[str, str], tenant: str = TENANT) -> object:
    return client.post(f"/webhooks/{tenant}", content=body, headers=headers)


def test_signed_ticket_added_is_recorded_queued_and_acknowledged(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    ticket = harness.cw.add_ticket("Printer", "paper jam")
    body, headers = harness.cw.callback(ticket)
    response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    event = runtime.ledger.get(response.json()["event_id"])
    assert event is not None and event.state == "received" and event.ticket_id == str(ticket)
    assert _queued(runtime) == 1
    # no PSA call on this path other than the one signing-key fetch
    assert [r.path for r in harness.cw.requests if "callbackkey" not in r.path] == []


def test_signing_key_is_fetched_once(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    for _ in range(3):
        body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
        assert client.post(f"/webhooks/{TENANT}", content=body, headers=headers).status_code == 202
    assert len(harness.cw.requests_to("callbackkey")) == 1


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda body, headers: (body, {**headers, "x-content-signature": "AAAA"}), 401),
        (lambda body, headers: (body.replace(b"ServiceTicket", b"ServiceTickeT"), headers), 401),
        (lambda body, headers: (body, {"content-type": "application/json"}), 401),
    ],
    ids=["wrong-signature", "tampered-body", "unsigned"],
)
def test_unverified_callbacks_are_refused_and_nothing_is_stored(
    harness: Harness, runtime: Runtime, client: TestClient, mutate: object, status: int
) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
    body, headers = mutate(body, headers)  # type: ignore[operator]
    response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["detail"]
    assert runtime.ledger.search() == [] and _queued(runtime) == 0


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"Type": "ticket", "Action": "added"}).encode(), 400),
    ],
    ids=["not-json", "not-an-object", "no-key-url"],
)
def test_malformed_bodies_get_a_4xx_never_a_500(
    harness: Harness, runtime: Runtime, client: TestClient, payload: bytes, status: int
) -> None:
    headers = {"x-content-signature": harness.cw.sign(payload)}
    response = client.post(f"/webhooks/{TENANT}", content=payload, headers=headers)
    assert response.status_code == status, response.text
    assert runtime.ledger.search() == []


def test_signed_but_incomplete_ticket_body_is_a_400(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    body = json.dumps(
        {"Type": "ticket", "Action": "added", "Metadata": {"key_url": harness.cw.key_url}}
    ).encode()
    response = client.post(
        f"/webhooks/{TENANT}", content=body, headers={"x-content-signature": harness.cw.sign(body)}
    )
    assert response.status_code == 400
    assert "id" in response.json()["detail"].lower()
    assert runtime.ledger.search() == []


def test_unknown_tenant_is_404_without_saying_which_exist(client: TestClient) -> None:
    response = client.post("/webhooks/nobody", content=b"{}")
    assert response.status_code == 404
    assert TENANT not in response.text


def test_body_over_the_limit_is_413(harness: Harness, client: TestClient) -> None:
    response = client.post(f"/webhooks/{TENANT}", content=b"x" * (1_048_576 + 1))
    assert response.status_code == 413


def test_five_concurrent_deliveries_make_one_event(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
    statuses: list[int] = []
    barrier = threading.Barrier(5)

    def deliver() -> None:
        barrier.wait()
        statuses.append(
            client.post(f"/webhooks/{TENANT}", content=body, headers=headers).status_code
        )

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 200, 202]
    assert len(runtime.ledger.search()) == 1 and _queued(runtime) == 1


@pytest.mark.parametrize(
    ("action", "record_type"), [("updated", "ServiceTicket"), ("added", "ProjectTicket")]
)
def test_updates_and_project_tickets_are_recorded_as_ignored(
    harness: Harness, runtime: Runtime, client: TestClient, action: str, record_type: str
) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"), action, record_type)
    response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    (event,) = runtime.ledger.search()
    assert event.state == "ignored" and _queued(runtime) == 0


def test_signing_key_outage_is_503_so_the_psa_retries(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
    harness.cw.fail("GET", "callbackkey", 503)
    response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert runtime.ledger.search() == []
    assert client.post(f"/webhooks/{TENANT}", content=body, headers=headers).status_code == 202


def test_a_full_backlog_answers_503_with_retry_after_and_loses_nothing_accepted(
    harness: Harness,
) -> None:
    runtime = harness.runtime(harness.settings(max_waiting=2))
    try:
        app = create_app(runtime)
        deliveries = [harness.cw.callback(harness.cw.add_ticket("x", str(n))) for n in range(3)]
        with TestClient(app) as client:
            accepted = [_post(client, *d) for d in deliveries[:2]]
            assert [r.status_code for r in accepted] == [202, 202]  # type: ignore[attr-defined]
            assert app.state.backlog.refresh()  # two waiting: full
            refused = client.post(
                f"/webhooks/{TENANT}", content=deliveries[2][0], headers=deliveries[2][1]
            )
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
            assert len(runtime.ledger.search()) == 2  # the accepted ones are kept
            for row in runtime.ledger.search():
                assert jobs.process_event(runtime, row.id) is EventState.DONE
            assert not app.state.backlog.refresh()
            again = client.post(
                f"/webhooks/{TENANT}", content=deliveries[2][0], headers=deliveries[2][1]
            )
            assert again.status_code == 202  # the PSA's retry gets in
    finally:
        runtime.close()


def test_a_flood_of_unsigned_deliveries_is_refused_at_the_edge(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    """Malformed and unsigned deliveries cost one in-memory check each: nothing is recorded or
    woken, and a signed delivery in the middle of the flood is taken as usual."""
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
    forged = {**headers, "x-content-signature": "AAAA"}
    statuses = [
        client.post(f"/webhooks/{TENANT}", content=b, headers=h).status_code
        for b, h in [(body, forged), (b"{not json", headers), (body, {})] * 100
    ]
    assert set(statuses) == {400, 401}
    assert runtime.ledger.search() == [] and _queued(runtime) == 0
    assert client.post(f"/webhooks/{TENANT}", content=body, headers=headers).status_code == 202
    assert len(runtime.ledger.search()) == 1
    assert len(harness.cw.requests_to("callbackkey")) == 1  # the flood fetched nothing


def test_embedded_worker_categorizes_the_ticket(harness: Harness, runtime: Runtime) -> None:
    ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
    body, headers = harness.cw.callback(ticket)
    with TestClient(create_app(runtime, embedded_workers=2)) as client:
        deadline = time.monotonic() + 120  # a deadline for a loaded machine, not a claim on speed
        assert client.post(f"/webhooks/{TENANT}", content=body, headers=headers).status_code == 202
        while time.monotonic() < deadline:
            events = client.get("/api/events").json()["events"]
            if events[0]["state"] == "done":
                break
            time.sleep(0.02)
    assert len(harness.cw.patches(ticket)) == 1
    assert events[0]["state"] == "done"


def test_a_path_token_reaches_verify_only_from_the_path(
    harness: Harness, runtime: Runtime, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, str]] = []
    adapter = runtime.adapter(TENANT)
    monkeypatch.setattr(adapter, "verify", lambda headers, body: seen.append(dict(headers)))
    body, headers = harness.cw.callback(harness.cw.add_ticket("x", "y"))
    forged = {**headers, PATH_TOKEN_HEADER: "forged"}
    assert (
        client.post(f"/webhooks/{TENANT}/s3cret", content=body, headers=forged).status_code == 202
    )
    assert client.post(f"/webhooks/{TENANT}", content=body, headers=forged).status_code == 200
    assert seen[0][PATH_TOKEN_HEADER] == "s3cret"
    assert PATH_TOKEN_HEADER not in seen[1]


def _accept_path_only(runtime: Runtime) -> FastAPI:
    """An app with no routes but the accept path: whatever answers a webhook is the accept path."""
    app = FastAPI()
    app.state.runtime = runtime
    app.state.backlog = webhooks.Backlog(runtime)
    app.state.recorder = webhooks.Recorder(runtime)
    app.add_middleware(webhooks.AcceptPath)
    return app


def test_webhooks_are_served_ahead_of_the_routing_which_only_declares_them(
    harness: Harness, runtime: Runtime
) -> None:
    declared = create_app(runtime).openapi()["paths"]
    assert {"/webhooks/{tenant}", "/webhooks/{tenant}/{path_token}"} <= set(declared)
    body, headers = harness.cw.callback(harness.cw.add_ticket("Printer", "paper jam"))
    with TestClient(_accept_path_only(runtime)) as client:
        response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
        assert (response.status_code, response.json()["status"]) == (202, "accepted")
        assert client.post("/webhooks/nobody/token", content=b"{}").status_code == 404
    assert runtime.ledger.waiting() == 1


@pytest.mark.parametrize("root_path", ["", "/psatriage"])
def test_the_accept_path_serves_webhooks_under_a_root_path(
    harness: Harness, runtime: Runtime, root_path: str
) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("Printer", "paper jam"))
    with TestClient(_accept_path_only(runtime), root_path=root_path) as client:
        # behind a proxy that mounts the service at root_path, the path still carries it
        response = client.post(f"{root_path}/webhooks/{TENANT}", content=body, headers=headers)
    assert (response.status_code, response.json()["status"]) == (202, "accepted")


def test_the_accept_path_leaves_other_methods_and_paths_to_the_app(
    harness: Harness, client: TestClient
) -> None:
    body, headers = harness.cw.callback(harness.cw.add_ticket("Printer", "paper jam"))
    assert client.get(f"/webhooks/{TENANT}").status_code == 405
    assert client.post("/webhooks", content=body, headers=headers).status_code == 404
    assert client.post(f"/webhooks/{TENANT}/a/b", content=body, headers=headers).status_code == 404


def test_a_created_event_older_than_the_replay_window_is_refused_and_nothing_stored(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    old = harness.cw.add_ticket("x", "y", entered=datetime.now(UTC) - timedelta(days=2))
    body, headers = harness.cw.callback(old)
    response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 400
    assert "replay window of 86400 s" in response.json()["detail"]
    assert runtime.ledger.search() == [] and _queued(runtime) == 0

    recent = harness.cw.add_ticket("x", "y", entered=datetime.now(UTC) - timedelta(hours=23))
    body, headers = harness.cw.callback(recent)
    assert client.post(f"/webhooks/{TENANT}", content=body, headers=headers).status_code == 202


def test_old_events_that_cause_no_work_are_still_recorded_as_ignored(
    harness: Harness, runtime: Runtime, client: TestClient
) -> None:
    old = harness.cw.add_ticket("x", "y", entered=datetime.now(UTC) - timedelta(days=30))
    body, headers = harness.cw.callback(old, "updated")
    response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 202 and response.json()["status"] == "ignored"


def test_a_replay_window_of_zero_turns_the_check_off(harness: Harness) -> None:
    harness.tenant["replay_window_seconds"] = 0
    runtime = harness.runtime()
    try:
        with TestClient(create_app(runtime)) as client:
            old = harness.cw.add_ticket("x", "y", entered=datetime.now(UTC) - timedelta(days=400))
            body, headers = harness.cw.callback(old)
            assert client.post(
                f"/webhooks/{TENANT}", content=body, headers=headers
            ).status_code == (202)
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("occurred", "refused"),
    [
        (datetime(2026, 1, 1, 12, 0, tzinfo=UTC), True),  # a day and a second old
        (datetime(2026, 1, 1, 12, 0, 2, tzinfo=UTC), False),
        (datetime(2026, 1, 1, 12, 0), True),  # no offset: read as UTC
        (datetime(2026, 1, 3, 12, 0, tzinfo=UTC), False),  # ahead of us: a clock difference
        (None, False),  # no time: the ledger's dedupe key alone
    ],
)
def test_refuse_replay_bounds_only_the_past(occurred: datetime | None, refused: bool) -> None:
    event = TicketEvent(TENANT, "1", "added", True, "k", occurred_at=occurred)
    now = datetime(2026, 1, 2, 12, 0, 1, tzinfo=UTC)
    if refused:
        with pytest.raises(WebhookRejected, match="replay window") as caught:
            refuse_replay(event, 86400, now=now)
        assert caught.value.status == 400
    else:
        refuse_replay(event, 86400, now=now)
