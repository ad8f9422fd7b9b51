"""The reports from facts, without a PSA: levels, percentiles, trends, the hours a year, the
automation lists and the companies; hours that are unavailable or not read yet."""

from __future__ import annotations

from datetime import datetime, timedelta

from psatriage.reports import build
from psatriage.reports.build import Period
from psatriage.store.facts import Fact, RefreshState

SINCE, UNTIL = datetime(2026, 3, 1), datetime(2026, 3, 11)  # ten days
STATE = RefreshState(datetime(2026, 3, 11), datetime(2026, 3, 11), "")


def fact(n: int, path: tuple[str, ...], hours: float | None, *, company: str = "Contoso Ltd",
         title: str = "Reset password", days: int = 1, decision: str = "") -> Fact:  # fmt: skip
    closed = SINCE + timedelta(days=days)
    key = "/".join(path) or None
    source = "psa" if path else ""
    opened = closed - timedelta(hours=2)
    return Fact(
        str(n), title, "1", company, opened, closed, key, path, source, hours, decision, None
    )


def period(current: list[Fact], previous: list[Fact] = (), state: RefreshState = STATE) -> Period:  # type: ignore[assignment]
    return Period("acme", "connectwise", SINCE, UNTIL, current, previous, state)


ACCOUNTS = ("Accounts", "Password")


def test_levels_share_percentiles_and_trend() -> None:
    current = [fact(n, ACCOUNTS, h) for n, h in enumerate([0.1, 0.2, 0.3, 0.4, 1.0])]
    current.append(fact(9, ("Hardware",), 2.0, decision="applied"))
    report = build.categories(period(current, [fact(20, ACCOUNTS, 1.0)]))
    assert [level.level for level in report.levels] == ["type", "type › subtype"]
    accounts, hardware = report.levels[0].rows  # as many hours: more tickets first
    assert (hardware.category, hardware.hours, hardware.tickets_trend) == ("Hardware", 2.0, None)
    assert (accounts.tickets, accounts.hours, accounts.share) == (5, 2.0, 0.8333)
    assert (accounts.median_hours, accounts.p90_hours) == (0.3, 0.76)
    assert (accounts.tickets_trend, accounts.hours_trend) == (4.0, 1.0)
    assert report.levels[1].rows[0].category == "Accounts › Password"
    assert report.summary.decided == 1 and report.summary.hours == 4.0


def test_automation_lists_and_hours_a_year() -> None:
    current = [fact(n, ACCOUNTS, 0.25, title=f"Reset password for user {n}") for n in range(6)]
    current += [fact(10 + n, ("Hardware",), 3.0, title=t, company="Fabrikam Inc")
                for n, t in enumerate(["Printer jam", "New laptop", "Dock is dead"])]  # fmt: skip
    report = build.automation(period(current))
    assert [(r.category, r.hours, r.hours_a_year) for r in report.by_hours] == [
        ("Hardware", 9.0, 328.5),
        ("Accounts › Password", 1.5, 54.75),
    ]
    assert [(r.category, r.company, r.tickets) for r in report.recurring] == [
        ("Hardware", "Fabrikam Inc", 3),
        ("Accounts › Password", "Contoso Ltd", 6),
    ]
    [alike] = report.alike  # Hardware: too few, too long and unalike
    assert (alike.category, alike.tickets, alike.tickets_a_year) == (
        "Accounts › Password",
        6,
        219.0,
    )


def test_companies_by_category() -> None:
    current = [fact(1, ACCOUNTS, 1.0), fact(2, ("Hardware",), 0.5), fact(3, (), 0.0, company="")]
    report = build.companies(period(current, [fact(4, ACCOUNTS, 1.0)]))
    contoso, nobody = report.companies
    assert (contoso.company, contoso.tickets, contoso.hours, contoso.previous_tickets) == (
        "Contoso Ltd", 2, 1.5, 1)  # fmt: skip
    assert [c.category for c in contoso.categories] == ["Accounts › Password", "Hardware"]
    assert nobody.company == "company 1"


def test_unavailable_and_unread_hours() -> None:
    refused = RefreshState(None, None, "Time Entry inquire rights")
    report = build.categories(
        period([fact(1, ACCOUNTS, None), fact(2, ACCOUNTS, None)], state=refused)
    )
    assert report.summary.hours is None and not report.summary.hours_available
    assert report.summary.hours_note == "hours unavailable: Time Entry inquire rights"
    assert report.levels[0].rows[0].median_hours is None
    partial = build.categories(period([fact(1, ACCOUNTS, 1.0), fact(2, ACCOUNTS, None)]))
    assert partial.summary.hours == 1.0 and partial.summary.hours_unknown == 1
    assert partial.summary.hours_note.startswith("hours not read yet for 1 of 2 tickets")
    empty = build.companies(period([], state=RefreshState(None, None, "")))
    assert empty.summary.message.endswith("its facts were never refreshed: run with --refresh")
