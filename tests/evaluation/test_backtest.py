"""The backtest use case on the in-process fakes and real SQLite: a known fixture's exact counts,
the pipeline's own classification (company settings, redaction, hidden answer), nothing written,
checkpoints, an interrupted and resumed run, retries of passing failures, and refused
credentials stopping a run that a later call finishes."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from psatriage.classifiers.base import ClassificationRequest
from psatriage.domain import Classification, LabeledTicket, LevelValue, NewTicket
from psatriage.errors import (
    AuthFailed,
    ConfigError,
    InvalidAnswer,
    PsatriageError,
    TransientError,
)
from psatriage.evaluation import backtest as backtest_module
from psatriage.evaluation.backtest import (
    NoHistory,
    Params,
    backtest,
    measure_volume,
    parse_since,
    run_key,
)
from psatriage.store.activity import Activity
from psatriage.store.backtests import Backtests
from psatriage.store.tables import BacktestResultRow, DecisionRow, ModelCallRow
from tests.fakes.inprocess import (
    BOARDS,
    PRIORITIES,
    TREE,
    MemoryPSA,
    ScriptedClassifier,
    answer,
)
from tests.pipeline_kit import PipelineKit, make_database

NOW = datetime(2026, 12, 1, 12, 0)
PARAMS = Params(since="30d", limit=100)


def _path(key: str) -> tuple[LevelValue, ...]:
    leaf = TREE.get(key)
    assert leaf is not None
    return leaf.path


class HistoryPSA(MemoryPSA):
    """The in-memory PSA with closed, categorized tickets and a count of tickets created."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[LabeledTicket] = []
        self.created = 0

    def close(self, title: str, key: str, *, description: str = "", company: str = "") -> str:
        ticket_id = self.add_ticket(
            title, description or title, current=_path(key), company_name=company or None
        )
        self.history.append(LabeledTicket(self.tickets[ticket_id], _path(key)))
        return ticket_id

    def list_labeled_tickets(self, since: datetime, limit: int) -> list[LabeledTicket]:
        self.calls.append("list_labeled_tickets")
        return list(reversed(self.history))[:limit]

    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        self.calls.append("list_new_tickets")
        return [NewTicket(str(n), since) for n in range(self.created)]


# (title, final category, answer key, confidence); None as the answer: the model fails
FIXTURE: list[tuple[str, str, str | None, float]] = [
    *[(f"Paper jam {n}", "10/20/30", "10/20/30", 0.97) for n in range(8)],
    *[(f"Toner low {n}", "10/20/31", "10/20/31", 0.96) for n in range(3)],
    ("Toner streaks", "10/20/31", "10/20/30", 0.90),  # wrong leaf, right first two levels
    *[(f"Laptop dead {n}", "10/21", "10/21", 0.70) for n in range(2)],
    ("Laptop printing", "10/21", "10/20/31", 0.65),  # right first level only
    *[(f"Outlook setup {n}", "11/22/32", "11/22/32", 0.92) for n in range(2)],
    ("Outlook crash", "11/22/32", None, 0.0),  # the model's answer is not a candidate
    ("Old fax", "13", "12", 0.40),  # ended in an inactive category: never offered
    ("Unsorted one", "14", "14", 0.55),  # left at the PSA's placeholder
    ("Unsorted two", "14", "10/21", 0.45),
]


def _answers(psa: HistoryPSA) -> dict[str, tuple[str | None, float]]:
    return {psa.close(title, final): (key, confidence) for title, final, key, confidence in FIXTURE}


Answer = tuple[str | None, float] | PsatriageError


def _scripted(answers: Mapping[str, Answer], times: int) -> ScriptedClassifier:
    """Answers by ticket (whatever the order tickets are asked in), ``times`` times at most."""

    def respond(request: ClassificationRequest) -> Classification:
        scripted = answers[request.ticket.id]
        if isinstance(scripted, PsatriageError):
            raise scripted
        key, confidence = scripted
        if key is None:
            raise InvalidAnswer("the model chose 'nope', which is not a candidate")
        return answer(key, confidence)

    return ScriptedClassifier(*[respond] * times)


@pytest.fixture
def kit(tmp_path: Path) -> PipelineKit:
    return PipelineKit(make_database(tmp_path / "db.sqlite"), psa=HistoryPSA())


def _history(kit: PipelineKit) -> HistoryPSA:
    assert isinstance(kit.psa, HistoryPSA)
    return kit.psa


def _run(kit: PipelineKit, **options: Any) -> Any:
    return backtest(
        kit.deps,
        Backtests(kit.sessions),
        options.pop("params", PARAMS),
        activity=Activity(kit.sessions),
        now=NOW,
        **options,
    )


def test_the_known_fixture_gives_exact_counts_and_writes_nothing(kit: PipelineKit) -> None:
    psa = _history(kit)
    psa.created = 300
    kit.classifier = _scripted(_answers(psa), len(FIXTURE))

    outcome = _run(kit, concurrency=3)

    report = outcome.report
    assert outcome.stopped is None and outcome.resumed == 0
    assert (report["tickets"], report["answered"], report["failed"]) == (21, 20, 1)
    assert report["failures"] == {"invalid answer": 1}
    assert report["accuracy"] == {"first_level": 0.9, "first_two_levels": 0.85, "full_path": 0.8}
    policy = report["policy"]
    assert (policy["mode"], policy["apply_at"], policy["suggest_at"]) == ("apply", 0.91, 0.91)
    assert (policy["apply_precision"], policy["apply_share"]) == (1.0, 0.65)
    assert policy["review_share"] == 0.0 and policy["record_share"] == pytest.approx(0.35)
    at = {row["threshold"]: (row["coverage"], row["precision"]) for row in report["thresholds"]}
    assert at[0.9] == (0.7, pytest.approx(13 / 14))
    assert at[0.5] == (0.9, pytest.approx(16 / 18))
    cost = report["cost"]
    assert (cost["tokens_in"], cost["tokens_out"]) == (2400, 240)
    assert cost["cost_usd"] == pytest.approx(0.002)
    assert cost["volume"] == {
        "tickets": 300,
        "days": 30.0,
        "source": "tickets created in memory",
    }
    assert cost["tickets_per_month"] == pytest.approx(304.375)
    assert cost["cost_per_month_usd"] == pytest.approx(0.002 / 21 * 304.375)
    hygiene = report["hygiene"]
    assert hygiene["unused"] == ["Security", "Software › VPN"]
    assert (hygiene["categories_offered"], hygiene["categories_used"]) == (7, 6)
    assert hygiene["rare"] == []
    assert hygiene["catch_all_share"] == pytest.approx(2 / 21)
    assert [(u["label"], u["tickets"]) for u in hygiene["catch_all"]] == [("Triage", 2)]
    assert [(u["label"], u["tickets"]) for u in hygiene["not_offered"]] == [("Retired", 1)]
    assert [(p["first"], p["second"], p["tickets"]) for p in hygiene["merge_candidates"]] == [
        ("Hardware › Laptop", "Hardware › Printer › Toner", 1),
        ("Hardware › Printer › Paper jam", "Hardware › Printer › Toner", 1),
        ("Retired", "Security", 1),
    ]
    assert report["run"]["engine"] == "scripted" and report["run"]["psa"] == "memory"

    assert psa.writes == [] and "set_category" not in psa.calls and "add_note" not in psa.calls
    with kit.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DecisionRow)) == 0
        assert session.scalar(select(func.count()).select_from(ModelCallRow)) == 0
        assert session.scalar(select(func.count()).select_from(BacktestResultRow)) == 21
    finished = Backtests(kit.sessions).latest_finished("acme")
    assert finished is not None and finished.report == report


def test_each_ticket_is_classified_as_the_pipeline_would_with_the_answer_hidden(
    kit: PipelineKit,
) -> None:
    psa = _history(kit)
    plain = psa.close("Printer jammed", "10/20/30")
    special = psa.close(
        "Mail setup",
        "11/22/32",
        description="Please mail ann@example.com the settings",
        company="Fabrikam",
    )
    kit.with_tenant(
        companies={"Fabrikam": {"model": "big-model", "instructions": "Fabrikam uses Outlook."}},
        policy={"excluded": ["Security"]},
    )
    kit.classifier = _scripted({plain: ("10/20/30", 0.9), special: ("11/22/32", 0.9)}, 2)

    assert _run(kit).report["accuracy"]["full_path"] == 1.0

    requests = {r.ticket.id: r for r in kit.classifier.requests}
    assert requests[plain].model == "scripted-model" and requests[plain].ticket.current == ()
    assert requests[special].model == "big-model"
    assert "Fabrikam uses Outlook." in requests[special].instructions
    assert "[EMAIL]" in requests[special].ticket.description
    assert requests[special].redactions == {"email": 1}
    assert "12" not in {c.key for c in requests[plain].candidates}  # excluded by policy
    assert "13" not in {c.key for c in requests[plain].candidates}  # inactive


def test_an_interrupted_run_resumes_where_it_stopped(kit: PipelineKit) -> None:
    psa = _history(kit)
    answers = _answers(psa)
    kit.classifier = _scripted(answers, 5)

    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(kit, progress=interrupt)
    assert len(kit.classifier.requests) == 5
    store = Backtests(kit.sessions)
    unfinished = store.latest("acme", run_key(kit.tenant, PARAMS))
    assert unfinished is not None and unfinished.finished_at is None
    assert len(store.results(unfinished.id)) == 5

    kit.classifier = _scripted(answers, len(FIXTURE) - 5)
    seen: list[tuple[int, int]] = []
    outcome = _run(kit, progress=lambda done, total: seen.append((done, total)))

    assert outcome.resumed == 5 and outcome.run_id == unfinished.id
    assert seen[0] == (5, 21) and seen[-1] == (21, 21)
    assert len(kit.classifier.requests) == len(FIXTURE) - 5  # the first five not asked again
    assert outcome.report["accuracy"]["full_path"] == 0.8
    assert psa.calls.count("list_new_tickets") == 1  # the volume is part of the checkpoint


def test_an_interrupt_right_after_a_ticket_is_handed_out_still_keeps_that_ticket(
    kit: PipelineKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C can land between a ticket's submission to the pool and its future's bookkeeping:
    the ticket is still asked, so its answer must still be kept (and not asked again)."""
    psa = _history(kit)
    kit.classifier = _scripted(_answers(psa), len(FIXTURE))

    class InterruptedAfterThird(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: Any, **kwargs: Any) -> Any:
            future = super().submit(*args, **kwargs)
            InterruptedAfterThird.submitted += 1
            if InterruptedAfterThird.submitted == 3:
                raise KeyboardInterrupt
            return future

    monkeypatch.setattr(backtest_module, "ThreadPoolExecutor", InterruptedAfterThird)
    with pytest.raises(KeyboardInterrupt):
        _run(kit, concurrency=1)
    store = Backtests(kit.sessions)
    unfinished = store.latest("acme", run_key(kit.tenant, PARAMS))
    assert unfinished is not None
    assert len(kit.classifier.requests) == 3
    assert len(store.results(unfinished.id)) == 3


def test_passing_failures_are_tried_again_by_the_same_command_and_lasting_ones_kept(
    kit: PipelineKit,
) -> None:
    psa = _history(kit)
    jam = psa.close("Paper jam", "10/20/30")
    bad = psa.close("Odd one", "10/21")
    busy = psa.close("Busy", "11/23")
    first_answers: dict[str, Answer] = {
        jam: ("10/20/30", 0.9),
        bad: (None, 0.0),
        busy: TransientError("the model server answered 503"),
    }
    kit.classifier = _scripted(first_answers, 3)
    first = _run(kit)
    assert first.report["failures"] == {"invalid answer": 1, "server unavailable": 1}

    kit.classifier = _scripted({busy: ("11/23", 0.9)}, 1)
    again = _run(kit)

    assert again.run_id == first.run_id and again.resumed == 2
    assert [r.ticket.id for r in kit.classifier.requests] == [busy]
    assert again.report["failures"] == {"invalid answer": 1}
    finished = Backtests(kit.sessions).latest_finished("acme")
    assert finished is not None and finished.report == again.report

    # finished with lasting failures only: history; the same command measures again
    anew_answers: dict[str, Answer] = {jam: ("10/20/30", 0.9), bad: ("10/21", 0.9)}
    kit.classifier = _scripted(anew_answers | {busy: ("11/23", 0.9)}, 3)
    anew = _run(kit)
    assert anew.run_id != first.run_id and anew.resumed == 0
    assert anew.report["failed"] == 0 and len(kit.classifier.requests) == 3


def test_refused_credentials_stop_the_run_and_a_later_call_finishes_it(
    kit: PipelineKit,
) -> None:
    psa = _history(kit)
    for n in range(4):
        psa.close(f"Paper jam {n}", "10/20/30")
    kit.classifier = ScriptedClassifier(answer("10/20/30"), AuthFailed("the key was refused"))

    stopped = _run(kit)

    assert stopped.report is None
    assert stopped.stopped is not None and "the key was refused" in stopped.stopped
    assert len(kit.classifier.requests) == 2  # the rest were never asked
    kit.classifier = ScriptedClassifier(*[answer("10/20/30")] * 3)
    finished = _run(kit)
    assert finished.run_id == stopped.run_id and finished.resumed == 1
    assert finished.report["answered"] == 4


def test_fresh_starts_over_and_changed_settings_make_a_new_run(kit: PipelineKit) -> None:
    psa = _history(kit)
    toner, jam = psa.close("Toner", "10/20/31"), psa.close("Paper jam", "10/20/30")
    kit.classifier = _scripted({jam: ("10/20/30", 0.9), toner: AuthFailed("refused")}, 2)
    first = _run(kit)
    assert first.stopped is not None and len(first.results) == 2  # the jam answered

    kit.classifier = _scripted({jam: ("10/20/30", 0.9), toner: ("10/20/31", 0.9)}, 2)
    fresh = _run(kit, fresh=True)
    assert fresh.resumed == 0 and len(kit.classifier.requests) == 2  # the jam asked again
    latest = Backtests(kit.sessions).latest("acme", run_key(kit.tenant, PARAMS))
    assert latest is not None and latest.finished_at is not None

    before = run_key(kit.tenant, PARAMS)
    kit.with_tenant(instructions="Prefer hardware.")
    assert run_key(kit.tenant, PARAMS) != before
    assert run_key(kit.tenant, replace(PARAMS, limit=5)) != run_key(kit.tenant, PARAMS)


def test_no_closed_tickets_in_the_period_is_a_clear_error(kit: PipelineKit) -> None:
    with pytest.raises(NoHistory, match="memory has no closed, categorized tickets created since"):
        _run(kit)
    assert Backtests(kit.sessions).latest_finished("acme") is None


def test_the_volume_comes_from_the_ledger_where_the_psa_cannot_count(kit: PipelineKit) -> None:
    kit.psa = MemoryPSA()  # cannot list new tickets
    for ticket in ("1", "2", "2", "3"):
        kit.event(ticket, key=f"created-{ticket}-{len(kit.ledger.search())}")
    since = NOW - timedelta(days=10)
    volume = measure_volume(kit.deps, Activity(kit.sessions), since, 7, NOW)
    assert (volume["tickets"], volume["source"]) == (3, "tickets received (ledger)")
    empty = measure_volume(kit.deps, None, since, 7, NOW)
    assert (empty["tickets"], empty["source"]) == (7, "closed tickets read, a lower bound")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", NOW - timedelta(days=90)),
        ("12w", NOW - timedelta(weeks=12)),
        (" 7D ", NOW - timedelta(days=7)),
        ("2026-09-01", datetime(2026, 9, 1)),
        ("2026-09-01T10:00:00+02:00", datetime(2026, 9, 1, 8)),
    ],
)
def test_since_is_a_period_or_a_date(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("last quarter", "neither a period such as 90d or 12w nor an ISO date"),
        ("2027-01-01", "is in the future"),
        ("0d", "is an empty period"),
    ],
)
def test_a_bad_since_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_since(text, NOW)


def test_each_ticket_field_is_scored_against_the_value_people_left(kit: PipelineKit) -> None:
    """Priority and routing are asked in the same call as the category, as the service asks
    them, and scored against the values the tickets closed with; an answer outside the field's
    values is not decided and counts as wrong; a ticket closed without the field is not scored."""
    kit.with_tenant(fields={"enabled": ["priority", "routing"]})
    psa = _history(kit)
    high, _, low = PRIORITIES.options
    desk, network = BOARDS.options
    cases = [
        ({"priority": high, "routing": desk}, {"priority": "1", "routing": "1"}),
        ({"priority": low, "routing": desk}, {"priority": "1", "routing": "1"}),
        ({"priority": low, "routing": network}, {"priority": "3", "routing": "99"}),
        ({}, {"priority": "1", "routing": "1"}),
    ]
    said: dict[str, Mapping[str, str]] = {}
    for n, (truth, fields) in enumerate(cases):
        ticket_id = psa.close(f"Paper jam {n}", "10/20/30")
        psa.history[-1] = replace(psa.history[-1], fields=truth)
        said[ticket_id] = fields

    def respond(request: ClassificationRequest) -> Classification:
        assert {f.name for f in request.fields} == {"priority", "routing"}
        return answer("10/20/30", 0.95, fields=said[request.ticket.id])

    kit.classifier = ScriptedClassifier(*[respond] * len(cases))

    report = _run(kit).report

    measured = report["fields"]
    assert measured["priority"]["tickets"] == 3 and measured["priority"]["decided"] == 3
    assert measured["priority"]["accuracy"] == pytest.approx(2 / 3)
    assert measured["priority"]["confused"] == [{"truth": "Low", "predicted": "High", "count": 1}]
    assert measured["routing"]["tickets"] == 3 and measured["routing"]["decided"] == 2
    assert measured["routing"]["accuracy"] == pytest.approx(2 / 3)
    assert measured["routing"]["accuracy_decided"] == 1.0
    assert not [w for w in psa.writes if w[0] != "read"]  # nothing written


def test_routing_that_picks_the_tree_is_asked_first_as_the_service_asks_it(
    kit: PipelineKit,
) -> None:
    """Where routing moves the ticket to another tree (a ConnectWise board) the service asks it
    first, in a call whose choices are the boards: the backtest does the same, and both calls
    count in the ticket's tokens."""
    kit.with_tenant(fields={"enabled": ["routing"]})
    psa = _history(kit)
    psa.routing_sets_scope = True  # type: ignore[misc]
    desk, network = BOARDS.options
    for n, board in enumerate((desk, network, network)):
        psa.close(f"Paper jam {n}", "10/20/30")
        psa.history[-1] = replace(psa.history[-1], fields={"routing": board})

    def respond(request: ClassificationRequest) -> Classification:
        keys = {c.key for c in request.candidates}
        if keys == {"1", "2"}:  # the boards
            return answer("2", 0.9)
        assert not request.fields  # routing was asked on its own
        return answer("10/20/30", 0.95)

    kit.classifier = ScriptedClassifier(*[respond] * 6)

    outcome = _run(kit)

    routing = outcome.report["fields"]["routing"]
    assert (routing["tickets"], routing["decided"]) == (3, 3)
    assert routing["accuracy"] == pytest.approx(2 / 3)
    assert len(kit.classifier.requests) == 6  # two calls per ticket
    assert all(r["tokens_in"] == 240 for r in outcome.results)


def test_noise_is_scored_by_the_category_a_noise_action_sets(kit: PipelineKit) -> None:
    """A ticket people left in the category the spam action sets was spam; the others were real
    requests. An auto-reply the title rule recognises counts as the rule's answer, as in the
    service."""
    kit.with_tenant(
        fields={"enabled": ["noise"], "noise": {"spam": {"action": "set", "category": "Security"}}}
    )
    psa = _history(kit)
    said = {
        psa.close("Cheap watches", "12"): "spam",
        psa.close("You won a prize", "12"): "request",
        psa.close("Paper jam", "10/20/30"): "request",
        psa.close("Automatic reply: paper jam", "10/20/30"): "request",
    }

    def respond(request: ClassificationRequest) -> Classification:
        return answer("10/20/30", 0.9, fields={"noise": said[request.ticket.id]})

    kit.classifier = ScriptedClassifier(*[respond] * len(said))

    measured = _run(kit).report["fields"]["noise"]

    assert (measured["tickets"], measured["decided"]) == (4, 4)
    assert measured["accuracy"] == pytest.approx(2 / 4)  # a spam missed; the auto-reply ruled
    confused = {(c["truth"], c["predicted"]) for c in measured["confused"]}
    assert confused == {
        ("spam", "a real request"),
        ("a real request", "an automatic reply or out-of-office message"),
    }
