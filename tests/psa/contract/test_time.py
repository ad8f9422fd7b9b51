"""The contract, reports: closed tickets of a period and the time spent on them, for every PSA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from psatriage.errors import PermanentError, TimeUnavailable, TransientError
from psatriage.psa.base import PSAAdapter
from tests.fakes.kit import ContractKit
from tests.psa.contract.conftest import Build

DAY = datetime(2026, 2, 1, tzinfo=UTC)


def closed(kit: ContractKit, title: str, created: int, closed: int, category: int | None,
           company: int = 0) -> str:  # fmt: skip
    assert kit.closed_ticket is not None
    return kit.closed_ticket(
        title, DAY + timedelta(days=created), DAY + timedelta(days=closed), category, company
    )


def test_closed_tickets_of_a_period_carry_category_company_and_times(
    kit: ContractKit, adapter_class: type[PSAAdapter[Any]], build: Build
) -> None:
    assert adapter_class.can_read_time()
    printer = closed(kit, "Printer jams", -10, 1, 0)
    email = closed(kit, "Mailbox full", -3, 5, 1, company=1)
    bare = closed(kit, "Question", 0, 2, None)
    closed(kit, "closed before the period", -20, -1, 0)
    closed(kit, "closed after the period", 0, 40, 0)
    kit.new_ticket("still open", "not closed")
    before = len(kit.fake.requests_to(kit.history_path))
    found = build(page_size=1).list_closed_tickets(DAY.replace(tzinfo=None), DAY + timedelta(30))
    assert len(kit.fake.requests_to(kit.history_path)) - before >= 2  # paged (page size 1)
    assert [t.ticket_id for t in found] == [printer, bare, email]
    first, none, second = found
    assert first.label == kit.report_categories[0] and first.key
    assert second.label == kit.report_categories[1]
    assert none.path == ()
    assert (first.company_name, second.company_name) == kit.report_companies
    assert first.company_id and first.company_id != second.company_id
    assert first.title == "Printer jams"
    assert first.created_at == (DAY - timedelta(days=10)).replace(tzinfo=None)
    assert first.closed_at == (DAY + timedelta(days=1)).replace(tzinfo=None)


def test_time_spent_sums_each_tickets_entries_and_zero_without(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.add_time is not None
    worked, once, idle, other = (closed(kit, f"ticket {n}", -2, 1, 0) for n in range(4))
    kit.add_time(worked, 1.5)
    kit.add_time(worked, 0.25)
    kit.add_time(once, 2.0)
    kit.add_time(other, 9.0)  # not asked for
    spent = adapter.time_spent([worked, once, idle])
    assert spent == pytest.approx({worked: 1.75, once: 2.0, idle: 0.0})


def test_time_is_read_in_batches_not_entry_by_entry(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.add_time is not None
    tickets = [closed(kit, f"ticket {n}", -2, 1, 1) for n in range(6)]
    for n, ticket in enumerate(tickets):
        for _ in range(3):
            kit.add_time(ticket, 0.5 * (n + 1))
    spent = adapter.time_spent(tickets)
    assert sum(spent.values()) == pytest.approx(1.5 * sum(range(1, 7)))
    assert len(kit.fake.requests_to(kit.time_path)) <= len(tickets)  # at most one per ticket


def test_refused_time_is_time_unavailable_naming_the_permission(
    kit: ContractKit, adapter: PSAAdapter[Any]
) -> None:
    assert kit.deny_time is not None
    ticket = closed(kit, "Printer jams", -2, 1, 0)
    kit.deny_time()
    with pytest.raises(TimeUnavailable) as caught:
        adapter.time_spent([ticket])
    assert caught.value.permission and caught.value.permission in str(caught.value)
    for secret in kit.secrets:
        assert secret not in str(caught.value)


def test_time_failures_map_to_the_tree(kit: ContractKit, adapter: PSAAdapter[Any]) -> None:
    ticket = closed(kit, "Printer jams", -2, 1, 0)
    kit.fake.fail("*", kit.time_path, 503, headers={"Retry-After": "7"}, times=10)
    with pytest.raises(TransientError) as caught:
        adapter.time_spent([ticket])
    assert caught.value.retry_after == 7
    with pytest.raises(PermanentError, match=r"'\.\./x' is not an? .* id"):
        adapter.time_spent(["../x"])
