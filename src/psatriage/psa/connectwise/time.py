"""ConnectWise's closed tickets and the time charged to them, for reports.

Closed tickets: ``GET service/tickets`` with ``conditions=closedFlag=true and closedDate >= [...]
and closedDate < [...]``, every page (``Link`` header). Time: ``GET time/entries`` with
``conditions=chargeToType="ServiceTicket" and chargeToId in (...)``, ``TIME_BATCH`` tickets per
query, summing each entry's ``actualHours`` (the hours worked, before any deduction or billing
adjustment; ``hoursDeduct`` and ``hoursBilled`` are left out).

[UNSURE] ``closedDate`` is the moment the ticket last reached a closed status (public clients
read it so; the reference does not cover it). [UNSURE] ``in (...)`` in ``conditions`` with many
ids: the condition grammar documents ``in``, its length limit is not published, so batches stay
small. [UNSURE] The permission: reading ``time/entries`` needs the API member's security role to
have *Time & Expense › Time Entry* at inquire level *All*; without it ConnectWise answers 403.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psatriage.domain import ClosedTicket
from psatriage.errors import AuthFailed, TimeUnavailable
from psatriage.psa.connectwise.client import ConnectWiseClient
from psatriage.psa.connectwise.taxonomy import current_levels
from psatriage.psa.wire import (
    aware_utc,
    lower_keys,
    naive_utc,
    numeric,
    record_id,
    timestamp,
    utc_text,
)

TIME_BATCH = 50
PERMISSION = "Time & Expense › Time Entry (inquire level All) on the API member's security role"

InScope = Callable[[Mapping[str, Any]], bool]


def closed_tickets(
    client: ConnectWiseClient, since: datetime, until: datetime, in_scope: InScope
) -> list[ClosedTicket]:
    """Service tickets closed in ``[since, until)``, oldest closed first (project tickets and
    boards outside ``boards`` left out, as everywhere else)."""
    start, end = aware_utc(since), aware_utc(until)
    params = {
        "conditions": f"closedFlag=true and closedDate >= [{utc_text(start)}] "
        f"and closedDate < [{utc_text(end)}]",
        "orderBy": "closedDate asc, id asc",
        "fields": "id,summary,recordType,board,company,type,subType,item,_info,closedDate",
    }
    found = []
    for record in client.pages("service/tickets", params=params, what="closed tickets"):
        entity = lower_keys(record)
        number = record_id(entity.get("id"))
        created = timestamp(lower_keys(entity.get("_info")).get("dateentered"))
        closed = timestamp(entity.get("closeddate"))
        if number is None or created is None or closed is None or not start <= closed < end:
            continue
        if not in_scope(entity):
            continue
        company = lower_keys(entity.get("company"))
        found.append(
            ClosedTicket(
                ticket_id=number,
                title=str(entity.get("summary") or ""),
                company_id=record_id(company.get("id")),
                company_name=str(company["name"]) if company.get("name") else None,
                created_at=naive_utc(created),
                closed_at=naive_utc(closed),
                path=current_levels(entity),
            )
        )
    return sorted(found, key=lambda t: (t.closed_at, int(t.ticket_id)))


def hours(client: ConnectWiseClient, ticket_ids: Sequence[str]) -> dict[str, float]:
    """Hours charged to each ticket (0.0 without entries), ``TIME_BATCH`` tickets a query."""
    numbers = [numeric(t, "ticket id", psa="ConnectWise") for t in ticket_ids]
    spent = {str(n): 0.0 for n in numbers}
    for start in range(0, len(numbers), TIME_BATCH):
        batch = numbers[start : start + TIME_BATCH]
        params = {
            "conditions": 'chargeToType="ServiceTicket" and chargeToId in '
            f"({','.join(str(n) for n in batch)})",
            "fields": "id,chargeToId,chargeToType,actualHours",
        }
        try:
            entries = client.get_all("time/entries", params=params, what="time entries")
        except AuthFailed as exc:
            raise TimeUnavailable(
                f"ConnectWise will not show the API member time entries ({exc}); grant "
                f"{PERMISSION}",
                permission=PERMISSION,
            ) from exc
        for entry in entries:
            record = lower_keys(entry)
            ticket = record_id(record.get("chargetoid"))
            kind = str(record.get("chargetotype") or "ServiceTicket")
            if ticket in spent and kind == "ServiceTicket":
                spent[ticket] += _hours(record.get("actualhours"))
    return {ticket: max(0.0, total) for ticket, total in spent.items()}


def _hours(value: object) -> float:
    """An entry's hours (a correction may be negative); 0.0 when unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0
