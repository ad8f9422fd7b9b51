"""HaloPSA: what the outcome sweep reads of tickets it decided.

The reference documents no list filter by ticket id, so each ticket is read on its own
(``GET Tickets/{id}``, the read the pipeline makes), within the tenant's call limits:
``hasbeenclosed`` says closed, a 404 that the ticket was deleted. The ticket carries no "last
changed by" in the reference (``agent_id`` is the assigned agent), so who changed the category
is left to the sweep to tell from the category itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psatriage.domain import Ticket, TicketState
from psatriage.errors import NotFound
from psatriage.psa.halopsa.wire import is_true
from psatriage.psa.wire import numeric


def ticket_states(
    ticket_ids: Sequence[str],
    *,
    read: Callable[[int], Mapping[str, Any]],
    as_ticket: Callable[[int, Mapping[str, Any]], Ticket],
) -> dict[str, TicketState]:
    states: dict[str, TicketState] = {}
    for ticket_id in ticket_ids:
        number = numeric(ticket_id, "ticket id", psa="HaloPSA")
        try:
            data = read(number)
        except NotFound:
            continue
        ticket = as_ticket(number, data)
        closed = is_true(data.get("hasbeenclosed"))
        states[ticket.id] = TicketState(ticket.id, ticket.scope, ticket.current, closed=closed)
    return states
