"""Pipeline benchmark: tickets through a real ``psatriage serve``, fakes on loopback, in one run.

Run from the repository root::

    uv run python -m bench.pipeline [--tickets N] [--concurrency C] [--model-latency S] [--json]

Every figure is a ratio against what the machine allows, measured in the same run:

overhead     N tickets sent one at a time (no queueing) through a service with zero-latency fakes.
             Per ticket: from posting the webhook to the note arriving at the fake PSA. The floor
             is the same HTTP calls replayed straight at the fakes (the webhook, the PSA reads and
             writes and the model call, exactly as the service sent them): overhead = end to end
             minus the floor's median.
throughput   a burst of N tickets through a service with C workers and a model that answers in
             S seconds: tickets per second (first webhook posted to last note) against C / S,
             and where the workers' time went (model, ramp, gaps, tail).
             A worker is a turn at the model: its time is split by the model calls' arrivals and
             answers at the fake. Each wave (the calls ranked by arrival, ``C`` at a time) is
             reported by its first and last call, and each wave's turn by the machine's busy
             cores meanwhile (``/proc/stat`` every 20 ms; Round 13).
             With ``--runs R`` the burst and the paced webhooks after it run R times, each on a
             fresh service: the run with the median throughput and the run with the median ack
             p99 are reported, with every run's figures beside them (one run swings by several
             points on a busy 2-core machine).
PSA calls    requests the fake PSA received per ticket once the signing key and the taxonomy are
             cached (after warm-up tickets), by method and path, in both runs above.
ack          webhook acknowledgements timed by a load generator in a second process (threads,
             keep-alive connections, open loop paced at --ack-rate for --ack-seconds): against the
             throughput run's service while its workers process what it sends, then against a
             ``serve --no-worker`` (the web path alone).
floor        (``--only floor``) the throughput run's burst through ``bench.stand_in``, which makes
             the HTTP calls of a ticket the service made and nothing else, in the service's shape
             (threads in worker processes), with the standard library's HTTP client, with the
             service's (httpx, the openai SDK) on their default transports and on the lean one,
             and mixed: what the machine, the fakes and the clients allow.
fairness     (``--only fairness``) a quiet tenant's tickets, one at a time, alone and while another
             tenant floods: its webhook-to-note latency, also in model latencies.
scale        (``--processes N``) 1..N ``psatriage worker`` processes beside ``serve --no-worker``
             on a fresh PostgreSQL database and a Redis queue: throughput each, against one.

The fakes are ``tests.fakes``, in this process; each service is a subprocess with the default
settings (SQLite in a temporary folder) unless ``--set PSATRIAGE_X=VALUE`` says otherwise. The
1-minute load average before and after is reported: other work on the machine skews every figure.
Nothing here asserts: ``docs/PERFORMANCE.md`` holds the numbers of one run and the targets.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from rich.console import Console
from rich.table import Table
from tests.fakes.base import FakeServer, Request, Response
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import FakeOpenAI, is_probe
from tests.harness import TENANT, Harness, to_toml

from psatriage.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TICKETS = (
    ("Printer on 3rd floor", "My printer has a paper jam again"),
    ("Laptop is dead", "My laptop will not power on after the update"),
    ("VPN keeps dropping", "The VPN disconnects every few minutes when I work from home"),
    ("New phone", "Please help with the email setup on my new phone"),
)
TARGETS = {
    "overhead_p50_ms": 10.0,
    "overhead_p99_ms": 30.0,
    "throughput_ratio": 0.90,
    "writes_per_ticket": 2.0,
    "reads_per_ticket": 1.0,
    "ack_p99_ms": 20.0,
    "ack_rate": 1000.0,
}
PSATRIAGE = [sys.executable, "-m", "psatriage"]  # the command line of the service under test
LOADGEN_THREADS = 64
BURST_POSTERS = 32
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}
_ID = re.compile(r"/\d+(?=/|$)")
_API_PREFIX = re.compile(r"^/[^/]+/apis/3\.0")


class BenchError(RuntimeError):
    """The run could not measure what it set out to (a service that did not start, lost tickets)."""


# -- fakes ----------------------------------------------------------------------------------------


class TimedConnectWise(FakeConnectWise):
    """FakeConnectWise that timestamps the first note each ticket receives, and wakes waiters."""

    def __init__(self) -> None:
        super().__init__()
        self.noted: dict[int, float] = {}
        self._arrived = threading.Condition()

    def _create_note(self, request: Request) -> Response:
        response = super()._create_note(request)
        if response.status == 201:
            with self._arrived:
                self.noted.setdefault(int(request.params["ticket"]), time.perf_counter())
                self._arrived.notify_all()
        return response

    def wait_notes(self, ticket_ids: Sequence[int], timeout: float) -> dict[int, float]:
        """Arrival times of the tickets' notes; raises BenchError if some are missing at timeout."""
        deadline = time.perf_counter() + timeout
        with self._arrived:
            while True:
                missing = sum(1 for t in ticket_ids if t not in self.noted)
                if not missing:
                    return {t: self.noted[t] for t in ticket_ids}
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise BenchError(
                        f"{missing} of {len(ticket_ids)} tickets got no note in {timeout:.0f} s"
                    )
                self._arrived.wait(remaining)


class TimedOpenAI(FakeOpenAI):
    """FakeOpenAI that times each chat call (not the capability probes): when it arrived and when
    its answer was ready, in ``perf_counter`` time (one clock for every process of the
    machine)."""

    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.timed: list[tuple[float, float]] = []

    def _chat(self, request: Request) -> Response:
        arrived = time.perf_counter()
        response = super()._chat(request)
        if not is_probe(request.json()):
            with self._lock:
                self.timed.append((arrived, time.perf_counter()))
        return response


class Sink(FakeServer):
    """Answers a webhook POST with 202 and does nothing: the webhook's share of the floor."""

    def __init__(self) -> None:
        super().__init__()
        self.route("POST", r"/webhooks/(?P<tenant>[^/]+)", lambda r: Response(202, {"ok": True}))


# -- the service ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Service:
    """A running ``psatriage serve`` (and the worker processes started beside it)."""

    url: str
    pid: int
    workers: tuple[int, ...] = ()  # the worker processes started beside it
    processes: int = 0  # the worker processes working for it (its own, or those beside it)

    def cpu(self) -> float:
        """CPU seconds of the web process, its worker processes and any started beside it."""
        return sum(tree_cpu_seconds(pid) for pid in (self.pid, *self.workers))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used; NaN without Linux /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BusyCores:
    """The machine's busy cores over time, from ``/proc/stat`` every ``interval`` seconds in a
    thread (nothing without Linux ``/proc``): ``samples`` of ``(perf_counter, busy cores since the
    last sample)``."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BusyCores:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = _cpu_ticks()
        while last is not None and not self._stop.wait(self.interval):
            now = _cpu_ticks()
            if now is None:
                return
            total, idle = now[0] - last[0], now[1] - last[1]
            if total > 0:
                busy = (total - idle) / total * (os.cpu_count() or 1)
                self.samples.append((time.perf_counter(), busy))
            last = now

    def mean(self, start: float, end: float) -> float:
        """Mean busy cores over the samples that end in ``(start, end]``; NaN if none."""
        inside = [busy for at, busy in self.samples if start < at <= end]
        return sum(inside) / len(inside) if inside else math.nan


def _cpu_ticks() -> tuple[int, int] | None:
    """All the machine's CPU ticks and its idle ones (idle and I/O wait), or None."""
    try:
        with Path("/proc/stat").open(encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields), fields[3] + fields[4]


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its child processes that are running (``serve``'s workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu_seconds(current)
        todo += children.get(current, [])
    return total


def write_tenants(harness: Harness, tenants: Sequence[str]) -> Path:
    """The tenants file: the harness's tenant under each name (all on the same fakes). The fake
    PSA has no limits, so the client-side cap on calls in flight per endpoint is opened to its
    maximum (32; the default 4 is a guess for a real ConnectWise)."""
    tenant = {
        **harness.tenant,
        "connection": {**harness.tenant["connection"], "concurrent_per_endpoint": 32},
        "classifier": {**harness.tenant["classifier"], "timeout_seconds": 30},
    }
    path = harness.root / "psatriage.toml"
    path.write_text(to_toml({"tenants": dict.fromkeys(tenants, tenant)}), encoding="utf-8")
    return path


@contextmanager
def serve(
    harness: Harness,
    *,
    workers: int | None,
    settings: dict[str, str],
    tenants: Sequence[str] = (TENANT,),
    worker_processes: int = 0,
) -> Iterator[Service]:
    """A real ``psatriage serve`` for the tenants, stopped on exit.

    ``workers``: tickets in flight at once (None: the default; 0: ``--no-worker``), shared out
    over the worker processes ``serve`` starts (PSATRIAGE_WORKER_PROCESSES, ``auto`` by default:
    one per core); with ``worker_processes``, ``psatriage worker`` processes started beside a
    ``--no-worker`` web process (the scale-out shape), each with ``workers`` workers.
    """
    config = write_tenants(harness, tenants)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSATRIAGE_")}
    env |= harness.env | {
        "PSATRIAGE_CONFIG": str(config),
        "PSATRIAGE_DATA_DIR": str(harness.root / "data"),
        "PSATRIAGE_LOG_FORMAT": "json",
        "PSATRIAGE_LOG_LEVEL": "warning",
    }
    env |= settings
    web_only = workers == 0 or worker_processes > 0
    processes = worker_processes or (0 if web_only else serve_processes(env))
    if workers:
        per_process = workers if worker_processes else math.ceil(workers / processes)
        env["PSATRIAGE_WORKERS"] = str(per_process)
    log_path = harness.root / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*PSATRIAGE, "serve", "--port", str(port), *(["--no-worker"] if web_only else [])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = [process]
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, log_path)  # migrated: the workers may start now
            started += [
                subprocess.Popen([*PSATRIAGE, "worker"], env=env, stdout=log, stderr=log)
                for _ in range(worker_processes)
            ]
            yield Service(url, process.pid, tuple(p.pid for p in started[1:]), processes)
        finally:
            for running in started:
                running.terminate()
            for running in started:
                try:
                    running.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    running.kill()
                    running.wait()


def serve_processes(env: dict[str, str]) -> int:
    """How many worker processes ``psatriage serve`` starts with this environment (at least
    one: a burst needs workers)."""
    settings = Settings(
        worker_processes=env.get("PSATRIAGE_WORKER_PROCESSES", "auto"),
        queue_url=env.get("PSATRIAGE_QUEUE_URL", ""),
    )
    return max(1, settings.worker_process_count)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise BenchError(f"{url} did not become ready:\n{tail}")
        time.sleep(0.1)


def _wait_event(client: httpx.Client, url: str, event_id: int, timeout: float = 10) -> str:
    """Poll the event until its worker has finished it (not timed): its final state."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        state = str(client.get(f"{url}/api/events/{event_id}").json()["state"])
        if state not in {"received", "processing"}:
            return state
        time.sleep(0.002)
    raise BenchError(f"event {event_id} was not finished after {timeout:.0f} s")


def _new_ticket(cw: FakeConnectWise, index: int) -> int:
    summary, description = TICKETS[index % len(TICKETS)]
    return cw.add_ticket(summary, description)


def _post(client: httpx.Client, url: str, delivery: tuple[bytes, dict[str, str]]) -> httpx.Response:
    body, headers = delivery
    return client.post(f"{url}/webhooks/{TENANT}", content=body, headers=headers)


def _send_one(
    cw: TimedConnectWise, client: httpx.Client, url: str, index: int, tenant: str = TENANT
) -> int:
    """One ticket through the service, waiting for its note and for its event to finish (the
    first waits for the worker processes to start too)."""
    ticket = _new_ticket(cw, index)
    body, headers = cw.callback(ticket)
    response = client.post(f"{url}/webhooks/{tenant}", content=body, headers=headers)
    if response.status_code != 202:
        raise BenchError(f"webhook answered {response.status_code}: {response.text}")
    cw.wait_notes([ticket], timeout=120)
    _wait_event(client, url, int(response.json()["event_id"]), timeout=60)
    return ticket


# -- measurements ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation between closest ranks)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {"p50": pct(values, 50) * 1000, "p99": pct(values, 99) * 1000}


def _call_name(request: Request) -> str:
    path = _ID.sub("/{id}", _API_PREFIX.sub("", request.path))
    return f"{request.method} {path}"


def psa_calls(requests: Sequence[Request], tickets: int) -> dict[str, Any]:
    """Reads (GET) and writes (anything else) per ticket, and per method and path."""
    by_call = Counter(_call_name(r) for r in requests)
    reads = sum(1 for r in requests if r.method == "GET")
    return {
        "reads": reads / tickets,
        "writes": (len(requests) - reads) / tickets,
        "by_call": {name: count / tickets for name, count in sorted(by_call.items())},
    }


def overhead_run(root: Path, tickets: int, settings: dict[str, str]) -> dict[str, Any]:
    """Sequential tickets, zero-latency fakes: end to end against the floor of raw round trips.

    Each ticket through the service is followed by one floor sample, so both see the same
    machine (other work on it moves them together).
    """
    with TimedConnectWise() as cw, FakeOpenAI() as llm, Sink() as sink:
        harness = Harness(cw=cw, llm=llm, root=root)
        with (
            serve(harness, workers=None, settings=settings) as service,
            httpx.Client(timeout=30) as client,
        ):
            url = service.url
            for index in range(3):  # signing key, codebase, taxonomy, connection pools
                last = _send_one(cw, client, url, index)
            servers = {"cw": cw.url, "llm": llm.url, "sink": sink.url}
            plan = _replay_plan(cw, llm, last)
            cw_mark, llm_mark = len(cw.requests), len(llm.requests)
            end_to_end, acks, floor = [], [], []
            for index in range(tickets):
                ticket = _new_ticket(cw, index)
                delivery = cw.callback(ticket)
                started = time.perf_counter()
                response = _post(client, url, delivery)
                acks.append(time.perf_counter() - started)
                if response.status_code != 202:
                    raise BenchError(f"webhook answered {response.status_code}: {response.text}")
                arrived = cw.wait_notes([ticket], timeout=10)[ticket]
                end_to_end.append(arrived - started)
                _wait_event(client, url, int(response.json()["event_id"]))
                floor.append(_floor_sample(cw, servers, plan, client, delivery))
            calls = psa_calls(_not_floor(cw.requests[cw_mark:]), tickets)
            calls["model"] = len(_not_floor(llm.requests[llm_mark:])) / tickets
    typical = pct(floor, 50)
    overhead = [t - typical for t in end_to_end]
    return {
        "workers": int(settings.get("PSATRIAGE_WORKERS", Settings.model_fields["workers"].default)),
        "tickets": tickets,
        "floor_calls": [f"{r.method} {_call_name(r).split(' ', 1)[1]}" for _, r in plan],
        "floor_ms": _ms(floor),
        "end_to_end_ms": _ms(end_to_end),
        "overhead_ms": _ms(overhead),
        "ratio_p50": pct(end_to_end, 50) / typical,
        "ratio_p99": pct(end_to_end, 99) / typical,
        "ack_ms": _ms(acks),
        "psa_calls": calls,
    }


_FLOOR_HEADER = "x-bench-floor"


def _not_floor(requests: Sequence[Request]) -> list[Request]:
    return [r for r in requests if _FLOOR_HEADER not in r.headers]


def _replay_plan(cw: FakeConnectWise, llm: FakeOpenAI, ticket: int) -> list[tuple[str, Request]]:
    """The HTTP calls one ticket needed, as the service sent them: (which server, request).

    The webhook comes first (its body is given at replay time), then the PSA reads, the model
    call and the PSA writes of ``ticket``.
    """
    webhook = Request("POST", f"/webhooks/{TENANT}", {}, {}, b"")
    mine = re.compile(rf"/service/tickets/{ticket}(/|$)")
    psa = [r for r in cw.requests if mine.search(r.path)]
    chat = [r for r in llm.requests if r.path.endswith("/chat/completions")][-1:]
    return [
        ("sink", webhook),
        *(("cw", r) for r in psa if r.method == "GET"),
        *(("llm", r) for r in chat),
        *(("cw", r) for r in psa if r.method != "GET"),
    ]


def _floor_sample(
    cw: FakeConnectWise,
    servers: dict[str, str],
    plan: list[tuple[str, Request]],
    client: httpx.Client,
    delivery: tuple[bytes, dict[str, str]],
) -> float:
    """Seconds to replay the plan straight at the fakes, for a fresh ticket."""
    ticket = _new_ticket(cw, 0)
    prepared = []
    for server, request in plan:
        path = re.sub(r"/service/tickets/\d+", f"/service/tickets/{ticket}", request.path)
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_HEADERS}
        body = request.body
        if server == "sink":
            body, headers = delivery[0], dict(delivery[1])
        headers[_FLOOR_HEADER] = "1"
        prepared.append((request.method, servers[server] + path, request.query, body, headers))
    started = time.perf_counter()
    for method, url, query, body, headers in prepared:
        response = client.request(method, url, params=query, content=body, headers=headers)
        if response.status_code >= 300:
            raise BenchError(f"floor call {method} {url} answered {response.status_code}")
    return time.perf_counter() - started


def throughput_run(
    root: Path,
    tickets: int,
    concurrency: int,
    latency: float,
    ack: tuple[float, float],
    settings: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A burst of tickets with a slow model, then the paced webhook load on the same service."""
    with TimedConnectWise() as cw, TimedOpenAI(latency=latency) as llm:
        harness = Harness(cw=cw, llm=llm, root=root)
        with (
            serve(harness, workers=concurrency, settings=settings) as service,
            httpx.Client(timeout=30) as client,
        ):
            _send_one(cw, client, service.url, 0)  # signing key, codebase, taxonomy
            throughput = burst_run(cw, llm, service, tickets, concurrency, latency)
            paced = ack_run(cw, service, rate=ack[0], seconds=ack[1])
            paced["workers"] = concurrency
    return throughput, paced


def median_runs(
    runs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Of several throughput runs: the run with the median throughput and the run with the
    median ack p99 (the lower middle of an even count), each with every run's figures in
    ``runs``."""
    every = [
        {
            "ratio": burst["ratio"],
            "service_cpu_ms_per_ticket": burst["service_cpu_ms_per_ticket"],
            "ack_p99_ms": paced["ack_ms"]["p99"],
            "ack_rate_reached": paced["rate_reached"],
        }
        for burst, paced in runs
    ]
    middle = (len(runs) - 1) // 2
    by_ratio = sorted(range(len(runs)), key=lambda i: runs[i][0]["ratio"])
    by_ack = sorted(range(len(runs)), key=lambda i: runs[i][1]["ack_ms"]["p99"])
    burst = dict(runs[by_ratio[middle]][0], runs=every)
    paced = dict(runs[by_ack[middle]][1], runs=every)
    return burst, paced


def burst_run(
    cw: TimedConnectWise,
    llm: TimedOpenAI,
    service: Service,
    tickets: int,
    concurrency: int,
    latency: float,
) -> dict[str, Any]:
    """A burst of ``tickets`` new tickets' webhooks at a warm service: its throughput against
    ``concurrency / latency``, where the workers' time went, and its calls and CPU a ticket."""
    cw_mark, llm_mark, timed_mark = len(cw.requests), len(llm.requests), len(llm.timed)
    cpu, fakes_cpu = service.cpu(), cpu_seconds(os.getpid())
    with BusyCores() as busy:
        ids, sent = _burst(cw, service, tickets)
        started, posted = min(row[1] for row in sent), max(row[2] for row in sent)
        ideal_wall = tickets / concurrency * latency
        arrived = cw.wait_notes(ids, timeout=ideal_wall * 3 + 60)
    wall = max(arrived.values()) - started
    cpu, fakes_cpu = service.cpu() - cpu, cpu_seconds(os.getpid()) - fakes_cpu
    calls = psa_calls(cw.requests[cw_mark:], tickets)
    calls["model"] = len(llm.requests[llm_mark:]) / tickets
    model = llm.timed[timed_mark:]
    done = max(arrived.values())
    return {
        "workers": concurrency,
        "worker_processes": service.processes,
        "slot_seconds": slot_seconds(model, started, done, concurrency),
        "waves": waves(model, started, concurrency, busy),
        "model_latency_s": latency,
        "tickets": tickets,
        "wall_s": wall,
        "tickets_per_s": tickets / wall,
        "ideal_per_s": concurrency / latency,
        "ratio": tickets / wall / (concurrency / latency),
        "burst_ack_ms": _ms([row[2] - row[1] for row in sent]),
        "burst_post_rate": tickets / (posted - started),
        "posters": min(BURST_POSTERS, tickets),
        "service_cpu_ms_per_ticket": cpu / tickets * 1000,
        "service_cores": cpu / wall,
        "bench_cores": fakes_cpu / wall,
        "psa_calls": calls,
    }


STAND_IN_CLIENTS = (
    "stdlib",
    "httpx+sdk",
    "httpx-lean+sdk-lean",
    "httpx-lean+stdlib",
    "stdlib+sdk-lean",
)


def floor_run(
    root: Path, tickets: int, concurrency: int, latency: float, settings: dict[str, str]
) -> list[dict[str, Any]]:
    """The burst of the throughput run through stand-ins of the service (``bench.stand_in``):
    the calls the service made for a ticket, replayed for each ticket by as many threads in as
    many worker processes, with nothing else: with the standard library's HTTP client, with the
    service's (httpx for the PSA, the openai SDK for the model) on their default transports and
    on the lean one (``psatriage.transport``), and mixed. What the machine, the fakes and the
    clients allow."""
    with TimedConnectWise() as cw, TimedOpenAI(latency=latency) as llm:
        harness = Harness(cw=cw, llm=llm, root=root)
        with (
            serve(harness, workers=concurrency, settings=settings) as service,
            httpx.Client(timeout=30) as client,
        ):
            processes = service.processes
            _send_one(cw, client, service.url, 0)
            plan = _replay_plan(cw, llm, _send_one(cw, client, service.url, 1))
        rows = []
        for name in STAND_IN_CLIENTS:
            with stand_in(
                root / name,
                plan,
                {"cw": cw.url, "llm": llm.url},
                workers=concurrency,
                processes=processes,
                client=name,
            ) as substitute:
                with httpx.Client(timeout=30) as client:  # one ticket first: warm connections
                    ticket = _new_ticket(cw, 0)
                    _post(client, substitute.url, cw.callback(ticket))
                    cw.wait_notes([ticket], timeout=120)
                rows.append(
                    {"client": name} | burst_run(cw, llm, substitute, tickets, concurrency, latency)
                )
    return rows


@contextmanager
def stand_in(
    root: Path,
    plan: list[tuple[str, Request]],
    servers: dict[str, str],
    *,
    workers: int,
    processes: int,
    client: str,
) -> Iterator[Service]:
    """A running ``bench.stand_in`` replaying ``plan`` for each ticket, stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    calls = []
    for server, request in plan:
        if server == "sink":
            continue  # the webhook: the bench posts it to the stand-in
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_HEADERS}
        path = re.sub(r"/service/tickets/\d+", "/service/tickets/{ticket}", request.path)
        body = request.body.decode()
        calls.append(
            {"server": server, "method": request.method, "path": path}
            | {"query": request.query, "headers": headers, "body": body}
        )
    spec = {
        "workers": workers,
        "processes": processes,
        "client": client,
        "servers": servers,
        "plan": calls,
    }
    spec_path = root / "stand-in.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    port = _free_port()
    log_path = root / "stand-in.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.stand_in", str(spec_path), "--port", str(port)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, log_path)
            yield Service(url, process.pid, (), processes)
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    errors = log_path.read_text(errors="replace")
    if "stand-in: ticket" in errors:
        raise BenchError(f"the stand-in failed tickets:\n{errors[-4000:]}")


def slot_seconds(
    calls: Sequence[tuple[float, float]], burst_at: float, done: float, workers: int
) -> dict[str, float]:
    """Where a burst's model time went, a worker being a turn at the model: ``workers`` × the
    burst's wall time (first post to last note), in worker-seconds, split exactly into the model
    calls (arrival at the model to its answer), the ramp (each worker's wait for its first
    call), the gaps between a worker's calls (own work the model waited for; calls paired first
    in, first out) and the tail (workers done while the last tickets are written)."""
    first = sorted(start for start, _ in calls)
    last = sorted(end for _, end in calls)
    return {
        "total": workers * (done - burst_at),
        "model": sum(last) - sum(first),
        "ramp": sum(start - burst_at for start in first[:workers]),
        "gaps": sum(s - e for s, e in zip(first[workers:], last, strict=False)),
        "tail": sum(done - end for end in last[-workers:]),
    }


def waves(
    calls: Sequence[tuple[float, float]], burst_at: float, workers: int, busy: BusyCores
) -> list[dict[str, float]]:
    """The burst's waves: the model calls ranked by arrival, ``workers`` at a time. For each, in
    seconds from the burst: its first and last call's arrival, and the machine's mean busy
    cores over its turn: from the previous wave's first answer (the burst, for the first wave)
    to its own last call."""
    first = sorted(start for start, _ in calls)
    answered = sorted(end for _, end in calls)
    rows = []
    for at in range(0, len(first), workers):
        wave = first[at : at + workers]
        turn = burst_at if at == 0 else answered[at - workers]
        rows.append(
            {
                "first_call_s": wave[0] - burst_at,
                "last_call_s": wave[-1] - burst_at,
                "turn_busy_cores": busy.mean(turn, wave[-1]),
            }
        )
    return rows


def web_ack_run(
    root: Path, *, rate: float, seconds: float, settings: dict[str, str]
) -> dict[str, Any]:
    """The paced webhooks against ``serve --no-worker``: the web path alone, nothing processed."""
    with TimedConnectWise() as cw, FakeOpenAI() as llm:
        harness = Harness(cw=cw, llm=llm, root=root)
        with (
            serve(harness, workers=0, settings=settings) as service,
            httpx.Client(timeout=30) as client,
        ):
            response = _post(client, service.url, cw.callback(_new_ticket(cw, 0)))  # signing key
            if response.status_code != 202:
                raise BenchError(f"webhook answered {response.status_code}: {response.text}")
            return ack_run(cw, service, rate=rate, seconds=seconds)


def _post_all(
    service: Service,
    deliveries: Sequence[tuple[bytes, dict[str, str]]],
    *,
    rate: float | None,
    threads: int,
    tenant: str = TENANT,
    service_cpu: list[float] | None = None,
) -> list[list[float]]:
    """The webhooks posted by the load generator process (``loadgen``), paced at ``rate`` per
    second or, with ``None``, all at once: ``(due, sent, done, status)`` each, in
    ``perf_counter`` time (one clock for every process of the machine)."""
    spec = {
        "url": f"{service.url}/webhooks/{tenant}",
        "rate": rate,
        "threads": threads,
        "pid": service.pid,
        "requests": [
            [body.decode(), headers["x-content-signature"]] for body, headers in deliveries
        ],
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.pipeline", "--loadgen"],
            input=json.dumps(spec).encode(),
            capture_output=True,
            cwd=REPO,
            timeout=len(deliveries) / (rate or 1000) + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"the load generator did not finish in {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"the load generator failed:\n{done.stderr.decode(errors='replace')}")
    answer = json.loads(done.stdout)
    if service_cpu is not None:
        service_cpu.append(answer["service_cpu"])
    results: list[list[float]] = answer["results"]
    return results


def ack_run(
    cw: FakeConnectWise, service: Service, *, rate: float, seconds: float
) -> dict[str, Any]:
    """Webhooks paced at ``rate`` per second for ``seconds``, from a load generator process."""
    count = max(1, round(rate * seconds))
    deliveries = [cw.callback(_new_ticket(cw, index)) for index in range(count)]
    cpu: list[float] = []
    results = _post_all(service, deliveries, rate=rate, threads=LOADGEN_THREADS, service_cpu=cpu)
    accepted = [r for r in results if r[3] == 202]
    first_sent = min(r[1] for r in results)
    last_done = max(r[2] for r in results)
    return {
        "service_cores": cpu[0] / (last_done - first_sent),
        "paced_rate": rate,
        "requests": count,
        "accepted": len(accepted),
        "rate_reached": len(accepted) / (last_done - first_sent),
        "ack_ms": _ms([r[2] - r[1] for r in accepted]),
        "from_schedule_ms": _ms([r[2] - r[0] for r in accepted]),
        "statuses": dict(Counter(str(int(r[3])) for r in results)),
    }


def _burst(
    cw: TimedConnectWise, service: Service, tickets: int, *, tenant: str = TENANT
) -> tuple[list[int], list[list[float]]]:
    """``tickets`` new tickets' webhooks, all at once from the load generator's threads (posted
    by threads of this process, which also serves the fakes, 256 took 0.5-0.6 s to arrive): the
    ticket ids and each post's ``(due, sent, done, status)``; a refusal fails the bench."""
    ids = [_new_ticket(cw, index) for index in range(tickets)]
    deliveries = [cw.callback(ticket) for ticket in ids]
    posters = min(BURST_POSTERS, tickets)
    sent = _post_all(service, deliveries, rate=None, threads=posters, tenant=tenant)
    refused = [int(row[3]) for row in sent if row[3] != 202]
    if refused:
        raise BenchError(f"{len(refused)} webhooks refused in the burst: {refused[:5]}")
    return ids, sent


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``, dropped on exit."""
    name = f"psatriage_bench_{os.getpid()}"
    base = httpx.URL(server_url.replace("postgresql+psycopg://", "postgresql://"))
    admin = str(base.copy_with(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield str(base.copy_with(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def scale_run(
    root: Path,
    *,
    processes: int,
    tickets: int,
    concurrency: int,
    latency: float,
    postgres: str,
    redis: str,
    settings: dict[str, str],
) -> list[dict[str, Any]]:
    """Throughput of 1..``processes`` ``psatriage worker`` processes of ``concurrency`` workers
    each beside ``serve --no-worker``, on a fresh PostgreSQL database and a Redis queue: a burst
    of ``tickets`` × process count per run."""
    rows = []
    for count in range(1, processes + 1):
        folder = root / f"processes-{count}"
        folder.mkdir()
        with (
            fresh_postgres(postgres) as database,
            TimedConnectWise() as cw,
            FakeOpenAI(latency=latency) as llm,
        ):
            harness = Harness(cw=cw, llm=llm, root=folder)
            shared = settings | {"PSATRIAGE_DATABASE_URL": database, "PSATRIAGE_QUEUE_URL": redis}
            with (
                serve(
                    harness,
                    workers=concurrency,
                    settings=shared,
                    worker_processes=count,
                ) as service,
                httpx.Client(timeout=30) as client,
            ):
                for index in range(count * 2):  # every process warm (key, taxonomy, pools)
                    _send_one(cw, client, service.url, index)
                burst = tickets * count
                cpu = service.cpu()
                ids, sent = _burst(cw, service, burst)
                started = min(row[1] for row in sent)
                ideal = count * concurrency / latency
                arrived = cw.wait_notes(ids, timeout=burst / ideal * 4 + 120)
                wall = max(arrived.values()) - started
                rows.append(
                    {
                        "processes": count,
                        "workers_per_process": concurrency,
                        "model_latency_s": latency,
                        "tickets": burst,
                        "tickets_per_s": burst / wall,
                        "ideal_per_s": ideal,
                        "ratio": burst / wall / ideal,
                        "service_cpu_ms_per_ticket": (service.cpu() - cpu) / burst * 1000,
                    }
                )
    for row in rows:
        row["speedup"] = row["tickets_per_s"] / rows[0]["tickets_per_s"]
    return rows


def fairness_run(
    root: Path,
    *,
    flood: int,
    quiet: int,
    concurrency: int,
    latency: float,
    settings: dict[str, str],
) -> dict[str, Any]:
    """One tenant floods (a burst of ``flood`` tickets) while another sends ``quiet`` tickets one
    at a time; the quiet tenant's latency (webhook to note) against the same tickets sent with no
    flood, and in units of one ticket's processing time (the model latency)."""
    with TimedConnectWise() as cw, FakeOpenAI(latency=latency) as llm:
        harness = Harness(cw=cw, llm=llm, root=root)
        with (
            serve(
                harness, workers=concurrency, settings=settings, tenants=("flood", "quiet")
            ) as service,
            httpx.Client(timeout=30) as client,
        ):
            for tenant in ("flood", "quiet"):
                _send_one(cw, client, service.url, 0, tenant)

            def quiet_latencies() -> list[float]:
                seconds = []
                for index in range(quiet):
                    ticket = _new_ticket(cw, index)
                    body, headers = cw.callback(ticket)
                    sent = time.perf_counter()
                    response = client.post(
                        f"{service.url}/webhooks/quiet", content=body, headers=headers
                    )
                    if response.status_code != 202:
                        raise BenchError(f"webhook answered {response.status_code}")
                    seconds.append(cw.wait_notes([ticket], timeout=600)[ticket] - sent)
                return seconds

            alone = quiet_latencies()
            flood_ids, sent = _burst(cw, service, flood, tenant="flood")
            started = min(row[1] for row in sent)
            during = quiet_latencies()
            backlog = sum(1 for t in flood_ids if t not in cw.noted)
            arrived = cw.wait_notes(flood_ids, timeout=flood / concurrency * latency * 4 + 300)
            flood_wall = max(arrived.values()) - started
    return {
        "flood": flood,
        "quiet": quiet,
        "workers": concurrency,
        "model_latency_s": latency,
        "quiet_alone_ms": _ms(alone) | {"max": max(alone) * 1000},
        "quiet_during_flood_ms": _ms(during) | {"max": max(during) * 1000},
        "quiet_during_in_processing_times": max(during) / latency,
        "flood_backlog_after_quiet": backlog,
        "flood_tickets_per_s": flood / flood_wall,
    }


# -- the load generator (a second process) --------------------------------------------------------


def loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """POST each body at ``start + i / rate`` (``rate`` None: at once) from a pool of keep-alive
    connections, one thread each.

    Returns ``results``: ``(due, sent, done, status)`` per request (status 0: the connection
    failed), in this process's ``perf_counter`` time; and ``service_cpu``: the CPU seconds the
    service process used meanwhile.
    """
    target = urlsplit(spec["url"])
    host, port, path = target.hostname or "127.0.0.1", target.port or 80, target.path
    requests: list[list[str]] = spec["requests"]
    rate = float(spec["rate"] or "inf")  # none: all at once
    results: list[tuple[float, float, float, int]] = [(0.0, 0.0, 0.0, 0)] * len(requests)
    indexes = itertools.count()  # next() on it is atomic under the GIL
    start = time.perf_counter() + 0.1

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        while (index := next(indexes)) < len(requests):
            due = start + index / rate
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            body, signature = requests[index]
            headers = {"Content-Type": "application/json", "x-content-signature": signature}
            sent = time.perf_counter()
            try:
                connection.request("POST", path, body=body.encode(), headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=10)
                status = 0
            results[index] = (due, sent, time.perf_counter(), status)
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(spec["threads"])]
    cpu = tree_cpu_seconds(spec["pid"])
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"results": results, "service_cpu": tree_cpu_seconds(spec["pid"]) - cpu}


# -- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_before": _load(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _load() -> float | None:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target the phases that ran can judge: name, goal, measured, met."""
    rows: list[tuple[str, str, float, bool]] = []
    if "overhead" in result:
        over = result["overhead"]["overhead_ms"]
        rows += [
            ("overhead p50", f"≤ {TARGETS['overhead_p50_ms']:g} ms", over["p50"],
             over["p50"] <= TARGETS["overhead_p50_ms"]),
            ("overhead p99", f"≤ {TARGETS['overhead_p99_ms']:g} ms", over["p99"],
             over["p99"] <= TARGETS["overhead_p99_ms"]),
        ]  # fmt: skip
    if "throughput" in result:
        thr, ack = result["throughput"], result["ack"]
        calls = thr["psa_calls"]
        rows += [
            (f"throughput at concurrency {thr['workers']}, model {thr['model_latency_s']:g} s",
             "≥ 90% of ideal", thr["ratio"], thr["ratio"] >= TARGETS["throughput_ratio"]),
            ("PSA writes per ticket", "2", calls["writes"],
             calls["writes"] <= TARGETS["writes_per_ticket"]),
            ("PSA reads per ticket", "≤ 1", calls["reads"],
             calls["reads"] <= TARGETS["reads_per_ticket"]),
            ("webhook ack p99, workers busy", f"≤ {TARGETS['ack_p99_ms']:g} ms",
             ack["ack_ms"]["p99"], ack["ack_ms"]["p99"] <= TARGETS["ack_p99_ms"]),
            ("webhook ack rate, workers busy", "≥ 1,000 req/s", ack["rate_reached"],
             ack["rate_reached"] >= TARGETS["ack_rate"] and ack["accepted"] == ack["requests"]),
        ]  # fmt: skip
    if "scale" in result and len(result["scale"]) > 1:
        two = result["scale"][1]["speedup"]
        rows.append(("two worker processes against one", "≥ 1.8×", two, two >= 1.8))
    return [{"target": n, "goal": g, "measured": m, "met": ok} for n, g, m, ok in rows]


def _ms_cells(values: dict[str, float]) -> tuple[str, str]:
    return f"{values['p50']:.2f} ms", f"{values['p99']:.2f} ms"


def _other_rows(table: Table, result: dict[str, Any]) -> None:
    """The fairness and scale-out rows of the measured table."""
    fair = result.get("fairness")
    if fair is not None:
        for label, key in (
            ("alone", "quiet_alone_ms"),
            ("during the flood", "quiet_during_flood_ms"),
        ):
            values = fair[key]
            table.add_row(
                f"quiet tenant, webhook to note, {label} ({fair['quiet']} tickets)",
                *_ms_cells(values), f"max {values['max']:.0f} ms",
                f"model {fair['model_latency_s']:g} s",
            )  # fmt: skip
        table.add_row(
            f"flooding tenant: {fair['flood']} tickets, {fair['workers']} workers",
            f"{fair['flood_tickets_per_s']:.1f}/s", "",
            f"{fair['flood_backlog_after_quiet']} still waiting after the quiet ones",
            f"quiet max = {fair['quiet_during_in_processing_times']:.1f} processing times",
        )  # fmt: skip
    for row in result.get("floor", []):
        table.add_row(
            f"stand-in ({row['client']} clients): the same burst, {row['tickets']} tickets, "
            f"{row['workers']} threads in {row['worker_processes']} process(es)",
            f"{row['tickets_per_s']:.1f}/s", f"{row['service_cpu_ms_per_ticket']:.1f} ms CPU",
            f"ideal {row['ideal_per_s']:.1f}/s ({row['ratio']:.1%})", "",
        )  # fmt: skip
    for row in result.get("scale", []):
        table.add_row(
            f"scale-out: {row['processes']} worker process(es) × {row['workers_per_process']} "
            f"workers, PostgreSQL + Redis, {row['tickets']} tickets",
            f"{row['tickets_per_s']:.1f}/s", f"{row['service_cpu_ms_per_ticket']:.1f} ms CPU",
            f"ideal {row['ideal_per_s']:.1f}/s ({row['ratio']:.1%})", f"{row['speedup']:.2f}×",
        )  # fmt: skip


def render(result: dict[str, Any], console: Console) -> None:
    host = result["machine"]
    console.print(
        f"[bold]psatriage pipeline bench[/] — {host['cpu']}, {host['cores']} cores, "
        f"Python {host['python']}; load average {host['load_before']} before the run, "
        f"{host['load_after']} after"
    )
    if (host["load_before"] or 0) >= 1:
        console.print("[yellow]the machine was busy before the run: figures are pessimistic[/]")
    runs = len(result.get("throughput", {}).get("runs", []))
    title = "Measured (one run)"
    if runs > 1:
        title = f"Measured (one run; throughput and acks: medians of {runs})"
    table = Table(title=title, title_justify="left")
    for column in ("measure", "p50", "p99", "reference", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    over, thr = result.get("overhead"), result.get("throughput")
    if over is not None:
        floor = over["floor_ms"]
        table.add_row(
            f"floor: the same {len(over['floor_calls'])} HTTP calls straight at the fakes",
            *_ms_cells(floor), "", "",
        )  # fmt: skip
        table.add_row(
            f"end to end, sequential ({over['tickets']} tickets, {over['workers']} workers)",
            *_ms_cells(over["end_to_end_ms"]), f"floor p50 {floor['p50']:.2f} ms",
            f"{over['ratio_p50']:.1f}× / {over['ratio_p99']:.1f}×",
        )  # fmt: skip
        table.add_row(
            "overhead = end to end − floor p50", *_ms_cells(over["overhead_ms"]),
            "≤ 10 / ≤ 30 ms", "",
        )  # fmt: skip
        table.add_row("webhook ack, sequential (idle service)", *_ms_cells(over["ack_ms"]), "", "")
    if thr is not None:
        table.add_row(
            f"throughput ({thr['tickets']} tickets, {thr['workers']} workers in "
            f"{thr.get('worker_processes', 1)} process(es), model {thr['model_latency_s']:g} s)",
            f"{thr['tickets_per_s']:.1f}/s", "", f"ideal {thr['ideal_per_s']:.1f}/s",
            f"{thr['ratio']:.1%}",
        )  # fmt: skip
        every = thr.get("runs", [])
        if len(every) > 1:
            table.add_row(
                f"each of {len(every)} runs (the median above): throughput, ack p99 busy",
                ", ".join(f"{run['ratio']:.1%}" for run in every),
                ", ".join(f"{run['ack_p99_ms']:.1f}" for run in every), "", "",
            )  # fmt: skip
        table.add_row(
            "service CPU during the burst (web and workers)",
            f"{thr['service_cpu_ms_per_ticket']:.1f} ms/ticket", "",
            f"{thr['service_cores']:.2f} cores",
            f"fakes and bench {thr['bench_cores']:.2f} cores",
        )  # fmt: skip
        slots = thr["slot_seconds"]
        table.add_row(
            "the workers' time in the burst (worker-seconds)",
            f"model {slots['model']:.0f}", f"ramp {slots['ramp']:.0f}",
            f"gaps {slots['gaps']:.0f}, tail {slots['tail']:.0f}", f"of {slots['total']:.0f}",
        )  # fmt: skip
        table.add_row(
            "the waves: first – last model call (s), busy cores over each turn",
            ", ".join(f"{w['first_call_s']:.2f}–{w['last_call_s']:.2f}" for w in thr["waves"]),
            "", ", ".join(f"{w['turn_busy_cores']:.1f}" for w in thr["waves"]), "",
        )  # fmt: skip
        table.add_row(
            f"webhook ack, burst of {thr['tickets']} from {thr['posters']} threads",
            *_ms_cells(thr["burst_ack_ms"]), f"{thr['burst_post_rate']:.0f} req/s", "",
        )  # fmt: skip
    for label, key in (
        (f"serve, {thr['workers'] if thr else 0} workers busy", "ack"),
        ("serve --no-worker", "ack_web_only"),
    ):
        ack = result.get(key)
        if ack is None:
            continue
        table.add_row(
            f"webhook ack, paced {ack['paced_rate']:g}/s × {ack['requests']}, {label}",
            *_ms_cells(ack["ack_ms"]), f"reached {ack['rate_reached']:.0f} req/s",
            f"{ack['accepted']}/{ack['requests']} accepted",
        )  # fmt: skip
        table.add_row(
            "  the same, timed from the scheduled send",
            *_ms_cells(ack["from_schedule_ms"]), f"web {ack['service_cores']:.2f} cores", "",
        )  # fmt: skip
    _other_rows(table, result)
    console.print(table)

    if over is not None and thr is not None:
        calls_table = Table(title="PSA calls per ticket, taxonomy cached", title_justify="left")
        calls_table.add_column("call")
        calls_table.add_column("sequential", justify="right")
        calls_table.add_column("burst", justify="right")
        names = sorted(set(over["psa_calls"]["by_call"]) | set(thr["psa_calls"]["by_call"]))
        for name in names:
            calls_table.add_row(
                name,
                f"{over['psa_calls']['by_call'].get(name, 0):.2f}",
                f"{thr['psa_calls']['by_call'].get(name, 0):.2f}",
            )
        console.print(calls_table)

    targets = Table(title="Targets", title_justify="left")
    for column in ("target", "goal", "measured", "met"):
        targets.add_column(column)
    for row in result["targets"]:
        measured = row["measured"]
        shown = f"{measured:.1%}" if "throughput at" in row["target"] else f"{measured:.2f}"
        targets.add_row(row["target"], row["goal"], shown, "yes" if row["met"] else "[red]no[/]")
    console.print(targets)


# -- entry point ----------------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tickets", type=int, default=256, help="tickets per run (default 256)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="workers for the throughput run (default 64)"
    )
    parser.add_argument(
        "--model-latency", type=float, default=1.0, help="model latency in seconds (default 1)"
    )
    parser.add_argument(
        "--ack-rate", type=float, default=1100, help="paced webhook rate (default 1100 req/s)"
    )
    parser.add_argument(
        "--ack-seconds", type=float, default=3, help="length of the paced run (default 3 s)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PSATRIAGE_X=VALUE",
        help="a setting for both services (repeatable), e.g. PSATRIAGE_QUEUE_POLL_SECONDS=0.01",
    )
    parser.add_argument(
        "--only",
        default="overhead,throughput,web",
        help="phases to run, comma-separated: overhead, throughput, web, fairness, floor, scale "
        "(default overhead,throughput,web; --processes adds scale)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="scale-out: 1..N `psatriage worker` processes on PostgreSQL and Redis",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PSATRIAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server for the scale-out runs (a fresh database is made and dropped)",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("PSATRIAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis database for the scale-out runs' queue",
    )
    parser.add_argument(
        "--flood", type=int, default=2000, help="fairness: the flooding tenant's burst"
    )
    parser.add_argument(
        "--quiet", type=int, default=10, help="fairness: the quiet tenant's tickets, one by one"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="throughput phase: runs, each on a fresh service; the medians are reported",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tickets < 1 or args.concurrency < 1 or args.model_latency <= 0:
        parser.error("--tickets and --concurrency must be ≥ 1, --model-latency > 0")
    if any(not re.fullmatch(r"PSATRIAGE_\w+=.*", item) for item in args.set):
        parser.error("--set takes PSATRIAGE_NAME=VALUE")
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    if args.processes:
        phases.add("scale")
    args.phases = sorted(phases)  # a list: the arguments are printed with --json
    unknown = phases - {"overhead", "throughput", "web", "fairness", "floor", "scale"}
    if unknown:
        parser.error(f"--only: unknown phase(s) {sorted(unknown)}")
    if "scale" in args.phases and args.processes < 1:
        parser.error("the scale phase needs --processes N (N ≥ 1)")
    if args.runs < 1:
        parser.error("--runs takes a count of 1 or more")
    return args


def _exit_on_terminate(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, ``pkill``) unwinds like Ctrl-C, so the services this bench started are
    stopped on the way out instead of left running."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_terminate)
    args = _arguments(argv)
    if args.loadgen:  # the second process of ack_run: spec on stdin, results on stdout
        json.dump(loadgen(json.load(sys.stdin)), sys.stdout)
        return 0
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    result: dict[str, Any] = {"machine": machine(), "arguments": vars(args)}
    settings = dict(item.split("=", 1) for item in args.set)
    phases = args.phases
    try:
        with tempfile.TemporaryDirectory(prefix="psatriage-bench-") as tmp:
            root = Path(tmp)
            for phase in phases:
                (root / phase).mkdir()
            if "overhead" in phases:
                with console.status("overhead: sequential tickets, zero-latency fakes"):
                    result["overhead"] = overhead_run(root / "overhead", args.tickets, settings)
            if "throughput" in phases:
                runs = []
                for run in range(args.runs):
                    with console.status(
                        f"throughput: a burst with a slow model, then paced webhooks "
                        f"(run {run + 1} of {args.runs})"
                    ):
                        folder = root / "throughput" / str(run)
                        folder.mkdir()
                        runs.append(
                            throughput_run(
                                folder,
                                args.tickets,
                                args.concurrency,
                                args.model_latency,
                                (args.ack_rate, args.ack_seconds),
                                settings,
                            )
                        )
                result["throughput"], result["ack"] = median_runs(runs)
            if "web" in phases:
                with console.status("paced webhooks against serve --no-worker"):
                    result["ack_web_only"] = web_ack_run(
                        root / "web",
                        rate=args.ack_rate,
                        seconds=args.ack_seconds,
                        settings=settings,
                    )
            if "fairness" in phases:
                with console.status("fairness: a flooding tenant and a quiet one"):
                    result["fairness"] = fairness_run(
                        root / "fairness",
                        flood=args.flood,
                        quiet=args.quiet,
                        concurrency=args.concurrency,
                        latency=args.model_latency,
                        settings=settings,
                    )
            if "floor" in phases:
                with console.status("floor: the same burst through stand-ins of the service"):
                    result["floor"] = floor_run(
                        root / "floor",
                        args.tickets,
                        args.concurrency,
                        args.model_latency,
                        settings,
                    )
            if "scale" in phases:
                with console.status("scale-out: worker processes on PostgreSQL and Redis"):
                    result["scale"] = scale_run(
                        root / "scale",
                        processes=args.processes,
                        tickets=args.tickets,
                        concurrency=args.concurrency,
                        latency=args.model_latency,
                        postgres=args.postgres,
                        redis=args.redis,
                        settings=settings,
                    )
    except BenchError as exc:
        console.print(f"[red]bench failed:[/] {exc}")
        return 1
    result["machine"]["load_after"] = _load()
    result["targets"] = verdicts(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
