"""Autotask's completed tickets and the time worked on them, for reports.

Completed tickets: one ``Tickets`` query, ``completedDate gte`` and ``completedDate lt`` the
period (every page); company names in one ``Companies`` query per ``TIME_BATCH`` companies. Time:
``TimeEntries`` queries with ``ticketID in [...]``, ``TIME_BATCH`` tickets each, summing
``hoursWorked`` (hours worked, before ``hoursToBill`` adjustments).

[UNSURE] "closed" is read as "has a ``completedDate``" (set when the ticket reaches Complete), as
the training history reads it. [UNSURE] The ``in`` operator with a list value is one of the query
operators public clients use; Autotask caps a query at 500 conditions, so batches stay at 200.
[UNSURE] The permission: a security level that may not see time entries gets Autotask's HTTP 500
"does not have the adequate permissions" (or a 403); the fix is a security level whose *Time &
Expense* section lets the API user view all time entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psatriage.domain import ClosedTicket, LevelValue
from psatriage.errors import AuthFailed, TimeUnavailable
from psatriage.psa.autotask.client import AutotaskClient
from psatriage.psa.autotask.hooks import text_of
from psatriage.psa.wire import (
    aware_utc,
    lower_keys,
    naive_utc,
    numeric,
    record_id,
    timestamp,
    utc_text,
)

TIME_BATCH = 200
PERMISSION = (
    "a security level for the API user whose Time & Expense section may view all time entries"
)

Levels = Callable[[Mapping[str, Any]], tuple[LevelValue, ...]]


def closed_tickets(
    client: AutotaskClient, since: datetime, until: datetime, levels: Levels
) -> list[ClosedTicket]:
    """Tickets completed in ``[since, until)``, oldest completed first."""
    start, end = aware_utc(since), aware_utc(until)
    records = client.query(
        "Tickets",
        [
            {"op": "gte", "field": "completedDate", "value": utc_text(start, millis=True)},
            {"op": "lt", "field": "completedDate", "value": utc_text(end, millis=True)},
        ],
        include=(
            "id",
            "title",
            "companyID",
            "createDate",
            "completedDate",
            "issueType",
            "subIssueType",
        ),
        what="completed tickets",
    )
    rows = []
    for record in records:
        entry = lower_keys(record)
        number = record_id(entry.get("id"))
        created, closed = timestamp(entry.get("createdate")), timestamp(entry.get("completeddate"))
        if number is None or created is None or closed is None or not start <= closed < end:
            continue
        rows.append((number, entry, created, closed))
    names = company_names(client, {record_id(e.get("companyid")) for _, e, _, _ in rows})
    found = [
        ClosedTicket(
            ticket_id=number,
            title=text_of(entry.get("title")),
            company_id=(company := record_id(entry.get("companyid"))),
            company_name=names.get(company) if company else None,
            created_at=naive_utc(created),
            closed_at=naive_utc(closed),
            path=levels(entry),
        )
        for number, entry, created, closed in rows
    ]
    return sorted(found, key=lambda t: (t.closed_at, int(t.ticket_id)))


def company_names(client: AutotaskClient, ids: set[str | None]) -> dict[str, str]:
    """The names of the companies ``ids``, ``TIME_BATCH`` a query."""
    wanted = sorted(int(i) for i in ids if i is not None)
    names: dict[str, str] = {}
    for start in range(0, len(wanted), TIME_BATCH):
        batch = wanted[start : start + TIME_BATCH]
        for record in client.query(
            "Companies",
            [{"op": "in", "field": "id", "value": batch}],
            include=("id", "companyName"),
            what="company names",
        ):
            entry = lower_keys(record)
            company = record_id(entry.get("id"))
            if company is not None and text_of(entry.get("companyname")):
                names[company] = text_of(entry.get("companyname"))
    return names


def hours(client: AutotaskClient, ticket_ids: Sequence[str]) -> dict[str, float]:
    """Hours worked on each ticket (0.0 without entries), ``TIME_BATCH`` tickets a query."""
    numbers = [numeric(t, "ticket id", psa="Autotask") for t in ticket_ids]
    spent = {str(n): 0.0 for n in numbers}
    for start in range(0, len(numbers), TIME_BATCH):
        batch = numbers[start : start + TIME_BATCH]
        try:
            entries = client.query(
                "TimeEntries",
                [{"op": "in", "field": "ticketID", "value": batch}],
                include=("id", "ticketID", "hoursWorked"),
                what="time entries",
            )
        except AuthFailed as exc:
            raise TimeUnavailable(
                f"Autotask will not show the API user time entries ({exc}); give it {PERMISSION}",
                permission=PERMISSION,
            ) from exc
        for entry in entries:
            record = lower_keys(entry)
            ticket = record_id(record.get("ticketid"))
            worked = record.get("hoursworked")
            if ticket in spent and isinstance(worked, int | float) and not isinstance(worked, bool):
                spent[ticket] += float(worked)
    return {ticket: max(0.0, total) for ticket, total in spent.items()}
