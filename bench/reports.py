"""What the reports cost: the PSA calls and time a facts refresh takes on each PSA's fake, and how
long the three reports take to make from the database.

Run from the repository root::

    uv run python -m bench.reports [--tickets 1000] [--facts 50000] [--json]

1. **Refresh**, per PSA: the fake holds ``--tickets`` tickets closed in the last 30 days (four
   categories, ten companies, one or two time entries each); ``refresh_facts`` reads them and
   their time into a SQLite database. Reported: the calls the fake received (listing and time
   apart), and the wall time. The fakes answer at once, so the time is our own work plus loopback
   HTTP; on a real PSA the calls dominate.
2. **Reports**: ``--facts`` facts over 60 days in a SQLite file; the time to load a 30-day period
   (and the one before) and make each report, best of three.

Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakes.kit import ContractKit
from tests.harness import kit_for

from psatriage.domain import ClosedTicket, LevelValue
from psatriage.http import make_client
from psatriage.psa import adapters
from psatriage.redact import Redactor
from psatriage.reports import build
from psatriage.reports.period import load_period
from psatriage.reports.refresh import refresh_facts
from psatriage.store import db
from psatriage.store.facts import Facts
from psatriage.store.tables import utcnow

PSAS = ("connectwise", "autotask", "halopsa", "kaseya_bms")
TITLES = ("Printer paper jam on floor {n}", "Mailbox full for user {n}", "VPN drops at site {n}")


def _facts_store(folder: Path, name: str) -> Facts:
    engine = db.make_engine(f"sqlite:///{folder / name}")
    db.upgrade(engine)
    return Facts(engine, db.make_sessionmaker(engine))


def _seed(kit: ContractKit, tickets: int, rng: random.Random) -> None:
    assert kit.closed_ticket is not None and kit.add_time is not None
    now = datetime.now(UTC)
    for n in range(tickets):
        closed = now - timedelta(days=rng.uniform(0.1, 29.5))
        category = rng.choice((0, 1, None)) if n % 7 else None
        ticket = kit.closed_ticket(
            TITLES[n % 3].format(n=n % 5), closed - timedelta(hours=5), closed, category, n % 2
        )
        for _ in range(1 + n % 2):
            kit.add_time(ticket, rng.choice((0.25, 0.5, 1.0, 2.0)))


def refresh_cost(kind: str, tickets: int, folder: Path) -> dict[str, Any]:
    kit = kit_for(kind)
    try:
        os.environ.update(kit.env)
        _seed(kit, tickets, random.Random(7))
        adapter_class = adapters()[kind]
        table = dict(kit.connection)
        if "requests_per_window" in adapter_class.Config.model_fields:
            table["requests_per_window"] = 100_000  # the fake has no limit of its own
        config = adapter_class.Config.model_validate(table)
        with make_client() as http:
            adapter = adapter_class("bench", config, http)
            before = len(kit.fake.requests)
            started = time.perf_counter()
            done = refresh_facts(
                adapter,
                _facts_store(folder, f"{kind}.db"),
                Redactor(),
                since=utcnow() - timedelta(days=31),
                until=utcnow(),
            )
            seconds = time.perf_counter() - started
        time_calls = len(kit.fake.requests_to(kit.time_path)) - sum(
            1 for r in kit.fake.requests[:before] if r.path == kit.time_path
        )
        calls = len(kit.fake.requests) - before
        return {
            "psa": kind,
            "tickets": done.tickets,
            "hours_read": done.hours_read,
            "calls": calls,
            "time_calls": time_calls,
            "other_calls": calls - time_calls,
            "seconds": round(seconds, 2),
            "ms_per_ticket": round(1000 * seconds / max(1, done.tickets), 2),
        }
    finally:
        kit.fake.stop()


def report_cost(facts_count: int, folder: Path) -> dict[str, Any]:
    rng = random.Random(11)
    store = _facts_store(folder, "facts.db")
    now = utcnow()
    paths = [("Hardware", "Printer", "Paper jam"), ("Hardware", "Laptop"), ("Software", "Email"),
             ("Network", "VPN"), ("Accounts", "Password"), ()]  # fmt: skip
    tickets = []
    for n in range(facts_count):
        closed = now - timedelta(days=rng.uniform(0, 60))
        path = rng.choice(paths)
        levels = tuple(LevelValue(f"l{i}", str(i), name) for i, name in enumerate(path))
        tickets.append(
            ClosedTicket(
                str(n),
                TITLES[n % 3].format(n=n % 40),
                str(n % 50),
                f"Company {n % 50}",
                closed - timedelta(hours=3),
                closed,
                levels,
            )
        )
    started = time.perf_counter()
    store.record("bench", tickets, {})
    store.set_hours("bench", {t.ticket_id: rng.choice((0.0, 0.25, 0.5, 1.5)) for t in tickets})
    stored = time.perf_counter() - started
    since, until = now - timedelta(days=30), now
    timings: dict[str, float] = {}
    for name, make in (("categories", build.categories), ("automation", build.automation),
                       ("companies", build.companies)):  # fmt: skip
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            make(load_period(store, "bench", "connectwise", since, until))
            best = min(best, time.perf_counter() - started)
        timings[name] = round(best, 3)
    return {"facts": facts_count, "store_seconds": round(stored, 2), "report_seconds": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--facts", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        results = {
            "refresh": [refresh_cost(kind, args.tickets, folder) for kind in PSAS],
            "reports": report_cost(args.facts, folder),
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"refresh of {args.tickets} closed tickets (each with 1-2 time entries), per PSA fake:")
    for row in results["refresh"]:
        print(f"  {row['psa']:<12} {row['calls']:>5} calls ({row['time_calls']} for time, "
              f"{row['other_calls']} other), {row['seconds']:.2f} s, "
              f"{row['ms_per_ticket']:.2f} ms per ticket")  # fmt: skip
    made = results["reports"]
    print(f"{made['facts']} facts stored in {made['store_seconds']:.2f} s; reports of 30 days:")
    for name, seconds in made["report_seconds"].items():
        print(f"  {name:<12} {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
