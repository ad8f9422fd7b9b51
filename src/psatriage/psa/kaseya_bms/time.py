"""Kaseya BMS's completed tickets and their time logs, for reports.

Completed tickets: ``GET /v2/servicedesk/tickets`` with ``Filter.CompletedDateFrom`` and
``Filter.CompletedDateTo``, every page; the list rows (``TicketListDto`` in the API's spec) carry
the account, ``CreatedOn``, ``CompletedDate`` and the issue and sub-issue types, so no ticket is
read again. Time: ``GET /v2/servicedesk/tickets/{id}/timelogs`` (``GetTicketTimeEntries``, every
page), summing ``Timespent``; BMS has no time-log list for several tickets, so this is one call
(or one per page) per ticket, through the per-endpoint limiter (1,500 calls an hour).

[UNSURE] ``Timespent`` is in hours (the spec says only "double"; the ticket's ``TotalTimeSpent``
is read the same way by public clients). [UNSURE] Dates without an offset are in
``api_timezone``, as everywhere in this adapter. [UNSURE] The permission: a security role without
access to time logs gets a refusal (401/403 or ``Success: false``); the fix is *Service Desk ›
Time Logs: View* (or *Time & Expense › Timesheets: View*) for the API user's role.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from psatriage.domain import ClosedTicket, LevelValue
from psatriage.errors import AuthFailed, TimeUnavailable
from psatriage.psa.kaseya_bms.client import BMSClient
from psatriage.psa.wire import JSON, aware_utc, naive_utc, numeric, record_id, timestamp, utc_text

PERMISSION = "Service Desk › Time Logs (View) in the API user's security role"


def closed_tickets(
    client: BMSClient, since: datetime, until: datetime, zone: tzinfo
) -> list[ClosedTicket]:
    """Tickets completed in ``[since, until)``, oldest completed first."""
    start, end = aware_utc(since), aware_utc(until)
    params = {
        "Filter.CompletedDateFrom": utc_text(start),
        "Filter.CompletedDateTo": utc_text(end),
    }
    found: dict[str, ClosedTicket] = {}
    for row in client.paged("servicedesk/tickets", params=params, what="completed tickets"):
        ticket = _closed(row, start, end, zone)
        if ticket is not None:
            found[ticket.ticket_id] = ticket
    return sorted(found.values(), key=lambda t: (t.closed_at, int(t.ticket_id)))


def _closed(row: JSON, start: datetime, end: datetime, zone: tzinfo) -> ClosedTicket | None:
    number = record_id(row.get("id") or row.get("ticketid"))
    created = timestamp(row.get("createdon"), zone) or timestamp(row.get("opendate"), zone)
    closed = timestamp(row.get("completeddate"), zone)
    if number is None or created is None or closed is None or not start <= closed < end:
        return None
    path = []
    for level in ("IssueTypeId", "SubIssueTypeId"):
        value = record_id(row.get(level.lower()))
        if value is None:
            break
        name = row.get(level.lower().removesuffix("id") + "name") or ""
        path.append(LevelValue(level, value, str(name)))
    account = record_id(row.get("accountid"))
    return ClosedTicket(
        ticket_id=number,
        title=str(row.get("title") or ""),
        company_id=account,
        company_name=str(row["accountname"]) if row.get("accountname") else None,
        created_at=naive_utc(created),
        closed_at=naive_utc(closed),
        path=tuple(path),
    )


def hours(client: BMSClient, ticket_ids: Sequence[str]) -> dict[str, float]:
    """Hours logged on each ticket (0.0 without logs), one list per ticket."""
    spent: dict[str, float] = {}
    for ticket_id in ticket_ids:
        number = numeric(ticket_id, "ticket id", psa="Kaseya BMS")
        try:
            logs = list(
                client.paged(
                    f"servicedesk/tickets/{number}/timelogs", what=f"time logs of ticket {number}"
                )
            )
        except AuthFailed as exc:
            raise TimeUnavailable(
                f"Kaseya BMS will not show the API user time logs ({exc}); grant {PERMISSION}",
                permission=PERMISSION,
            ) from exc
        total = 0.0
        for log in logs:
            taken = log.get("timespent")
            if isinstance(taken, int | float) and not isinstance(taken, bool):
                total += float(taken)
        spent[str(number)] = max(0.0, total)
    return spent
