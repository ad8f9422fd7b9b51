"""Readiness: the checklist from connections and traffic, and the verdict from the last backtest."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psatriage.config import Trigger
from psatriage.domain import NewTicket
from psatriage.errors import AuthFailed
from psatriage.evaluation.readiness import (
    NOT_READY,
    READY_TO_APPLY,
    READY_TO_SUGGEST,
    Check,
    Traffic,
    assess,
    probe,
    trigger_checks,
)
from tests.fakes.inprocess import MemoryPSA
from tests.pipeline_kit import make_tenant

NOW = datetime(2026, 12, 1, 12, 0)


class PollingPSA(MemoryPSA):
    def list_new_tickets(self, since: datetime) -> list[NewTicket]:
        return []


def _report(apply_at: float | None, *, engine: str = "scripted") -> dict[str, Any]:
    return {
        "run": {"engine": engine},
        "policy": {"apply_at": apply_at, "reason": "the reason"},
        "hygiene": {"advice": ["fix the catch-alls"]},
    }


def test_probe_says_what_answered_or_what_failed() -> None:
    assert probe("PSA", lambda: "ConnectWise 2025.1") == Check("PSA", True, "ConnectWise 2025.1")

    def refused() -> str:
        raise AuthFailed("401 from the PSA")

    assert probe("PSA", refused) == Check("PSA", False, "AuthFailed: 401 from the PSA")


def test_trigger_checks_for_webhooks_and_polling() -> None:
    tenant = replace(make_tenant(), trigger=Trigger.BOTH)
    psa = PollingPSA()
    none_yet = trigger_checks(tenant, psa, Traffic())
    assert [(c.name, c.ok) for c in none_yet] == [
        ("webhook", None),
        ("polling", None),
        ("history", None),
    ]
    assert "psatriage webhooks register" in none_yet[0].detail
    seen = trigger_checks(tenant, psa, Traffic(NOW, NOW - timedelta(minutes=1)))
    assert [(c.name, c.ok) for c in seen[:2]] == [("webhook", True), ("polling", True)]
    assert seen[0].detail == "last delivery 2026-12-01 12:00 UTC"
    assert seen[1].detail == "every 60 s; polled up to 2026-12-01 11:59 UTC"

    polling = replace(make_tenant(), trigger=Trigger.POLL)
    cannot = trigger_checks(polling, MemoryPSA(), Traffic())
    assert cannot[0] == Check("polling", False, "the memory adapter cannot poll")


def test_the_verdict() -> None:
    tenant = make_tenant()
    passed = [Check("PSA", True, "ok"), Check("webhook", None, "no delivery received yet")]

    ready = assess(tenant, passed, _report(0.9), finished=NOW, now=NOW)
    assert (ready.verdict, ready.reasons) == (READY_TO_APPLY, ["the reason"])
    assert ready.improve == ["webhook: no delivery received yet", "fix the catch-alls"]
    assert assess(tenant, passed, _report(None), finished=NOW, now=NOW).verdict == READY_TO_SUGGEST

    broken = assess(tenant, [Check("model", False, "AuthFailed: no")], _report(0.9), now=NOW)
    assert (broken.verdict, broken.reasons) == (NOT_READY, ["model: AuthFailed: no"])
    untested = assess(tenant, passed, None)
    assert untested.verdict == NOT_READY
    assert untested.reasons == ["no backtest yet: run psatriage backtest --tenant acme"]


def test_a_stale_or_outdated_backtest_is_worth_running_again() -> None:
    old = assess(
        make_tenant(),
        [],
        _report(0.9, engine="local"),
        finished=NOW - timedelta(days=45),
        settings_changed=True,
        now=NOW,
    )
    assert old.verdict == READY_TO_APPLY
    assert old.improve[:3] == [
        "the backtest is 45 days old: run it again",
        "the tenant's settings changed since the backtest: run it again",
        "the backtest measured engine local; the tenant uses scripted",
    ]
    assert old.to_dict()["backtest_finished"] == "2026-10-17T12:00:00"
