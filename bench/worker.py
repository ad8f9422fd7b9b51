"""Worker CPU per ticket: one ticket's claim and processing in this process, the fakes in another.

Run from the repository root::

    uv run python -m bench.worker [--tickets N] [--runs R] [--threads K] [--profile FILE] [--json]

The fakes (``FakeConnectWise``, ``FakeOpenAI``, zero latency) run in a child process, so they
share no interpreter lock with the code measured. This process builds the service's runtime as
``psatriage serve`` does (SQLite in a temporary folder, the harness's tenant, logging at
warning), records N signed "added" callbacks in the ledger as the webhook path does (verified,
parsed, with the ticket's snapshot), works off five warm-up tickets, then claims and processes
the N tickets one at a time on this thread: ``Ledger.claim_turns`` for one event, then
``jobs.run_claim``, exactly what a worker process's dispatcher and worker threads do per ticket.

``--threads K`` processes each run's tickets on K threads of this process instead, each claiming
and processing one ticket at a time, as a worker process's threads do: what their turns at the
interpreter cost a ticket (``docs/PERFORMANCE.md``, round 12).

Reported: this process's CPU time per ticket (``time.process_time``: user + system of its
threads; the fakes and their HTTP servers run in the child, so their CPU is not in it; rounds
before 12 took this thread's, ``time.thread_time``) and the wall time, per run, and the median
over the runs; and the database statements and commits per ticket (counted by listeners
on the engine over the measured runs: the claim's included, each commit a writing turn when it
follows a write). On a shared machine the CPU time stretches with the load much less than the
wall time, but it does stretch (caches, frequency): compare two commits in the same session, one
run after the other. ``--profile FILE`` writes a cProfile of the last run, timed by this process's
CPU time (what the run measures; waits on the fakes are left out).
Nothing here asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import event
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import FakeOpenAI
from tests.harness import TENANT, Harness

from bench.pipeline import TICKETS, _load
from psatriage import jobs
from psatriage.logging import configure_logging
from psatriage.runtime import Runtime
from psatriage.store.tables import EventState

WARM_UP = 5


def _fakes(pipe: Connection, count: int) -> None:
    """The child process: start the fakes, make ``count`` tickets and their callbacks, hand
    them over, and serve until told to stop."""
    with FakeConnectWise() as cw, FakeOpenAI() as llm:
        deliveries = []
        for index in range(count):
            summary, description = TICKETS[index % len(TICKETS)]
            deliveries.append(cw.callback(cw.add_ticket(summary, description)))
        pipe.send((cw.connection_config(), cw.secret_env(), llm.url, deliveries))
        pipe.recv()  # the parent is done


class _Remote:
    """What ``Harness`` needs of the fakes, from the child process."""

    def __init__(self, connection: dict[str, Any], env: dict[str, str], url: str) -> None:
        self._connection, self._env, self.url = connection, env, url

    def connection_config(self) -> dict[str, Any]:
        return self._connection

    def secret_env(self) -> dict[str, str]:
        return self._env


def one(runtime: Runtime) -> None:
    """Claim one ticket's event and process it, as a worker thread does."""
    (claim,) = runtime.ledger.claim_turns([(TENANT, 1)], lease_seconds=60)
    state = jobs.run_claim(runtime, claim)
    if state is not EventState.DONE:
        raise RuntimeError(f"event {claim.id} ended {state.value}")


def measure(tickets: int, runs: int, profile: Path | None, threads: int = 1) -> dict[str, Any]:
    configure_logging(level="warning", json=True)
    mine, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_fakes, args=(theirs, WARM_UP + tickets * runs))
    child.start()
    results: list[dict[str, float]] = []
    try:
        connection, env, url, deliveries = mine.recv()
        remote = _Remote(connection, env, url)
        with tempfile.TemporaryDirectory() as folder:
            harness = Harness(cw=remote, llm=remote, root=Path(folder))  # type: ignore[arg-type]
            runtime = harness.runtime()
            adapter = runtime.adapter(TENANT)
            seen, measured, counting = Counter[str](), Counter[str](), threading.Lock()

            def count(what: str) -> None:  # from every worker thread with --threads
                with counting:
                    seen[what] += 1

            event.listen(runtime.engine, "before_cursor_execute", lambda *_: count("statements"))
            event.listen(runtime.engine, "commit", lambda *_: count("commits"))

            def record(delivery: tuple[bytes, dict[str, str]]) -> int:
                body, headers = delivery
                adapter.verify({k.lower(): v for k, v in headers.items()}, body)
                event = adapter.parse(body)
                assert event is not None
                return runtime.ledger.record(event, state=EventState.RECEIVED)[0]

            try:
                for delivery in deliveries[:WARM_UP]:
                    jobs.process_event(runtime, record(delivery))
                for run in range(runs):
                    batch = deliveries[WARM_UP + run * tickets : WARM_UP + (run + 1) * tickets]
                    for delivery in batch:
                        record(delivery)
                    last = profile and run == runs - 1
                    profiler = cProfile.Profile(time.process_time) if last else None
                    cpu, wall, before = time.process_time(), time.perf_counter(), seen.copy()
                    if profiler:
                        profiler.enable()
                    if threads == 1:
                        for _ in batch:
                            one(runtime)
                    else:
                        with ThreadPoolExecutor(threads) as pool:
                            list(pool.map(lambda _: one(runtime), batch))
                    measured += seen - before
                    if profiler:
                        profiler.disable()
                        profiler.dump_stats(str(profile))
                    results.append(
                        {
                            "cpu_ms_per_ticket": (time.process_time() - cpu) / tickets * 1000,
                            "wall_ms_per_ticket": (time.perf_counter() - wall) / tickets * 1000,
                        }
                    )
            finally:
                runtime.close()
    finally:
        mine.send("done")
        child.join(timeout=30)
    return {
        "tickets": tickets,
        "threads": threads,
        "runs": results,
        "cpu_ms_per_ticket": statistics.median(r["cpu_ms_per_ticket"] for r in results),
        "wall_ms_per_ticket": statistics.median(r["wall_ms_per_ticket"] for r in results),
        "statements_per_ticket": measured["statements"] / (tickets * runs),
        "commits_per_ticket": measured["commits"] / (tickets * runs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=300, help="tickets per run (default 300)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is kept")
    parser.add_argument(
        "--threads", type=int, default=1, help="worker threads sharing this process (default 1)"
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of the last run here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    load_before = _load()
    result = measure(args.tickets, args.runs, args.profile, args.threads)
    result["load"] = {"before": load_before, "after": _load()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for index, run in enumerate(result["runs"], 1):
        print(
            f"run {index}: {run['cpu_ms_per_ticket']:.2f} ms CPU, "
            f"{run['wall_ms_per_ticket']:.2f} ms wall per ticket"
        )
    print(
        f"median of {args.runs} × {args.tickets} tickets on {args.threads} thread(s): "
        f"{result['cpu_ms_per_ticket']:.2f} ms of worker CPU per ticket "
        f"({result['wall_ms_per_ticket']:.2f} ms wall); load "
        f"{result['load']['before']} → {result['load']['after']}"
    )
    print(
        f"database: {result['statements_per_ticket']:.2f} statements and "
        f"{result['commits_per_ticket']:.2f} commits per ticket, the claim's included"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
