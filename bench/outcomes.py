"""What the outcome sweep costs: PSA calls and time to read the outcomes of decided tickets, on
each PSA's fake.

Run from the repository root::

    uv run python -m bench.outcomes [--tickets 120] [--json]

Per PSA, the fake holds ``--tickets`` tickets that psatriage decided (an outcome row each, all
due): half carry a category a person set, a third are closed, a tenth deleted. One sweep reads
them (``outcomes.sweep``, with ``max_reads_per_sweep`` = the ticket count and the default
``keep_for_new_tickets`` of half the call window). Reported: tickets read, PSA calls the fake
received (all, and the ticket reads among them), calls per ticket read, why the sweep stopped
(if it did) and the wall time. The fakes answer at once: the time is our own work plus
loopback HTTP.

Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.loop_kit import PSAS, Loop, open_loop

from psatriage import outcomes
from psatriage.domain import Chosen, TicketEvent
from psatriage.psa import adapters
from psatriage.store.tables import DecisionRow, EventState, OutcomeRow, utcnow

TICKET_READ = re.compile(r"(?i)/tickets(/\d+|/query)?$")  # a ticket, a list, a query


def _decided(loop: Loop, psa: str, tickets: int) -> None:
    """Set the tickets up through an adapter of their own: its calls do not count against the
    sweeping adapter's call window (as a technician's work in the PSA would not)."""
    kit = loop.kits[psa]
    tenant = loop.runtime.tenant(psa)
    adapter = adapters()[psa](psa, tenant.connection, loop.runtime.http)
    first = adapter.get_ticket(kit.new_ticket("warm-up", "reads the tree once"))
    leaves = adapter.get_taxonomy(first).active()
    chosen = Chosen(leaves[0], (), adapter.get_taxonomy(first).levels)
    assert kit.close is not None and kit.delete is not None
    for n in range(tickets):
        ticket = kit.new_ticket(f"Printer {n}", "It jams")
        if n % 2:
            adapter.set_category(adapter.get_ticket(ticket), leaves[n % len(leaves)])
        if n % 3 == 0:
            kit.close(ticket)
        if n % 10 == 9:
            kit.delete(ticket)
        event = TicketEvent(psa, ticket, "created", True, f"bench:{ticket}")
        event_id, _ = loop.runtime.ledger.record(event, state=EventState.DONE)
        with loop.runtime.sessions.begin() as session:
            row = DecisionRow(event_id=event_id, tenant=psa, ticket_id=ticket, final=True)
            session.add(row)
            session.flush()
            session.add(
                OutcomeRow(
                    decision_id=row.id, tenant=psa, ticket_id=ticket, decision_outcome="applied",
                    chosen=chosen.to_dict(), chosen_key=chosen.category.key, wrote=True,
                    band="apply", next_check_at=utcnow(),
                )
            )  # fmt: skip


def measure(tickets: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        extra = {"outcomes": {"max_reads_per_sweep": tickets}}
        for loop in open_loop(Path(folder), extra=extra):
            for psa in PSAS:
                _decided(loop, psa, tickets)
                fake = loop.kits[psa].fake
                before = len(fake.requests)
                started = time.perf_counter()
                swept = outcomes.sweep(loop.runtime, psa, force=True)
                elapsed = time.perf_counter() - started
                assert swept is not None
                calls = fake.requests[before:]
                reads = [r for r in calls if TICKET_READ.search(r.path)]
                rows.append(
                    {
                        "psa": psa,
                        "tickets_read": swept.read,
                        "calls": len(calls),
                        "ticket_calls": len(reads),
                        "calls_per_ticket": round(len(calls) / max(1, swept.read), 3),
                        "stopped": swept.stopped,
                        "seconds": round(elapsed, 3),
                        "recorded": swept.recorded,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=120)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = measure(args.tickets)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("psa          read  calls  ticket calls  calls/ticket  seconds  stopped")
    for row in rows:
        cells = (row["psa"], row["tickets_read"], row["calls"], row["ticket_calls"])
        print("{:<12} {:>4} {:>6} {:>13}".format(*cells), end="")
        print(f" {row['calls_per_ticket']:>13} {row['seconds']:>8}  {row['stopped']}")


if __name__ == "__main__":
    main()
