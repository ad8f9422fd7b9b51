"""The review queue, the Categories page and accuracy on the overview, against the real app:
a tenant whose bands put the fake model's 0.6 between ``suggest_at`` and ``apply_at``, so each
ticket decided becomes a suggestion waiting for a person."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from psatriage import jobs
from psatriage.config import load_config
from psatriage.domain import Category, TicketEvent
from psatriage.runtime import Runtime
from psatriage.store.examples import list_examples
from psatriage.store.tables import EventState, OutcomeRow, ReviewRow, utcnow
from psatriage.store.users import Audit
from tests.harness import TENANT, Harness
from tests.web.console.conftest import csrf_of, page, sign_in, write_tenants

BANDS = {"apply_at": 0.95, "suggest_at": 0.2}


@pytest.fixture
def runtime(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The console's two tenants, ``acme`` with bands that send 0.6 to review."""
    harness.llm.category_probability = 0.6
    harness.tenant["policy"] = {**harness.tenant.get("policy", {}), **BANDS}
    for key, value in harness.env.items():
        monkeypatch.setenv(key, value)
    built = Runtime(harness.settings(), load_config(write_tenants(harness)))
    yield built
    built.close()


def suggest(harness: Harness, runtime: Runtime, title: str = "Printer") -> tuple[int, ReviewRow]:
    """A ticket at the ConnectWise fake, decided by the worker's job into a pending review."""
    ticket = harness.cw.add_ticket(title, "My printer has a paper jam")
    event_id, _ = runtime.ledger.record(
        TicketEvent(TENANT, str(ticket), "added", True, f"r{ticket}"), state=EventState.RECEIVED
    )
    assert jobs.process_event(runtime, event_id) is EventState.DONE
    (review,) = runtime.reviews.search(tenant=TENANT, ticket_id=str(ticket))
    return ticket, review


def another_leaf(runtime: Runtime, ticket: int, review: ReviewRow) -> Category:
    adapter = runtime.adapter(TENANT)
    taxonomy = adapter.get_taxonomy(adapter.get_ticket(str(ticket)))
    return next(c for c in taxonomy.active() if c.key != review.category_key)


@pytest.fixture
def reviewer(client: TestClient, people: object) -> TestClient:
    assert sign_in(client, "rob").status_code == 303
    return client


def _post(client: TestClient, path: str, **form: str) -> tuple[int, str, str]:
    token = csrf_of(client.get("/reviews").text)
    answer = client.post(path, data={"csrf_token": token, **form})
    return answer.status_code, answer.headers.get("location", ""), answer.text


def test_the_queue_shows_what_a_person_needs_to_judge(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    ticket, review = suggest(harness, runtime)
    shown = page(reviewer, "/reviews")
    assert shown.status == 200
    assert "1 pending" in shown.text and "Printer" in shown.text
    assert "My printer has a paper jam" in shown.text
    assert review.category_label in shown.text and "60%" in shown.text
    assert f"ticket {ticket}" in shown.text and "Keys:" in shown.text
    assert harness.cw.patches(ticket) == []  # a suggestion writes nothing
    detail = page(reviewer, f"/reviews/{review.id}")
    assert detail.status == 200 and "categories this ticket may have" in detail.text


def test_accept_writes_once_and_a_second_accept_is_refused(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    ticket, review = suggest(harness, runtime)
    status, where, _ = _post(reviewer, f"/reviews/{review.id}/accept")
    assert status == 303 and where == f"/reviews?closed={review.id}"
    after = page(reviewer, "/reviews", closed=str(review.id))
    assert (
        f"Review {review.id} accepted: {review.category_label} written to ticket" in after.text
    ), after.text[200:700]
    assert "Nothing waits for review." in after.text
    assert len(harness.cw.patches(ticket)) == 1
    status, _, text = _post(reviewer, f"/reviews/{review.id}/accept")
    assert status == 409 and "is already accepted" in text
    assert len(harness.cw.patches(ticket)) == 1
    assert [(r.actor, r.action) for r in runtime_audit(runtime)][:1] == [("rob", "review_accepted")]


def runtime_audit(runtime: Runtime) -> list[Any]:
    return list(Audit(runtime.sessions).recent())


def test_correct_writes_the_chosen_category_and_records_a_correction(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    ticket, review = suggest(harness, runtime)
    other = another_leaf(runtime, ticket, review)
    assert other.label in reviewer.get(f"/reviews/{review.id}").text  # offered in the list
    status, where, _ = _post(reviewer, f"/reviews/{review.id}/correct", category=other.label)
    assert status == 303, where
    closed = runtime.reviews.get(review.id)
    assert closed is not None and closed.state == "corrected" and closed.final_key == other.key
    (patch,) = harness.cw.patches(ticket)
    written = [str(op["value"]["id"]) for op in patch if isinstance(op["value"], dict)]
    assert written == [level.id for level in other.path]
    (example,) = list_examples(runtime.sessions, tenant=TENANT)
    assert example.category_key == other.key and example.source == "review_correct"


def test_a_category_outside_the_ticket_s_tree_is_refused(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    ticket, review = suggest(harness, runtime)
    status, _, text = _post(reviewer, f"/reviews/{review.id}/correct", category="Made > Up")
    assert status == 400 and "is not one of the categories this ticket may have" in text
    status, _, text = _post(reviewer, f"/reviews/{review.id}/correct", category="")
    assert status == 400 and "Choose the category to write instead." in text
    assert harness.cw.patches(ticket) == []
    still = runtime.reviews.get(review.id)
    assert still is not None and still.state == "pending"


def test_dismiss_writes_nothing(harness: Harness, runtime: Runtime, reviewer: TestClient) -> None:
    ticket, review = suggest(harness, runtime)
    status, _, _ = _post(reviewer, f"/reviews/{review.id}/dismiss")
    assert status == 303
    assert harness.cw.patches(ticket) == []
    closed = runtime.reviews.get(review.id)
    assert closed is not None and closed.state == "dismissed" and closed.closed_by == "rob"


def test_a_viewer_sees_the_queue_but_cannot_act(
    harness: Harness, runtime: Runtime, client: TestClient, people: object
) -> None:
    ticket, review = suggest(harness, runtime)
    assert sign_in(client, "val").status_code == 303
    assert "Only reviewers and admins may act on reviews." in page(client, "/reviews").text
    status, _, text = _post(client, f"/reviews/{review.id}/accept")
    assert status == 403 and "Only reviewers and above may act on reviews" in text
    assert harness.cw.patches(ticket) == []


def test_a_form_without_its_csrf_token_is_refused(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    ticket, review = suggest(harness, runtime)
    answer = reviewer.post(f"/reviews/{review.id}/accept", data={})
    assert answer.status_code == 403
    assert harness.cw.patches(ticket) == []


@pytest.mark.parametrize("wanted", ["999999", "abc", "0"])
def test_a_review_that_does_not_exist_is_a_404_page(reviewer: TestClient, wanted: str) -> None:
    shown = page(reviewer, f"/reviews/{wanted}")
    assert shown.status == 404 and f"There is no review {wanted}." in shown.text


def _outcome(session: Session, decision_id: int, chosen: str, final: str, days: int) -> None:
    """The outcome of a decision as the sweep would leave it (made here if none exists yet)."""
    row = session.execute(
        select(OutcomeRow).where(OutcomeRow.decision_id == decision_id)
    ).scalar_one_or_none()
    if row is None:
        row = OutcomeRow(decision_id=decision_id, tenant=TENANT, ticket_id=str(decision_id))
        session.add(row)
    matches = chosen == final
    row.decision_outcome = "suggested"
    row.chosen_label, row.final_label, row.matches = chosen, final, matches
    row.state = "agreed" if matches else "corrected"
    row.band, row.settled = "suggest", True
    row.decided_at = utcnow() - timedelta(days=days)


def test_categories_and_overview_show_accuracy_from_outcomes(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    decided = [suggest(harness, runtime, f"Printer {n}")[1] for n in range(4)]
    label = decided[0].category_label
    with runtime.sessions.begin() as session:
        finals = [label, label, label, "Network > VPN"]
        for n, (review, final) in enumerate(zip(decided, finals, strict=True)):
            _outcome(session, review.decision_id, label, final, n)
    shown = page(reviewer, "/categories")
    assert shown.status == 200
    assert label in shown.text and "75%" in shown.text and "Network > VPN (1)" in shown.text
    overview = page(reviewer, "/")
    assert "75% of 4 known" in overview.text and "agreed 3 · corrected 1" in overview.text
    agreed = page(reviewer, "/decisions", verdict="agreed", band="suggest")
    assert agreed.status == 200 and "3 matching" in agreed.text
    corrected = page(reviewer, "/decisions", verdict="corrected")
    assert "1 matching" in corrected.text


def test_a_correction_reads_the_ticket_once(
    harness: Harness, runtime: Runtime, reviewer: TestClient
) -> None:
    ticket, review = suggest(harness, runtime)
    other = another_leaf(runtime, ticket, review)
    before = len(harness.cw.requests_to(rf"/service/tickets/{ticket}$", "GET"))
    status, _, _ = _post(reviewer, f"/reviews/{review.id}/correct", category=other.label.upper())
    assert status == 303
    assert len(harness.cw.requests_to(rf"/service/tickets/{ticket}$", "GET")) == before + 1
    assert len(harness.cw.patches(ticket)) == 1
