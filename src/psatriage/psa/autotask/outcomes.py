"""Autotask: what the outcome sweep reads of tickets it decided, many per query.

One ``POST Tickets/query`` per batch whose filter is an ``or`` of ``id eq`` conditions (at most
500 conditions per query, reference 2.5), reading only the category fields, ``completedDate``
(closed: Autotask sets it when the ticket reaches Complete) and the last activity:
``lastActivityResourceID`` and ``lastActivityDate``. [UNSURE] those two fields are not in the
reference's field list; they are read where present and left empty otherwise. A ticket missing
from the answer was deleted (or merged away).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psatriage.domain import LevelValue, TicketState
from psatriage.psa.autotask.client import AutotaskClient
from psatriage.psa.autotask.picklists import SCOPE
from psatriage.psa.wire import lower_keys, numeric, record_id, timestamp

BATCH = 200  # ids per query (Autotask allows 500 OR conditions)


def ticket_states(
    client: AutotaskClient,
    ticket_ids: Sequence[str],
    *,
    facets: Sequence[str],
    current: Callable[[Mapping[str, Any]], tuple[LevelValue, ...]],
    ours: str | None,
) -> dict[str, TicketState]:
    """``current`` reads the category levels of a record (lower-case keys); ``ours`` is our API
    user's resource id, where known."""
    numbers = [numeric(t, "ticket id", psa="Autotask") for t in ticket_ids]
    states: dict[str, TicketState] = {}
    for start in range(0, len(numbers), BATCH):
        batch = numbers[start : start + BATCH]
        records = client.query(
            "Tickets",
            [{"op": "or", "items": [{"op": "eq", "field": "id", "value": n} for n in batch]}],
            include=(
                "id",
                "issueType",
                "subIssueType",
                *facets,
                "completedDate",
                "lastActivityResourceID",
                "lastActivityDate",
            ),
            what=f"{len(batch)} tickets",
        )
        for record in records:
            entry = lower_keys(record)
            ticket_id = record_id(entry.get("id"))
            if ticket_id is None:
                continue
            changer = record_id(entry.get("lastactivityresourceid"))
            states[ticket_id] = TicketState(
                ticket_id=ticket_id,
                scope=SCOPE,
                current=current(entry),
                closed=entry.get("completeddate") not in (None, ""),
                changed_by=changer,
                changed_by_us=(changer == ours) if changer is not None and ours else None,
                changed_at=timestamp(entry.get("lastactivitydate")),
            )
    return states
