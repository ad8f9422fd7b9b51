"""The scheduled retrain on real SQLite and PostgreSQL with the real local engine: a candidate
is promoted only when it beats the model in use on the same held-out tickets, a worse one is
refused and kept with both scores, and one process runs a tenant's retrain per period."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from psatriage.learning import retrain as retrain_module
from psatriage.learning.dataset import Labeled, from_examples, training_set
from psatriage.learning.retrain import (
    RetrainMarks,
    fit,
    kick_retrains,
    retrain,
    scheduled_retrain,
    significantly_better,
)
from psatriage.learning.versions import ModelVersions
from psatriage.local_engine.embed import Embedder, shared_embedder
from psatriage.store import db
from psatriage.store.examples import add_example, list_examples
from psatriage.store.tables import RetrainMarkRow, utcnow
from tests.harness import TENANT, Harness

TEXTS = {
    "10/20": [
        "Printer jammed on the second floor",
        "Paper stuck in the office printer",
        "Printer keeps jamming with A4 paper",
        "Paper jam in tray 2 of the copier",
        "The printer says paper jam again",
        "Cannot print, the paper is jammed",
        "Jammed paper in the HP printer",
        "Printer feeding two sheets and jamming",
        "Label printer paper jam",
        "Reception printer paper jam",
        "Toner cartridge empty in the printer",
        "Printer prints blank pages",
    ],
    "11/22": [
        "Set up Outlook email on new laptop",
        "Email account setup for new starter",
        "Configure shared mailbox in Outlook",
        "Add email signature and mailbox setup",
        "New user needs an email mailbox",
        "Set up email on my phone",
        "Outlook profile setup for the mailbox",
        "Mailbox setup for the sales team",
        "Email client setup after reinstall",
        "Create a distribution list email",
        "Outlook keeps asking for the mailbox password",
        "Emails stuck in the Outlook outbox",
    ],
    "12/24": [
        "VPN keeps disconnecting from home",
        "Cannot connect to the VPN",
        "VPN client fails to authenticate",
        "Remote access VPN is very slow",
        "VPN tunnel drops every hour",
        "Need VPN access to work from home",
        "VPN error 809 when connecting",
        "Forticlient VPN will not connect",
        "VPN connected but no network shares",
        "Reset my VPN token",
        "VPN asks for the token every minute",
        "Home office VPN cannot reach the server",
    ],
}
LABELS = {"10/20": "Hardware › Printer", "11/22": "Software › Email", "12/24": "Network › VPN"}
SWAPPED = {"10/20": "11/22", "11/22": "12/24", "12/24": "10/20"}  # every label wrong


def _items(prefix: str, *, wrong: bool = False, first: int = 0, last: int = 12) -> list[Labeled]:
    return [
        Labeled(
            ticket_id=f"{prefix}-{key}-{n}",
            text=f"{text}\n{text}. Please help.",
            key=SWAPPED[key] if wrong else key,
            label=LABELS[SWAPPED[key] if wrong else key],
        )
        for n in range(first, last)  # oldest first, the categories interleaved
        for key, texts in TEXTS.items()
        for text in [texts[n]]
    ]


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


def _activate(versions: ModelVersions, items: list[Labeled], embedder: Embedder) -> None:
    model = fit(items, embedder, source="test", min_examples=2)
    versions.add(TENANT, model, state="active", trigger="train")


def test_a_retrain_that_would_be_worse_is_refused_with_both_scores(
    sessions: sessionmaker[Session], embedder: Embedder
) -> None:
    versions = ModelVersions(sessions)
    _activate(versions, _items("good", last=8), embedder)
    # what the candidate learns (older history and the examples) is mostly wrong; the newest
    # closed tickets (held out: a third) are right
    history = [*_items("old", wrong=True, last=8), *_items("history", first=8)]
    examples = [*_items("old-example", wrong=True, last=2), *_items("example", first=11)]
    result = retrain(
        versions,
        TENANT,
        history,
        examples,
        embedder,
        held_out=1 / 3,
        min_held_out=5,
        min_examples=2,
    )
    assert not result.promoted
    assert result.comparison is not None and result.comparison.held_out == 12
    assert result.comparison.current == "v0001"
    current, candidate = result.comparison.current_accuracy, result.comparison.candidate_accuracy
    assert current is not None and candidate is not None and candidate < current
    assert result.reason.startswith("not better: candidate")
    listed = versions.list(TENANT)
    assert [(v.name, v.state, v.trigger) for v in listed] == [
        ("v0002", "refused", "schedule"),
        ("v0001", "active", "train"),
    ]
    assert listed[0].evaluation == result.comparison.to_dict()
    assert listed[0].report["held_out"] == 12 and listed[0].report["history_tickets"] == 24
    assert listed[0].report["example_tickets"] == 9  # the examples are learned, not held out
    assert versions.active_number(TENANT) == 1


def test_a_retrain_that_is_better_is_promoted(
    sessions: sessionmaker[Session], embedder: Embedder
) -> None:
    versions = ModelVersions(sessions)
    _activate(versions, _items("bad", wrong=True, last=8), embedder)
    retrain_now = partial(
        retrain,
        versions,
        TENANT,
        _items("history"),
        _items("example", first=8),
        embedder,
        held_out=1 / 3,
        min_held_out=5,
        min_examples=2,
    )
    result = retrain_now()
    assert result.promoted, result.reason
    assert result.reason.startswith("better: candidate")
    assert [(v.name, v.state) for v in versions.list(TENANT)] == [
        ("v0002", "active"),
        ("v0001", "retired"),
    ]
    same = retrain_now()  # a tie is not better: the same data again is refused
    assert not same.promoted and versions.active_number(TENANT) == 2
    assert same.line().startswith("refused v0003: not better: candidate")


def test_the_held_out_tickets_are_ones_the_model_in_use_has_not_learned(
    sessions: sessionmaker[Session], embedder: Embedder
) -> None:
    versions = ModelVersions(sessions)
    history = _items("history")  # 36 tickets, oldest first
    learned = history[:24]
    model = fit(learned, embedder, source="test", min_examples=2)
    versions.add(
        TENANT, model, state="active", trigger="train", trained_on=[i.ticket_id for i in learned]
    )
    assert versions.list(TENANT)[0].trained_on == {i.ticket_id for i in learned}
    assert "trained_on" not in versions.list(TENANT)[0].report
    result = retrain(
        versions, TENANT, history[:30], [], embedder,
        held_out=0.5, min_held_out=5, min_examples=2,
    )  # fmt: skip
    # the newest half is tickets 15-29; the model in use learned up to 23
    assert result.comparison is not None and result.comparison.held_out == 6
    assert result.version is not None
    assert result.version.trained_on == {i.ticket_id for i in history[:24]}


def test_with_too_few_recent_closed_tickets_only_a_first_model_is_promoted(
    sessions: sessionmaker[Session], embedder: Embedder
) -> None:
    versions = ModelVersions(sessions)
    first = retrain(
        versions, TENANT, _items("history"), [], embedder,
        held_out=0.2, min_held_out=20, min_examples=2,
    )  # fmt: skip
    assert first.promoted and first.reason == "the tenant had no model"
    second = retrain(
        versions, TENANT, _items("history"), _items("example", first=11), embedder,
        held_out=0.1, min_held_out=20, min_examples=2,
    )  # fmt: skip
    assert not second.promoted
    assert second.reason == (
        "3 recent closed tickets to compare on, fewer than 20: kept as a candidate for a person "
        "to promote"
    )
    assert [(v.name, v.state) for v in versions.list(TENANT)] == [
        ("v0002", "candidate"),
        ("v0001", "active"),
    ]
    nothing = retrain(
        versions, "other", [], [], embedder, held_out=0.2, min_held_out=20, min_examples=2
    )
    assert not nothing.promoted and nothing.reason.startswith("nothing to train")


def test_examples_win_over_history_for_the_same_ticket() -> None:
    history = [Labeled("1", "printer", "10/20"), Labeled("2", "vpn", "12/24")]
    examples = [Labeled("1", "printer", "11/22", source="correction")]
    data = training_set(history, examples)
    assert {(i.ticket_id, i.key) for i in data.items} == {("1", "11/22"), ("2", "12/24")}
    assert data.describe() == {
        "history_tickets": 1,
        "example_tickets": 1,
        "history_overridden": 1,
    }


def test_one_process_claims_a_tenants_retrain_per_period(sessions: sessionmaker[Session]) -> None:
    marks = RetrainMarks(sessions)
    now = utcnow()
    assert not marks.claim("acme", 3600, now)  # first seen: due one period from now
    assert not marks.claim("acme", 3600, now + timedelta(minutes=30))
    assert marks.claim("acme", 3600, now + timedelta(hours=2))
    assert not marks.claim("acme", 3600, now + timedelta(hours=2))  # another process: no
    marks.finish("acme", "postponed", retry_at=now)
    assert marks.claim("acme", 3600, now + timedelta(minutes=1))
    mark = marks.get("acme")
    assert mark is not None and mark.result == "postponed"


def test_the_housekeeping_retrain_runs_due_local_tenants_once(harness: Harness) -> None:
    harness.tenant["classifier"] = {"kind": "local"}
    runtime = harness.runtime(
        learning={"retrain_every": "1d", "history_days": 0, "min_held_out": 5}
    )
    try:
        for item in _items("example"):
            add_example(
                runtime.sessions,
                tenant=TENANT,
                company=None,
                ticket_id=item.ticket_id,
                text=item.text,
                category_key=item.key,
                category_path=item.label,
                source="correction",
                decision_id=None,
            )
        assert len(from_examples(list_examples(runtime.sessions, tenant=TENANT))) == 36
        assert scheduled_retrain(runtime) == 0  # first seen: due in a day
        with runtime.sessions.begin() as session:
            session.execute(
                update(RetrainMarkRow).values(next_run_at=utcnow() - timedelta(minutes=1))
            )
        assert scheduled_retrain(runtime) == 1
        assert scheduled_retrain(runtime) == 0  # done for this period
        mark = RetrainMarks(runtime.sessions).get(TENANT)
        assert mark is not None, mark
        assert mark.result == "promoted v0001: the tenant had no model", mark.result
        versions = ModelVersions(runtime.sessions).list(TENANT)
        assert [(v.name, v.state, v.trigger) for v in versions] == [("v0001", "active", "schedule")]
        assert runtime.classifier(TENANT).ranker().name == "trained:v0001"  # type: ignore[attr-defined]
    finally:
        runtime.close()


def test_llm_tenants_and_retrain_off_are_never_retrained(harness: Harness) -> None:
    llm = harness.tenant["classifier"]
    for classifier, every in ((llm, "1h"), ({"kind": "local"}, "off")):
        harness.tenant["classifier"] = classifier
        runtime = harness.runtime(learning={"retrain_every": every})
        try:
            assert scheduled_retrain(runtime) == 0
            assert RetrainMarks(runtime.sessions).get(TENANT) is None
        finally:
            runtime.close()


@pytest.mark.parametrize(
    ("gained", "lost", "better"),
    [(0, 0, False), (1, 0, False), (2, 0, True), (3, 1, False), (12, 3, True), (10, 7, False)],
)
def test_better_means_more_right_than_chance_explains(gained: int, lost: int, better: bool) -> None:
    """Tickets only the candidate gets right against tickets only the model in use gets right;
    ten tickets both get right change nothing."""
    candidate = [True] * gained + [False] * lost + [True] * 10
    current = [False] * gained + [True] * lost + [True] * 10
    assert significantly_better(candidate, current) is better


def test_housekeeping_starts_the_retrains_in_a_thread_of_their_own(harness: Harness) -> None:
    runtime = harness.runtime()  # the harness tenant asks an LLM: nothing to retrain
    try:
        assert not kick_retrains(runtime)
    finally:
        runtime.close()
    harness.tenant["classifier"] = {"kind": "local"}
    runtime = harness.runtime()
    try:
        assert kick_retrains(runtime)
        thread = retrain_module._running
        assert thread is not None and thread.name == "psatriage-retrain"
        thread.join(timeout=300)
        mark = RetrainMarks(runtime.sessions).get(TENANT)
        assert mark is not None and mark.last_run_at is None  # first seen: due in a period
    finally:
        runtime.close()


def test_the_scheduled_retrain_trains_the_field_models_on_the_same_history(
    harness: Harness,
) -> None:
    harness.tenant["classifier"] = {"kind": "local"}
    harness.tenant["fields"] = {"enabled": ["priority"]}
    runtime = harness.runtime(learning={"retrain_every": "1d", "min_held_out": 5})
    history = [
        replace(item, fields={"priority": "1" if item.key == "10/20" else "3"})
        for item in _items("history")
    ]
    try:
        scheduled_retrain(runtime, lambda tenant, since, limit: history)
        with runtime.sessions.begin() as session:
            session.execute(
                update(RetrainMarkRow).values(next_run_at=utcnow() - timedelta(minutes=1))
            )
        assert scheduled_retrain(runtime, lambda tenant, since, limit: history) == 1
        models = runtime.field_models.models(TENANT)
        assert set(models) == {"priority"} and set(models["priority"].classes) == {"1", "3"}
    finally:
        runtime.close()
