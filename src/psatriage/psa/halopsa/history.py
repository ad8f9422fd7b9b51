"""HaloPSA's ticket lists for polling and for training: tickets logged since a moment, and closed
categorized ones, newest first (``GET /api/Tickets``, page by page).

Dates are sent and read as UTC [UNSURE]; ``dateoccured`` is Halo's spelling in the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from psatriage.domain import LevelValue, NewTicket
from psatriage.psa.halopsa.client import HaloClient
from psatriage.psa.halopsa.taxonomy import TYPE_LEVEL
from psatriage.psa.halopsa.wire import is_false, positive
from psatriage.psa.wire import JSON, timestamp, utc_text

InScope = Callable[[Mapping[str, Any]], bool]


def new_tickets(client: HaloClient, since: datetime, in_scope: InScope) -> list[NewTicket]:
    """Tickets logged at or after ``since`` (``datesearch=dateoccured``), oldest first."""
    start = since if since.tzinfo else since.replace(tzinfo=UTC)
    params = {"datesearch": "dateoccured", "startdate": _halo_time(since)}
    found: dict[int, NewTicket] = {}
    for record in client.get_all("Tickets", "tickets", params=params, what="new tickets"):
        number = positive(record.get("id"))
        if number is None or not in_scope(record):
            continue
        created = timestamp(record.get("dateoccurred")) or start
        if created >= start:
            found[number] = NewTicket(str(number), created)
    return sorted(found.values(), key=lambda t: (t.created_at, int(t.ticket_id)))


def closed(
    client: HaloClient,
    since: datetime,
    limit: int,
    in_scope: InScope,
    until: datetime | None = None,
) -> list[tuple[int, JSON]]:
    """Closed tickets logged at or after ``since`` with a category, as ``(id, record)``, newest
    first, read page by page until ``limit`` are found.

    ``closed_only=true``, ``datesearch=dateoccured``, ``startdate`` (and ``enddate``), ordered
    ``dateoccurred`` descending. [UNSURE] ``closed_only``, ``enddate``, ``order``/``orderdesc``
    and ``includedetails`` on the list are inferred from Halo's API parameters;
    ``hasbeenclosed``, the period and the order are checked again here.
    """
    config = client.config
    start = since if since.tzinfo else since.replace(tzinfo=UTC)
    params: dict[str, str | int] = {
        "closed_only": "true",
        "datesearch": "dateoccured",
        "startdate": _halo_time(since),
        "order": "dateoccurred",
        "orderdesc": "true",
        "includedetails": "true",
    }
    end = None if until is None else until if until.tzinfo else until.replace(tzinfo=UTC)
    if until is not None:
        params["enddate"] = _halo_time(until)
    found: dict[int, tuple[datetime, JSON]] = {}
    for record in client.get_all("Tickets", "tickets", params=params, what="closed tickets"):
        number = positive(record.get("id"))
        created = timestamp(record.get("dateoccurred"))
        if number is None or created is None or created < start or (end and created >= end):
            continue
        if is_false(record.get("hasbeenclosed")) or not in_scope(record):
            continue
        if not config.set_ticket_type and positive(record.get("tickettype_id")) is None:
            continue  # no ticket type: no scope to learn it for
        if positive(record.get(f"categoryid_{config.category_field}")) is None:
            continue  # no category: nothing to learn from
        found[number] = (created, record)
        if len(found) >= limit:
            break
    newest = sorted(found.items(), key=lambda item: (item[1][0], item[0]), reverse=True)
    return [(number, record) for number, (_, record) in newest[:limit]]


def leaf_key(path: tuple[LevelValue, ...]) -> str:
    """The taxonomy's key of a leaf (``taxonomy``): the category record's id, after the ticket
    type's id when the type is a level; parent parts of ``Parent>Child`` are not in it."""
    if not path:
        return ""
    if path[0].level == TYPE_LEVEL and len(path) > 1:
        return f"{path[0].id}/{path[-1].id}"
    return path[-1].id


def _halo_time(moment: datetime) -> str:
    return utc_text(moment).removesuffix("Z")
