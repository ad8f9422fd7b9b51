"""Kaseya BMS: what the outcome sweep reads of tickets it decided.

The spec offers no list filter by ticket id, so each ticket is read on its own
(``GET servicedesk/tickets/{id}``, the read the pipeline makes) through the per-endpoint
limiter; the ticket statuses are looked up once per sweep to tell a closed one (by name, as
for training: BMS publishes no closed flag). ``ModifiedBy`` / ``ModifiedOn`` say who last
changed the ticket; the API user's own id is not in the connection table, so whether that was us
is left unsaid. A 404 means the ticket was deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import tzinfo
from typing import Any

from psatriage.domain import Ticket, TicketState
from psatriage.errors import NotFound
from psatriage.psa.wire import numeric, record_id, timestamp


def ticket_states(
    ticket_ids: Sequence[str],
    *,
    read: Callable[[int], Mapping[str, Any]],
    as_ticket: Callable[[int, Mapping[str, Any]], Ticket],
    closed_statuses: Callable[[], Collection[str]],
    zone: tzinfo,
) -> dict[str, TicketState]:
    states: dict[str, TicketState] = {}
    closed: Collection[str] | None = None
    for ticket_id in ticket_ids:
        number = numeric(ticket_id, "ticket id", psa="Kaseya BMS")
        try:
            data = read(number)
        except NotFound:
            continue
        if closed is None:
            closed = closed_statuses()
        ticket = as_ticket(number, data)
        states[ticket.id] = TicketState(
            ticket_id=ticket.id,
            scope=ticket.scope,
            current=ticket.current,
            closed=str(data.get("statusid")) in closed,
            changed_by=record_id(data.get("modifiedby")),
            changed_at=timestamp(data.get("modifiedon"), zone),
        )
    return states
