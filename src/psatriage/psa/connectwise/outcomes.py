"""ConnectWise: what the outcome sweep reads of tickets it decided, many per call.

One ``GET service/tickets?conditions=id in (...)`` per batch, only the fields needed: the
category levels, ``closedFlag``, the board, and ``_info`` (``updatedBy``, the member who last
saved the ticket, and ``lastUpdated``). A ticket missing from the answer was deleted (or merged
away). The API member's own identifier is not in the connection table, so whether the last
change was ours is left unsaid (the sweep tells from the category itself).
"""

from __future__ import annotations

from collections.abc import Sequence

from psatriage.domain import TicketState
from psatriage.psa.connectwise.client import ConnectWiseClient
from psatriage.psa.connectwise.taxonomy import current_levels
from psatriage.psa.wire import lower_keys, numeric, record_id, timestamp

BATCH = 50  # ids per "id in (...)" condition: a short URL, one page


def ticket_states(client: ConnectWiseClient, ticket_ids: Sequence[str]) -> dict[str, TicketState]:
    numbers = [numeric(t, "ticket id", psa="ConnectWise") for t in ticket_ids]
    states: dict[str, TicketState] = {}
    for start in range(0, len(numbers), BATCH):
        batch = numbers[start : start + BATCH]
        records = client.get_all(
            "service/tickets",
            params={
                "conditions": f"id in ({','.join(str(n) for n in batch)})",
                "fields": "id,board,type,subType,item,closedFlag,_info",
            },
            what=f"{len(batch)} tickets",
        )
        for record in records:
            entity = lower_keys(record)
            ticket_id = record_id(entity.get("id"))
            if ticket_id is None:
                continue
            info = lower_keys(entity.get("_info"))
            updated_by = info.get("updatedby")
            states[ticket_id] = TicketState(
                ticket_id=ticket_id,
                scope=str(lower_keys(entity.get("board")).get("id") or ""),
                current=current_levels(entity),
                closed=entity.get("closedflag") is True,
                changed_by=str(updated_by) if updated_by else None,
                changed_at=timestamp(info.get("lastupdated")),
            )
    return states
