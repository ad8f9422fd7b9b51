"""``/api/reviews``: the queue and its actions over JSON, behind the API token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from psatriage import jobs
from psatriage.domain import TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState
from psatriage.store.users import Audit
from psatriage.web import create_app
from tests.harness import TENANT, Harness

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def runtime(harness: Harness) -> Iterator[Runtime]:
    harness.llm.category_probability = 0.6
    built = harness.runtime(policy={"apply_at": 0.95, "suggest_at": 0.2})
    built.settings.api_token = SecretStr("s3cret")  # type: ignore[misc]
    yield built
    built.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def _review(harness: Harness, runtime: Runtime, client: TestClient) -> tuple[int, int]:
    ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
    event_id, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(ticket), "added", True, f"k{ticket}"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    listed = client.get("/api/reviews", params={"ticket_id": str(ticket)}, headers=TOKEN).json()
    (review,) = listed["reviews"]
    return ticket, review["id"]


def test_list_and_accept_write_once(harness: Harness, runtime: Runtime, client: TestClient) -> None:
    ticket, review_id = _review(harness, runtime, client)
    listed = client.get("/api/reviews", params={"tenant": TENANT}, headers=TOKEN).json()
    (shown,) = listed["reviews"]
    assert shown["state"] == "pending" and shown["ticket_id"] == str(ticket)
    assert shown["category"] and 0.2 <= shown["confidence"] < 0.95
    assert shown["title"] == "Printer" and shown["excerpt"] == "My printer has a paper jam"

    accepted = client.post(f"/api/reviews/{review_id}/accept", json={"by": "jane"}, headers=TOKEN)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted" and accepted.json()["closed_by"] == "api:jane"
    again = client.post(f"/api/reviews/{review_id}/accept", headers=TOKEN)
    assert again.status_code == 409 and "already accepted" in again.json()["detail"]
    assert len(harness.cw.writes_to("PATCH", rf"/service/tickets/{ticket}$")) == 1
    assert client.get("/api/reviews", headers=TOKEN).json() == {"reviews": []}
    closed = client.get("/api/reviews", params={"state": "accepted"}, headers=TOKEN).json()
    assert [r["id"] for r in closed["reviews"]] == [review_id]
    audit = [(r.actor, r.action) for r in Audit(runtime.sessions).recent()]
    assert ("api:jane", "review_accepted") in audit


def test_correct_and_dismiss(harness: Harness, runtime: Runtime, client: TestClient) -> None:
    ticket, review_id = _review(harness, runtime, client)
    bad = client.post(
        f"/api/reviews/{review_id}/correct", json={"category_key": "9/9/9"}, headers=TOKEN
    )
    assert bad.status_code == 400 and "'9/9/9' is not a category" in bad.json()["detail"]
    missing = client.post(f"/api/reviews/{review_id}/correct", json={}, headers=TOKEN)
    assert missing.status_code == 422
    adapter = runtime.adapter(TENANT)
    review = runtime.reviews.get(review_id)
    assert review is not None
    other = next(
        leaf
        for leaf in adapter.get_taxonomy(adapter.get_ticket(str(ticket))).active()
        if leaf.key != review.category_key
    )
    corrected = client.post(
        f"/api/reviews/{review_id}/correct", json={"category_key": other.key}, headers=TOKEN
    )
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["state"] == "corrected" and corrected.json()["final_key"] == other.key
    assert len(harness.cw.writes_to("PATCH", rf"/service/tickets/{ticket}$")) == 1

    _, second = _review(harness, runtime, client)
    dismissed = client.post(f"/api/reviews/{second}/dismiss", headers=TOKEN)
    assert dismissed.status_code == 200 and dismissed.json()["closed_by"] == "api"


def test_unknown_reviews_and_the_token(client: TestClient) -> None:
    assert client.post("/api/reviews/424242/accept", headers=TOKEN).status_code == 404
    assert client.post("/api/reviews/1/accept").status_code == 401
    assert client.post("/api/reviews/1/accept", content=b"\x80").status_code == 401
    assert client.get("/api/reviews").status_code == 401
    bad_body = client.post("/api/reviews/1/accept", content=b"{", headers=TOKEN)
    assert bad_body.status_code == 422
