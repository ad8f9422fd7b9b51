"""The review queue on every PSA, through its HTTP fake: accept and correct each write exactly
once, a review whose ticket a person categorized closes itself as filled, and bad input is
refused with nothing written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from psatriage import reviews
from psatriage.domain import Chosen
from psatriage.reviews import Action
from psatriage.store.examples import list_examples
from psatriage.store.users import Audit
from tests.loop_kit import PSAS, Loop, open_loop


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    yield from open_loop(tmp_path_factory.mktemp("reviews"))


def _examples(loop: Loop, psa: str, ticket: str) -> list[tuple[str, str, int | None]]:
    found = list_examples(loop.runtime.sessions, tenant=psa)
    return [(e.source, e.category_key, e.decision_id) for e in found if e.ticket_id == ticket]


def _audited(loop: Loop, review_id: int) -> list[tuple[str, str]]:
    rows = Audit(loop.runtime.sessions).recent(1000)
    return [(row.actor, row.action) for row in rows if row.target == f"review {review_id}"]


@pytest.mark.parametrize("psa", PSAS)
def test_accept_writes_the_suggestion_exactly_once(loop: Loop, psa: str) -> None:
    kit = loop.kits[psa]
    ticket, review = loop.suggest(psa)
    assert kit.category_writes(ticket) == []
    assert _examples(loop, psa, ticket) == []
    desk = loop.runtime.review_desk()
    closed = reviews.act(desk, review.id, Action.ACCEPT, by="cli:jane")
    assert (closed.state, closed.closed_by, closed.final_key) == (
        "accepted",
        "cli:jane",
        review.category_key,
    )
    assert len(kit.category_writes(ticket)) == 1
    with pytest.raises(reviews.ReviewClosed, match=f"review {review.id} is already accepted"):
        reviews.act(desk, review.id, Action.ACCEPT, by="cli:bob")
    assert len(kit.category_writes(ticket)) == 1
    suggested = Chosen.from_dict(review.category)
    assert suggested.is_on(loop.runtime.adapter(psa).get_ticket(ticket))
    assert _audited(loop, review.id) == [("cli:jane", "review_accepted")]
    decision = loop.runtime.decisions.get(review.decision_id)
    assert decision is not None and decision.wrote_category
    key = Chosen.from_dict(review.category).category.key
    assert _examples(loop, psa, ticket) == [("review_accept", key, review.decision_id)]
    outcome = loop.runtime.outcomes.for_decision(review.decision_id)
    assert outcome is not None and outcome.wrote and outcome.state == "pending"
    assert outcome.decision_outcome == "suggested" and outcome.band == "suggest"
    (example,) = list_examples(loop.runtime.sessions, tenant=psa)[-1:]
    assert example.text.startswith("Printer on floor 3\n") and "paper jam" in example.text


@pytest.mark.parametrize("psa", PSAS)
def test_correct_writes_the_other_category_exactly_once(loop: Loop, psa: str) -> None:
    kit = loop.kits[psa]
    ticket, review = loop.suggest(psa)
    other = loop.other_leaf(psa, ticket, review.category_key.split("+")[0])
    desk = loop.runtime.review_desk()
    closed = reviews.act(desk, review.id, Action.CORRECT, by="api:jane", category_key=other.key)
    assert closed.state == "corrected" and closed.final_label == other.label
    assert len(kit.category_writes(ticket)) == 1
    current = loop.runtime.adapter(psa).get_ticket(ticket)
    assert [(v.level, v.id) for v in other.path] == [
        (v.level, v.id) for v in current.current if v.level in {p.level for p in other.path}
    ]
    with pytest.raises(reviews.ReviewClosed):
        reviews.act(desk, review.id, Action.CORRECT, by="api:jane", category_key=other.key)
    assert len(kit.category_writes(ticket)) == 1
    assert _examples(loop, psa, ticket) == [("review_correct", other.key, review.decision_id)]
    outcome = loop.runtime.outcomes.for_decision(review.decision_id)
    assert outcome is not None
    assert (outcome.state, outcome.final_key, outcome.matches, outcome.settled) == (
        "corrected",
        other.key,
        False,
        True,
    )
    assert (outcome.changed_by, outcome.changed_by_kind) == ("api:jane", "person")


@pytest.mark.parametrize("psa", PSAS)
def test_a_review_whose_ticket_a_person_categorized_closes_itself(loop: Loop, psa: str) -> None:
    kit = loop.kits[psa]
    ticket, review = loop.suggest(psa)
    adapter = loop.runtime.adapter(psa)
    person = loop.other_leaf(psa, ticket, review.category_key.split("+")[0])
    adapter.set_category(adapter.get_ticket(ticket), person)  # a technician, in the PSA
    with pytest.raises(reviews.ReviewClosed, match="closed as filled"):
        reviews.act(loop.runtime.review_desk(), review.id, Action.ACCEPT, by="cli:jane")
    assert len(kit.category_writes(ticket)) == 1  # the person's only
    closed = loop.runtime.reviews.get(review.id)
    assert closed is not None
    assert (closed.state, closed.closed_by, closed.final_label) == ("filled", "psa", person.label)
    assert _examples(loop, psa, ticket) == [("fill", person.key, review.decision_id)]


@pytest.mark.parametrize("psa", PSAS)
def test_bad_input_writes_nothing(loop: Loop, psa: str) -> None:
    kit = loop.kits[psa]
    ticket, review = loop.suggest(psa)
    desk = loop.runtime.review_desk()
    with pytest.raises(reviews.UnknownCategory, match="'no/such/key' is not a category tenant"):
        reviews.act(desk, review.id, Action.CORRECT, by="cli:jane", category_key="no/such/key")
    with pytest.raises(reviews.UnknownCategory, match="needs the category key"):
        reviews.act(desk, review.id, Action.CORRECT, by="cli:jane")
    with pytest.raises(reviews.UnknownReview, match="no review with the id 999999"):
        reviews.act(desk, 999999, Action.ACCEPT, by="cli:jane")
    still = loop.runtime.reviews.get(review.id)
    assert still is not None and still.state == "pending"
    closed = reviews.act(desk, review.id, Action.DISMISS, by="cli:jane")
    assert closed.state == "dismissed"
    with pytest.raises(reviews.ReviewClosed, match="already dismissed"):
        reviews.act(desk, review.id, Action.ACCEPT, by="cli:jane")
    assert kit.category_writes(ticket) == []
    assert _examples(loop, psa, ticket) == []


def test_the_queue_lists_pending_reviews_with_what_a_person_needs(loop: Loop) -> None:
    ticket, review = loop.suggest("connectwise", title="Mail for bob@example.com bounces")
    listed = loop.runtime.reviews.search(tenant="connectwise")
    assert listed[0].id == review.id and all(r.state == "pending" for r in listed)
    assert review.title == "Mail for [EMAIL] bounces"
    assert review.excerpt == "My printer has a paper jam"
    assert review.category_label and 0.2 <= review.confidence < 0.95
    by_ticket = loop.runtime.reviews.search(tenant="connectwise", ticket_id=ticket)
    assert [r.id for r in by_ticket] == [review.id]
    assert loop.runtime.reviews.search(tenant="connectwise", company="no such company") == []
    by_company = loop.runtime.reviews.search(tenant="connectwise", company=review.company_name)
    assert review.id in [r.id for r in by_company]
