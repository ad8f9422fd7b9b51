"""Autotask's ticket queries for polling and for training: new tickets, and completed categorized
ones (``Tickets`` queries read through every page; Autotask returns them in id order and cannot
sort them, so the order is made here)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from psatriage.domain import NewTicket
from psatriage.psa.autotask.client import AutotaskClient
from psatriage.psa.wire import JSON, lower_keys, record_id, timestamp, utc_text


def new_tickets(client: AutotaskClient, since: datetime) -> list[NewTicket]:
    """Tickets created at or after ``since`` (naive means UTC), oldest first."""
    records = client.query(
        "Tickets",
        [{"op": "gte", "field": "createDate", "value": utc_text(since, millis=True)}],
        include=("id", "createDate"),
        what="new tickets",
    )
    found = []
    for record in records:
        entry = lower_keys(record)
        ticket_id, created = record_id(entry.get("id")), timestamp(entry.get("createdate"))
        if ticket_id is not None and created is not None:
            found.append(NewTicket(ticket_id, created))
    return sorted(found, key=lambda t: (t.created_at, int(t.ticket_id)))


def completed(
    client: AutotaskClient,
    facets: Iterable[str],
    since: datetime,
    limit: int,
    until: datetime | None = None,
) -> list[tuple[int, JSON]]:
    """The newest ``limit`` completed tickets created at or after ``since`` with an issue type, as
    ``(id, record)`` with lower-case keys, newest first.

    One query: ``createDate gte`` (and ``lt`` ``until``), ``completedDate exist``, ``issueType
    exist``. [UNSURE]
    "closed" is read as "has a ``completedDate``" (Autotask sets it when a ticket reaches the
    Complete status).
    """
    when = since if since.tzinfo else since.replace(tzinfo=UTC)
    end = None if until is None else until if until.tzinfo else until.replace(tzinfo=UTC)
    conditions: list[JSON] = [
        {"op": "gte", "field": "createDate", "value": utc_text(since, millis=True)},
        {"op": "exist", "field": "completedDate"},
        {"op": "exist", "field": "issueType"},
    ]
    if until is not None:
        conditions.append(
            {"op": "lt", "field": "createDate", "value": utc_text(until, millis=True)}
        )
    records = client.query(
        "Tickets",
        conditions,
        include=(
            "id",
            "title",
            "description",
            "companyID",
            "createDate",
            "completedDate",
            "issueType",
            "subIssueType",
            "priority",
            "queueID",
            *facets,
        ),
        what="completed tickets",
    )
    found: list[tuple[datetime, int, JSON]] = []
    for record in records:
        entry = lower_keys(record)
        ticket_id, created = record_id(entry.get("id")), timestamp(entry.get("createdate"))
        if ticket_id is None or created is None or created < when or (end and created >= end):
            continue
        categorized = record_id(entry.get("issuetype")) is not None
        if entry.get("completeddate") in (None, "") or not categorized:
            continue  # still open, or never categorized: nothing to learn from
        found.append((created, int(ticket_id), entry))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [(number, entry) for _, number, entry in found[:limit]]
