"""Backfill through the HTTP fakes of all four PSAs: existing tickets decided once each through
the pipeline and policy, a run interrupted mid-way that the same call resumes, a dry run that
writes nothing, and the call share that keeps room for new tickets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from psatriage.bulk.backfill import Params, Stopped, backfill, backfill_deps
from psatriage.store.tables import EventRow, utcnow
from tests.bulk.conftest import command_runtime
from tests.cli.psa_history import PSAS, TENANT, TEXTS, HistoryTenant, tenant_of
from tests.fakes.openai import FakeOpenAI


def _open_tickets(psa: HistoryTenant) -> tuple[list[str], str]:
    """Three open tickets without a category (3, 2 and 1 days old), one with a category, and
    one created before the period."""
    first = PSAS[psa.kind][1]
    first_text, second_text = TEXTS[psa.kind]
    psa.close(first_text, None, days=40, closed=False)
    open_ = [
        psa.close(first_text, None, days=3, closed=False),
        psa.close(second_text, None, days=2, closed=False),
        psa.close(first_text + " again", None, days=1, closed=False),
    ]
    categorized = psa.close(second_text, first, days=1, closed=False)
    return open_, categorized


def _events() -> int:
    built = command_runtime()
    try:
        with built.sessions() as session:
            return int(session.execute(select(func.count()).select_from(EventRow)).scalar_one())
    finally:
        built.close()


def _params(**changes: object) -> Params:
    since = utcnow() - timedelta(days=30)
    return Params(since=since, since_text="30d", **changes)  # type: ignore[arg-type]


class _Interrupt:
    """A progress callback that presses Ctrl-C once ``after`` tickets are done."""

    def __init__(self, after: int) -> None:
        self.after = after

    def __call__(self, done: int, total: int) -> None:
        if done >= self.after:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_every_ticket_is_decided_once(psa: HistoryTenant) -> None:
    open_, categorized = _open_tickets(psa)
    params = _params(only_uncategorized=True)
    built = command_runtime()
    try:
        with pytest.raises(KeyboardInterrupt):
            backfill(built, TENANT, params, progress=_Interrupt(2))
        written = [t for t in open_ if psa.kit.category_writes(t)]
        assert len(written) == 2 and len(psa.llm.calls) == 2

        outcome = backfill(built, TENANT, params)

        assert (outcome.total, outcome.resumed) == (4, 2)
        states = {ticket: (state, result) for ticket, state, result in outcome.results}
        for ticket in open_:
            assert len(psa.kit.category_writes(ticket)) == 1
            assert sum("psatriage:" in note for note in psa.kit.notes(ticket)) == 1
            assert states[ticket][0] == "done" and states[ticket][1]["outcome"] == "applied"
        assert psa.kit.category_writes(categorized) == []
        assert states[categorized] == ("skipped", states[categorized][1])
        assert states[categorized][1]["reason"] == "already categorized"
        assert len(psa.llm.calls) == 3  # none asked twice

        again = backfill(built, TENANT, _params())  # a new run: the open ones are decided
        ended = {ticket: (state, result) for ticket, state, result in again.results}
        assert {ended[t][0] for t in open_} == {"skipped"}
        assert "already handled by event" in ended[open_[0]][1]["reason"]
        assert ended[categorized][1]["outcome"] == "kept"  # a person's category is kept
        assert all(len(psa.kit.category_writes(t)) == 1 for t in open_)
        assert psa.kit.category_writes(categorized) == []
        assert len(psa.llm.calls) == 3
    finally:
        built.close()


def test_a_dry_run_writes_nothing_and_resumes(psa: HistoryTenant) -> None:
    open_, categorized = _open_tickets(psa)
    notes = {t: psa.kit.notes(t) for t in [*open_, categorized]}
    params = _params(dry_run=True, until=utcnow(), until_text="now")
    built = command_runtime()
    try:
        with pytest.raises(KeyboardInterrupt):
            backfill(built, TENANT, params, progress=_Interrupt(1))
        outcome = backfill(built, TENANT, params)
    finally:
        built.close()
    assert (outcome.total, outcome.resumed) == (4, 1)
    rows = {ticket: result for ticket, _, result in outcome.results}
    assert {rows[t]["outcome"] for t in open_} == {"applied"}
    assert rows[open_[0]]["writes"] == "category and note" and rows[open_[0]]["category"]
    assert rows[categorized]["outcome"] == "kept" and rows[categorized]["current"]
    for ticket, before in notes.items():
        assert psa.kit.category_writes(ticket) == [] and psa.kit.notes(ticket) == before
    assert _events() == 0  # nothing in the ledger either
    assert len(psa.llm.calls) == 3


def test_refused_credentials_stop_the_run_and_the_same_call_resumes(
    psa: HistoryTenant,
) -> None:
    open_, _ = _open_tickets(psa)
    psa.kit.fake.fail("GET", psa.kit.fail_path(open_[1]), 401, times=10)
    built = command_runtime()
    try:
        with pytest.raises(Stopped, match="credentials"):
            backfill(built, TENANT, _params(limit=3))
        assert len(psa.kit.category_writes(open_[0])) == 1
        assert psa.kit.category_writes(open_[1]) == []
        psa.kit.fake.clear_failures()  # the operator fixed the credentials
        outcome = backfill(built, TENANT, _params(limit=3))
    finally:
        built.close()
    assert (outcome.total, outcome.resumed) == (3, 1)
    assert all(len(psa.kit.category_writes(t)) == 1 for t in open_)


def test_the_backfill_adapter_takes_its_share_of_the_call_limit(psa: HistoryTenant) -> None:
    built = command_runtime()
    try:
        own = built.tenant(TENANT).connection
        bulk = backfill_deps(built, TENANT).adapter.config
    finally:
        built.close()
    key = "calls_per_hour" if psa.kind == "kaseya_bms" else "requests_per_window"
    assert getattr(bulk, key) == int(getattr(own, key) * 0.5)


def test_a_spent_model_budget_stops_the_run_until_it_turns(
    llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for psa in tenant_of(
        "connectwise", llm, tmp_path, monkeypatch, budget={"max_model_calls_per_day": 1}
    ):
        open_, _ = _open_tickets(psa)
        built = command_runtime()
        try:
            with pytest.raises(Stopped, match="budget"):
                backfill(built, TENANT, _params(only_uncategorized=True))
            assert len(psa.kit.category_writes(open_[0])) == 1
            assert [psa.kit.category_writes(t) for t in open_[1:]] == [[], []]
            assert len(llm.calls) == 1
            with pytest.raises(Stopped, match="budget"):  # the same day: still spent
                backfill(built, TENANT, _params(only_uncategorized=True))
            assert len(llm.calls) == 1
        finally:
            built.close()
