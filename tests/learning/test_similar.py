"""Labeled examples in an LLM's prompt: the most similar of the ticket's own company first,
only categories the model may answer with, redacted, and never for the local engine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from psatriage import jobs
from psatriage.config import LearningSettings
from psatriage.domain import TicketEvent
from psatriage.learning.similar import SimilarExamples
from psatriage.prompts import PromptExample
from psatriage.redact import Redactor
from psatriage.store.examples import add_example
from psatriage.store.tables import EventState
from tests.fakes.inprocess import answer
from tests.harness import Harness
from tests.pipeline_kit import TENANT, PipelineKit, make_database

EXAMPLES = [
    # (ticket, company, text, category)
    ("1", "7", "Printer jams\nThe printer on floor 2 jams with paper", "10/20/30"),
    ("2", "7", "Outlook crashes\nOutlook closes when I open my mail", "11/22/32"),
    (
        "3",
        "8",
        "Paper jam again\nPaper jam in the printer tray, mail me at a@b.example",
        "10/20/30",
    ),
    ("4", "8", "Printer toner\nThe printer needs a new toner cartridge", "10/20/31"),
    ("5", None, "Printer jam\nPrinter paper stuck", "99"),  # a category no longer offered
]


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[PipelineKit]:
    engine = make_database(tmp_path / "fast.db")
    built = PipelineKit(engine)
    for ticket, company, text, key in EXAMPLES:
        add_example(
            built.sessions,
            tenant=TENANT,
            company=company,
            ticket_id=ticket,
            text=text,
            category_key=key,
            category_path="",
            source="correction",
            decision_id=None,
        )
    yield built
    engine.dispose()


def test_the_most_similar_examples_of_the_same_company_come_first(kit: PipelineKit) -> None:
    similar = SimilarExamples(kit.sessions)
    offered = {"10/20/30", "10/20/31", "11/22/32"}

    def keys(company: str | None, k: int) -> list[str]:
        found = similar.for_ticket(
            TENANT,
            text="Printer paper jam\nThe printer jams",
            company=company,
            candidates=offered,
            k=k,
            chars=400,
            redactor=Redactor(),
        )
        return [e.text.split("\n")[0] for e in found]

    assert keys("8", 2) == ["Paper jam again", "Printer toner"]  # company 8's own, though
    assert keys("8", 3)[:2] == ["Paper jam again", "Printer toner"]  # "Printer jams" is closer
    assert keys("8", 3)[2] == "Printer jams"
    assert "Printer jam" not in keys(None, 5)  # category 99 is not offered
    assert len(keys(None, 5)) == 4
    assert keys("7", 0) == []
    shown = similar.for_ticket(
        TENANT, text="paper jam", company="8", candidates=offered, k=1, chars=40,
        redactor=Redactor(),
    )  # fmt: skip
    assert shown[0].text == "Paper jam again\nPaper jam in the printer [...]"
    masked = similar.for_ticket(
        TENANT, text="paper jam", company="8", candidates=offered, k=1, chars=400,
        redactor=Redactor(),
    )  # fmt: skip
    assert "a@b.example" not in masked[0].text and "[EMAIL]" in masked[0].text


def test_the_pipeline_gives_an_llm_classifier_the_examples(kit: PipelineKit) -> None:
    ticket = kit.psa.add_ticket("Printer jam", "The printer jams again", company_id="8")
    kit.classifier.then(answer("10/20/30"))
    kit.run(kit.event(ticket))
    examples = kit.classifier.requests[0].examples
    assert [e.category_key for e in examples] == ["10/20/30", "10/20/31", "10/20/30"]
    assert all(isinstance(e, PromptExample) for e in examples)

    kit.tenant = replace(kit.tenant, learning=LearningSettings(examples=0))
    other = kit.psa.add_ticket("Printer jam", "The printer jams", company_id="8")
    kit.classifier.then(answer("10/20/30"))
    kit.run(kit.event(other))
    assert kit.classifier.requests[1].examples == ()  # examples = 0: off


def test_an_openai_tenant_sends_the_examples_in_its_prompt(harness: Harness) -> None:
    """Through the real runtime, the OpenAI SDK and the fakes: the chat request carries the
    example, delimited, before the ticket."""
    runtime = harness.runtime()
    try:
        add_example(
            runtime.sessions,
            tenant=TENANT,
            company="250",
            ticket_id="900",
            text="Paper jammed\nThe printer in reception jammed on A4",
            category_key="10/20/30",
            category_path="Hardware › Printer › Paper jam",
            source="review_correct",
            decision_id=None,
        )
        ticket = harness.cw.add_ticket("Printer paper jam", "The printer jams", type_id=None)
        event_id, _ = runtime.ledger.record(
            TicketEvent(TENANT, str(ticket), "added", True, "k1"), state=EventState.RECEIVED
        )
        assert jobs.process_event(runtime, event_id) is EventState.DONE
        chat = [r for r in harness.llm.requests if r.path.endswith("/chat/completions")]
        messages = chat[-1].json()["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        system = next(m["content"] for m in messages if m["role"] == "system")
        assert "between <example> tags" in system
        start = user.index("<example category=")
        assert "The printer in reception jammed on A4\n</example>" in user[start:]
        assert start < user.index("<ticket>")
    finally:
        runtime.close()
