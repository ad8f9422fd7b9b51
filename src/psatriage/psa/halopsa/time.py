"""HaloPSA's closed tickets and the time taken on them, for reports.

Closed tickets: ``GET /api/Tickets`` with ``closed_only=true``, ``datesearch=dateclosed``,
``startdate`` and ``enddate``, page by page; each row's ``dateclosed`` is checked again here.
Time: the ticket's actions, ``GET /api/Actions?ticket_id=N`` (every page), summing ``timetaken``,
which Halo keeps in decimal hours. Halo has no list of actions for several tickets at once, so
this is one call (or one per page) per ticket, each through the tenant's call limits.

[UNSURE] ``datesearch=dateclosed`` with ``enddate``, and that both dates are read as UTC: public
integrations use them, Halo's reference does not describe them. [UNSURE] That every action's
``timetaken`` counts (Halo also keeps ``nonbilltime``; it is not added). [UNSURE] The permission:
an API application whose agent may not see time gets 403 on the actions or answers with no
``timetaken``; the fix is the agent's role permission to view time (Configuration › Teams &
Agents › Roles: *Time*), and the application's ``read:tickets`` scope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psatriage.domain import ClosedTicket, LevelValue
from psatriage.errors import AuthFailed, TimeUnavailable
from psatriage.psa.halopsa.client import HaloClient
from psatriage.psa.halopsa.history import leaf_key
from psatriage.psa.halopsa.wire import positive
from psatriage.psa.wire import JSON, aware_utc, naive_utc, numeric, timestamp, utc_text

PERMISSION = (
    "the read:tickets scope for the API application and a role for its agent that may view "
    "time taken on actions"
)

Levels = Callable[[Mapping[str, Any]], tuple[LevelValue, ...]]
InScope = Callable[[Mapping[str, Any]], bool]


def closed_tickets(
    client: HaloClient, since: datetime, until: datetime, levels: Levels, in_scope: InScope
) -> list[ClosedTicket]:
    """Tickets closed in ``[since, until)``, oldest closed first."""
    start, end = aware_utc(since), aware_utc(until)
    params: dict[str, str | int] = {
        "closed_only": "true",
        "datesearch": "dateclosed",
        "startdate": utc_text(start).removesuffix("Z"),
        "enddate": utc_text(end).removesuffix("Z"),
        "order": "dateclosed",
    }
    found: dict[int, ClosedTicket] = {}
    for record in client.get_all("Tickets", "tickets", params=params, what="closed tickets"):
        found_ticket = _closed(record, start, end, levels, in_scope)
        if found_ticket is not None:
            found[int(found_ticket.ticket_id)] = found_ticket
    return sorted(found.values(), key=lambda t: (t.closed_at, int(t.ticket_id)))


def _closed(
    record: JSON, start: datetime, end: datetime, levels: Levels, in_scope: InScope
) -> ClosedTicket | None:
    number = positive(record.get("id"))
    created, closed = timestamp(record.get("dateoccurred")), timestamp(record.get("dateclosed"))
    if number is None or created is None or closed is None or not start <= closed < end:
        return None
    if not in_scope(record):
        return None
    client_id = positive(record.get("client_id"))
    path = levels(record)
    return ClosedTicket(
        ticket_id=str(number),
        title=str(record.get("summary") or ""),
        company_id=str(client_id) if client_id is not None else None,
        company_name=str(record["client_name"]) if record.get("client_name") else None,
        created_at=naive_utc(created),
        closed_at=naive_utc(closed),
        path=path,
        leaf_key=leaf_key(path),
    )


def hours(client: HaloClient, ticket_ids: Sequence[str]) -> dict[str, float]:
    """Hours taken on each ticket's actions (0.0 without any), one list per ticket."""
    spent: dict[str, float] = {}
    for ticket_id in ticket_ids:
        number = numeric(ticket_id, "ticket id", psa="HaloPSA")
        try:
            actions = list(
                client.get_all(
                    "Actions",
                    "actions",
                    params={"ticket_id": number},
                    what=f"actions of ticket {number}",
                )
            )
        except AuthFailed as exc:
            raise TimeUnavailable(
                f"HaloPSA will not show the API application time taken ({exc}); give it "
                f"{PERMISSION}",
                permission=PERMISSION,
            ) from exc
        total = 0.0
        for action in actions:
            taken = action.get("timetaken")
            if isinstance(taken, int | float) and not isinstance(taken, bool):
                total += float(taken)
        spent[str(number)] = max(0.0, total)
    return spent
