"""What the shared PSA call limits cost a call when many threads of several processes make calls.

Run from the repository root::

    uv run python -m bench.limits [--store sqlite|redis|postgresql|memory] [--processes N]
        [--threads T] [--seconds S] [--json]

Each of N processes (default 2, as ``serve`` starts) runs T threads (default 12) that make "PSA
calls" through one ``CallLimits`` as an adapter does: a window (100,000 a minute, as the bench
tenants' fakes open it) and a cap on calls in flight per endpoint (32), both in the store every
process shares (2 × 12 threads stay within the cap, so what is measured is the store, not waits
for a slot; with more threads than the cap, calls wait for one by design). A call is 0.3 ms of
CPU under the interpreter lock, then 20 ms of waiting for the answer, so the limiter meets the
contention of a busy worker process. Reported per store: calls a second, and the time a call
spends in the limiter (taking its slot and counting it, and giving the slot back): p50, p99 and
max, pooled over the processes. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psatriage.shared.limits import CallLimits, limits_for, share_limits

CPU_SECONDS = 0.0003
WAIT_SECONDS = 0.02


def _spin(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def _process(url: str, threads: int, seconds: float, start: Any, out: Any) -> None:
    store = limits_for(url) if url != "memory" else None
    share_limits(store)
    limits = CallLimits(
        per_window=100_000, window_seconds=60, concurrent_per_endpoint=32, scope="bench:acme"
    )
    spent: list[float] = []
    lock = threading.Lock()
    start.wait()
    deadline = time.monotonic() + seconds

    def work() -> None:
        mine: list[float] = []
        while time.monotonic() < deadline:
            _spin(CPU_SECONDS)
            entered = time.perf_counter()
            with limits.call("GET tickets/{id}"):
                inside = time.perf_counter()
                time.sleep(WAIT_SECONDS)
                leaving = time.perf_counter()
            mine.append((inside - entered) + (time.perf_counter() - leaving))
        with lock:
            spent.extend(mine)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if store is not None:
        store.close()
    out.put(spent)


def run(store: str, processes: int, threads: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        url = {
            "sqlite": f"sqlite:///{Path(folder) / 'queue.db'}",
            "redis": "redis://127.0.0.1:6379/9",
            "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
            "memory": "memory",
        }[store]
        spawn = multiprocessing.get_context("spawn")
        start, out = spawn.Barrier(processes), spawn.Queue()
        children = [
            spawn.Process(target=_process, args=(url, threads, seconds, start, out))
            for _ in range(processes)
        ]
        for child in children:
            child.start()
        spent: list[float] = []
        for _ in children:
            spent.extend(out.get(timeout=seconds + 120))
        for child in children:
            child.join()
    spent.sort()
    return {
        "store": store,
        "processes": processes,
        "threads": threads,
        "calls_per_s": len(spent) / seconds,
        "limiter_ms": {
            "p50": statistics.median(spent) * 1000,
            "p99": spent[int(len(spent) * 0.99)] * 1000,
            "max": spent[-1] * 1000,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis", "postgresql", "memory"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    stores = [args.store] if args.store else ["sqlite", "memory"]
    results = [run(s, args.processes, args.threads, args.seconds) for s in stores]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        ms = result["limiter_ms"]
        print(
            f"{result['store']:>10}: {result['calls_per_s']:7.0f} calls/s; in the limiter "
            f"p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms, max {ms['max']:.1f} ms "
            f"({result['processes']} processes x {result['threads']} threads)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
