"""Readiness: is a tenant ready to go live, and with which policy?

One page from four things: the connections (the PSA's and the model's ``check_connection``), how
tickets reach the service (webhook deliveries seen, polling possible and running), the last
backtest's report (accuracy, the recommended bands, cost) and the category tree's hygiene. The
verdict is ``ready to apply`` when everything answers and a backtest found an ``apply_at``,
``ready to suggest`` when it found none, and ``not ready`` when a check failed or there is no
backtest to judge by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from psatriage.config import Tenant
from psatriage.errors import PsatriageError
from psatriage.psa.base import PSAAdapter
from psatriage.store.tables import utcnow

STALE_AFTER: Final = timedelta(days=30)

READY_TO_APPLY: Final = "ready to apply"
READY_TO_SUGGEST: Final = "ready to suggest"
NOT_READY: Final = "not ready"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist: ``ok`` True (passed), False (must be fixed) or None (a
    warning worth reading)."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the service has seen of the tenant: the last webhook delivery and the poll mark."""

    last_webhook: datetime | None = None
    last_poll: datetime | None = None


def probe(name: str, call: Callable[[], str]) -> Check:
    """A connection check: what answered, or the error's class and message."""
    try:
        return Check(name, True, call())
    except PsatriageError as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def trigger_checks(tenant: Tenant, adapter: PSAAdapter[Any], traffic: Traffic) -> list[Check]:
    """How new tickets arrive: webhook deliveries seen, polling possible and running."""
    checks = []
    if tenant.takes_webhooks:
        if traffic.last_webhook is None:
            checks.append(
                Check(
                    "webhook",
                    None,
                    "no delivery received yet: register it (psatriage webhooks register) and "
                    "create a test ticket",
                )
            )
        else:
            checks.append(
                Check("webhook", True, f"last delivery {traffic.last_webhook:%Y-%m-%d %H:%M} UTC")
            )
    if tenant.polls:
        if not adapter.can_poll():
            checks.append(Check("polling", False, f"the {adapter.kind} adapter cannot poll"))
        elif traffic.last_poll is None:
            checks.append(
                Check("polling", None, f"every {tenant.poll_seconds} s; not polled yet (serve)")
            )
        else:
            checks.append(
                Check(
                    "polling",
                    True,
                    f"every {tenant.poll_seconds} s; polled up to "
                    f"{traffic.last_poll:%Y-%m-%d %H:%M} UTC",
                )
            )
    checks += [Check("PSA problem", False, problem) for problem in adapter.problems()]
    if not adapter.can_list_history():
        checks.append(
            Check("history", None, f"the {adapter.kind} adapter cannot read closed tickets")
        )
    return checks


@dataclass
class Readiness:
    tenant: str
    psa: str
    classifier: str
    verdict: str
    reasons: list[str]
    checks: list[Check]
    backtest: dict[str, Any] | None = None  # the report of the last finished backtest
    backtest_finished: str | None = None
    improve: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(
    tenant: Tenant,
    checks: list[Check],
    report: dict[str, Any] | None,
    *,
    finished: datetime | None = None,
    settings_changed: bool = False,
    now: datetime | None = None,
) -> Readiness:
    """The verdict from the checks and the last backtest's report."""
    reasons = [f"{c.name}: {c.detail}" for c in checks if c.ok is False]
    improve = [f"{c.name}: {c.detail}" for c in checks if c.ok is None]
    verdict = NOT_READY
    if report is None:
        reasons.append("no backtest yet: run psatriage backtest --tenant " + tenant.name)
    else:
        bands = report["policy"]
        age = (now or utcnow()) - finished if finished is not None else timedelta(0)
        if age > STALE_AFTER:
            improve.append(f"the backtest is {age.days} days old: run it again")
        if settings_changed:
            improve.append("the tenant's settings changed since the backtest: run it again")
        engine = report["run"]["engine"]
        if engine != tenant.classifier_kind:
            improve.append(
                f"the backtest measured engine {engine}; the tenant uses {tenant.classifier_kind}"
            )
        improve += report["hygiene"]["advice"]
        if not reasons:
            verdict = READY_TO_APPLY if bands["apply_at"] is not None else READY_TO_SUGGEST
            reasons.append(bands["reason"])
    return Readiness(
        tenant=tenant.name,
        psa=tenant.psa,
        classifier=tenant.classifier_kind,
        verdict=verdict,
        reasons=reasons,
        checks=checks,
        backtest=report,
        backtest_finished=finished.isoformat(timespec="seconds") if finished else None,
        improve=improve,
    )
