"""Chaos soak: a real deployment driven for a long time with faults injected, then every ticket
checked.

Run from the repository root (PostgreSQL that may be restarted, and ``redis-server`` on PATH)::

    uv run python -m bench.soak --postgres-url postgresql://postgres@127.0.0.1:5433/postgres \\
        --postgres-ctl "pg_ctlcluster --skip-systemctl-redirect 15 psatriage_crash" [--minutes 30]

The deployment: a fresh database on that PostgreSQL server, a Redis of the soak's own (started on
a free port, keeping nothing on disk, so a restart brings it back empty) as the queue, one
``psatriage serve --no-worker`` and two ``psatriage worker`` processes, ten tenants across the four
PSA fakes of the test suite (each tenant its own fake, served from this process) and one fake model
server. The soak acts as the PSAs: it creates tickets at the fakes and delivers their webhooks,
sending again after a 5xx or a dropped connection, as a PSA does.

Phases: a warm-up ticket per tenant; a quiet run (``--quiet-minutes``: the steady mix, no flood,
no faults) that gives each tenant's latency without trouble; a flood run (``--flood-minutes``):
one tenant sends ``--flood`` times its rate while another tenant's PSA hangs throughout, nothing
else goes wrong, so the other eight tenants' latency shows how well tenants are kept apart; the
chaos run (``--minutes``): the flood goes on, and faults come at seeded random moments (about one
every ``--fault-every`` seconds, each kind once before any repeats): SIGKILL of a worker or the
web process (restarted at once), PostgreSQL stopped and started, Redis killed and started empty,
one tenant's PSA hanging or answering 429 or 5xx for a while, the model failing or slow. Then the
drain: no new tickets, every fault healed, until every ticket is noted and nothing is left in the
ledger (``--drain-minutes`` at most).

The checks, for every ticket sent: exactly one decision (final), at most one category write and
one note at the fake (one of each where the decision says it wrote them), every event of the
ticket finished. ``lost`` counts tickets missing a decision, a write or a note; ``duplicates``
counts tickets with more than one of any.

The figures: latency from the first webhook attempt to the note arriving at the fake, p50/p99 per
tenant and for the other eight together, by the phase the ticket was sent in; the share of the
time each tenant was degraded (sampled each second: a ticket of the tenant has waited longer than
``--degraded-after`` seconds for its note; beside it, the share of the samples in which
``/readyz`` named the tenant degraded); the RSS of each process after the warm-up and quiet
run, at its peak and at the end, and of each slot's longest-lived process (a killed process is
started again: its RSS once settled, after the quiet run or 3 minutes in, against its RSS at its
end); how many times the events were claimed (their fencing token); the faults injected by kind;
unexpected process exits; the goals, each with what was measured and whether it was met.
A table, or ``--json``. Nothing here asserts; ``tests/test_soak.py`` runs a short fixed-seed soak
and asserts on the checks only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.fernet import Fernet
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from tests.fakes.base import Request, Response
from tests.fakes.kit import ContractKit, Delivery
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import OPENAI_KEY_ENV, free_port, kit_for, kit_tenant, to_toml

from bench.pipeline import machine

PSATRIAGE = [sys.executable, "-m", "psatriage"]
PSAS = ("connectwise", "autotask", "halopsa", "kaseya_bms")
SHORT = {"connectwise": "cw", "autotask": "at", "halopsa": "halo", "kaseya_bms": "bms"}
TENANTS = 10
FLOODING = "cw1"  # ConnectWise's call window is the tenant's to set: the flood is not throttled
HANGING = "at1"  # whose PSA hangs through the flood run
PHASES = ("quiet", "flood", "chaos")
TEXTS = (
    ("Printer on 3rd floor", "My printer has a paper jam again"),
    ("Laptop is dead", "My laptop will not power on after the update"),
    ("VPN keeps dropping", "The VPN disconnects every few minutes when I work from home"),
    ("New phone", "Please help with the email setup on my new phone"),
    ("Password reset", "I am locked out of my account after too many attempts"),
    ("Slow network", "The network in the warehouse is very slow since this morning"),
)
PSA_FAULTS = ("psa_hang", "psa_429", "psa_5xx")
SHARED_FAULTS = (
    "kill_worker",
    "kill_web",
    "restart_postgres",
    "restart_redis",
    "model_fail",
    "model_slow",
)
FAULT_KINDS = SHARED_FAULTS + PSA_FAULTS
FINISHED = {"done", "kept", "ignored"}
UNFINISHED = ("received", "processing", "retrying")
_NOTE_PATH = re.compile(r"/(?:service/tickets|Tickets|servicedesk/tickets)/(\d+)/notes$", re.I)
_OURS = b"psatriage:"
_ERROR_NOTE = b"psatriage:error:"


class SoakError(RuntimeError):
    """The soak could not run (a server that did not start); not a finding about the service."""


@dataclass
class Options:
    """What one soak run does; the command line's options (see ``--help``)."""

    postgres_url: str
    postgres_ctl: str
    minutes: float = 30.0
    quiet_minutes: float = 10.0
    flood_minutes: float = 10.0
    seed: int = 1
    rate: float = 14.0  # new tickets per minute per tenant: about 140 each in the quiet run
    flood: float = 10.0
    duplicates: float = 0.3  # duplicate deliveries per new ticket
    updates: float = 0.3  # update deliveries per new ticket
    fault_every: float = 45.0
    fault_seconds: float = 60.0
    model_latency: float = 0.2
    workers: int = 8
    lease_seconds: int = 60
    degraded_after: float = 30.0
    drain_minutes: float = 15.0
    every_kind: bool = True  # the chaos run lasts until every kind of fault was injected once
    settings: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # where the logs go (default: a temporary folder, removed)


# -- the soak's own Redis and the restartable PostgreSQL ----------------------------------------


class Redis:
    """A ``redis-server`` of the soak's own on a free port that keeps nothing on disk: killed, it
    comes back empty, as a queue's Redis does after a crash."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = (root / "redis.log").open("ab")
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no"]
        process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return process
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SoakError("redis-server did not start") from None
                time.sleep(0.05)

    def restart_empty(self, down_seconds: float) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        time.sleep(down_seconds)
        self.process = self._start()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


class Postgres:
    """A fresh database on a PostgreSQL server that ``control`` (plus ``stop``/``start``) stops
    and starts; dropped at the end."""

    def __init__(self, server: str, control: str) -> None:
        self.control = shlex.split(control)
        name = f"psatriage_soak_{uuid.uuid4().hex[:12]}"
        admin = make_url(server).set(drivername="postgresql")
        self._admin = admin.render_as_string(hide_password=False)
        self.url = admin.set(database=name).render_as_string(hide_password=False)
        self._name = name
        with psycopg.connect(self._admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def restart(self, down_seconds: float) -> None:
        """Stop the server (fast: every connection is cut), wait, start it, wait until it
        answers."""
        subprocess.run([*self.control, "stop", "-m", "fast"], check=True, capture_output=True)
        try:
            time.sleep(down_seconds)
        finally:
            self.start()

    def start(self) -> None:
        subprocess.run([*self.control, "start"], check=False, capture_output=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise SoakError("PostgreSQL did not come back") from None
                time.sleep(0.2)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, connect_timeout=10) as connection:
            return connection.execute(sql).fetchall()  # type: ignore[arg-type]

    def drop(self) -> None:
        with psycopg.connect(self._admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


# -- tenants and their fakes ----------------------------------------------------------------------


@dataclass
class Sent:
    """One new ticket: when its first webhook went out, and when its note arrived."""

    tenant: str
    ticket: str
    phase: str  # warmup | quiet | flood | chaos
    sent_at: float
    delivery: Delivery
    noted_at: float | None = None


@dataclass
class Window:
    """A fault over a while: what the fake does until ``until`` (monotonic time)."""

    kind: str
    until: float


class Tenant:
    """One tenant: its PSA's fake (its own), the tickets sent to it, and the fault it is in."""

    def __init__(self, name: str, kit: ContractKit, flooding: bool) -> None:
        self.name, self.kit, self.flooding = name, kit, flooding
        self.tickets: dict[str, Sent] = {}
        self.order: list[str] = []
        self.waiting: set[str] = set()
        self.window: Window | None = None
        self.error_notes = 0
        self.lock = threading.Lock()
        kit.fake.interfere = self._interfere
        kit.fake.answered = self._answered

    @property
    def webhook_path(self) -> str:
        return f"/webhooks/{self.name}{self.kit.webhook_path_suffix}"

    def _interfere(self, request: Request) -> Response | None:
        window = self.window
        if window is None or time.monotonic() >= window.until:
            return None
        if window.kind == "psa_hang":  # no answer until the hang ends (or the client gives up)
            time.sleep(max(0.0, min(window.until - time.monotonic(), 45.0)))
            return None
        if window.kind == "psa_429":
            return Response(429, {"message": "Too many requests"}, {"Retry-After": "2"})
        return Response(503, {"message": "Service unavailable"}, {"Retry-After": "2"})

    def _answered(self, request: Request, response: Response) -> None:
        if request.method != "POST" or not 200 <= response.status < 300:
            return
        if _OURS not in request.body:
            return
        if _ERROR_NOTE in request.body:
            with self.lock:
                self.error_notes += 1
            return
        now = time.monotonic()
        for ticket in _noted_tickets(request):
            with self.lock:
                sent = self.tickets.get(ticket)
                if sent is not None and sent.noted_at is None:
                    sent.noted_at = now
                    self.waiting.discard(ticket)

    def new(self, phase: str, rng: random.Random) -> Sent:
        title, description = rng.choice(TEXTS)
        ticket = self.kit.new_ticket(title, description)
        sent = Sent(self.name, ticket, phase, time.monotonic(), self.kit.created(ticket))
        with self.lock:
            self.tickets[ticket] = sent
            self.order.append(ticket)
            self.waiting.add(ticket)
        return sent

    def pick(self, rng: random.Random) -> Sent | None:
        """A ticket sent before: a recent one mostly, sometimes any."""
        with self.lock:
            if not self.order:
                return None
            recent = self.order[-50:]
            ticket = rng.choice(recent if rng.random() < 0.7 else self.order)
            return self.tickets[ticket]

    def oldest_wait(self, now: float) -> float:
        with self.lock:
            return max((now - self.tickets[t].sent_at for t in self.waiting), default=0.0)


def _noted_tickets(request: Request) -> list[str]:
    """The tickets a POST adds a note to: in the path (ConnectWise, Autotask, Kaseya BMS), or in
    each action of the body (HaloPSA's ``/api/Actions``)."""
    if match := _NOTE_PATH.search(request.path):
        return [match.group(1)]
    if request.path.endswith("/api/Actions"):
        body = request.json()
        if isinstance(body, list):
            return [str(a.get("ticket_id")) for a in body if isinstance(a, dict)]
    return []


class Model:
    """The fake model server, with a fault window of its own (failing or slow)."""

    def __init__(self, latency: float) -> None:
        self.fake = FakeOpenAI(latency=latency).start()
        self.window: Window | None = None
        self.slow_seconds = 0.0
        self.fake.interfere = self._interfere

    def _interfere(self, request: Request) -> Response | None:
        window = self.window
        if window is None or time.monotonic() >= window.until:
            return None
        if not request.path.endswith("/chat/completions"):
            return None
        if window.kind == "model_slow":
            time.sleep(self.slow_seconds)
            return None
        body = {"error": {"message": "The server is overloaded", "type": "server_error"}}
        return Response(503, body)


# -- the service's processes ----------------------------------------------------------------------


SETTLED_SECONDS = 180.0  # a process started again mid-run: its RSS this long after its start


@dataclass
class Life:
    """One process of a slot, from its start to its kill or exit (or the end of the run)."""

    started: float
    ended: float | None = None
    rss_settled: int | None = None  # after the quiet run (the first process), else 3 min in
    rss_last: int = 0
    rss_peak: int = 0


@dataclass
class Slot:
    """One of the service's processes (restarted in place after a kill or an exit)."""

    name: str
    args: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)  # exit codes of exits we did not cause
    rss_peak: int = 0
    rss_warm: int | None = None
    rss_now: int = 0
    killed: bool = False
    lives: list[Life] = field(default_factory=list)

    def longest(self) -> Life | None:
        """The process that ran longest with a settled RSS: the one that shows growth best."""
        settled = [life for life in self.lives if life.rss_settled]
        now = time.monotonic()
        return max(settled, key=lambda life: (life.ended or now) - life.started, default=None)


class Service:
    """``serve --no-worker`` and two ``worker`` processes, supervised: an exit we did not cause
    is recorded and the process started again, as an orchestrator would."""

    def __init__(self, root: Path, env: dict[str, str], workers: int) -> None:
        self.root, self.env = root, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        serve = ("serve", "--no-worker", "--port", str(self.port))
        work = ("worker", "--workers", str(workers))
        self.slots = {
            "web": Slot("web", serve),
            "worker-1": Slot("worker-1", work),
            "worker-2": Slot("worker-2", work),
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logs: list[Any] = []

    def migrate(self) -> None:
        result = subprocess.run(
            [*PSATRIAGE, "db", "upgrade"], env=self.env, capture_output=True, check=False
        )
        if result.returncode != 0:
            raise SoakError(f"psatriage db upgrade failed: {result.stdout!r} {result.stderr!r}")

    def start(self) -> None:
        for slot in self.slots.values():
            self._launch(slot)
        threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True).start()

    def _launch(self, slot: Slot) -> None:
        log = (self.root / f"{slot.name}.log").open("ab")
        self._logs.append(log)
        now = time.monotonic()
        if slot.lives:
            slot.lives[-1].ended = now
        slot.process = subprocess.Popen(
            [*PSATRIAGE, *slot.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        slot.lives.append(Life(now))
        slot.starts += 1
        slot.killed = False

    def kill(self, name: str) -> None:
        """SIGKILL the process and start it again at once."""
        with self._lock:
            slot = self.slots[name]
            assert slot.process is not None
            slot.killed = True
            slot.process.send_signal(signal.SIGKILL)
            slot.process.wait(timeout=30)
            slot.kills += 1
            self._launch(slot)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for slot in self.slots.values():
                    assert slot.process is not None
                    code = slot.process.poll()
                    if code is not None and not self._stop.is_set():
                        slot.exits.append(code)
                        self._launch(slot)

    def sample_rss(self, warm: bool = False) -> None:
        with self._lock:
            for slot in self.slots.values():
                assert slot.process is not None
                rss = _rss(slot.process.pid)
                if rss:
                    slot.rss_now = rss
                    slot.rss_peak = max(slot.rss_peak, rss)
                    life = slot.lives[-1]
                    life.rss_last, life.rss_peak = rss, max(life.rss_peak, rss)
                    if warm:
                        slot.rss_warm = rss
                        if len(slot.lives) == 1:
                            life.rss_settled = rss
                    elif (
                        len(slot.lives) > 1
                        and life.rss_settled is None
                        and time.monotonic() - life.started >= SETTLED_SECONDS
                    ):
                        life.rss_settled = rss

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise SoakError(f"the web process did not become ready; see {self.root / 'web.log'}")

    def running(self) -> bool:
        return all(s.process is not None and s.process.poll() is None for s in self.slots.values())

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            processes = [s.process for s in self.slots.values() if s.process is not None]
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self._logs:
            log.close()


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    target: str
    start: float
    end: float  # when the fault itself was over (the process restarted, the server back)


class Soak:
    def __init__(self, options: Options, root: Path) -> None:
        self.options, self.root = options, root
        self.load_rng = random.Random(options.seed)
        self.fault_rng = random.Random(options.seed + 1)
        self.phase = "warmup"
        self.phase_times: dict[str, list[float]] = {}
        self.faults: list[Fault] = []
        self.fault_errors: list[str] = []
        self.deliveries: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.refused: list[str] = []
        self.degraded: dict[str, Counter[str]] = defaultdict(Counter)
        self.samples: Counter[str] = Counter()
        self.reported: dict[str, Counter[str]] = defaultdict(Counter)  # degraded on /readyz
        self.reported_samples: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.model = Model(options.model_latency)
        kinds = [PSAS[i % len(PSAS)] for i in range(TENANTS)]
        numbers: Counter[str] = Counter()
        self.tenants: dict[str, Tenant] = {}
        for kind in kinds:
            numbers[kind] += 1
            name = f"{SHORT[kind]}{numbers[kind]}"
            self.tenants[name] = Tenant(name, kit_for(kind), flooding=name == FLOODING)
        self.postgres = Postgres(options.postgres_url, options.postgres_ctl)
        try:
            self.redis = Redis(root)
        except SoakError:
            self.postgres.drop()
            raise
        self.service = Service(root, self._env(), options.workers)
        self.client = httpx.Client(base_url=self.service.url, timeout=30)
        self.pool = ThreadPoolExecutor(64, thread_name_prefix="soak-psa")
        self._watcher = threading.Thread(target=self.watch, name="soak-watch", daemon=True)

    def _env(self) -> dict[str, str]:
        options = self.options
        tenants = {}
        secrets: dict[str, str] = {}
        for name, tenant in self.tenants.items():
            table = kit_tenant(tenant.kit, self.model.fake)
            table["classifier"]["timeout_seconds"] = 10
            table["policy"] = {"mode": "apply"}
            tenants[name] = table
            secrets.update(tenant.kit.env)
        config = self.root / "psatriage.toml"
        config.write_text(to_toml({"tenants": tenants}), encoding="utf-8")
        return {
            **os.environ,
            **secrets,
            OPENAI_KEY_ENV: DEFAULT_API_KEY,
            "PSATRIAGE_CONFIG": str(config),
            "PSATRIAGE_DATA_DIR": str(self.root / "data"),
            "PSATRIAGE_DATABASE_URL": self.postgres.url,
            "PSATRIAGE_QUEUE_URL": self.redis.url,
            "PSATRIAGE_SECRET_KEY": Fernet.generate_key().decode(),
            "PSATRIAGE_LOG_FORMAT": "json",
            "PSATRIAGE_LOG_LEVEL": "warning",
            "PSATRIAGE_LEASE_SECONDS": str(options.lease_seconds),
            "PSATRIAGE_HOUSEKEEPING_SECONDS": "2",
            "PSATRIAGE_RETRY_BASE_SECONDS": "1",
            "PSATRIAGE_RETRY_MAX_SECONDS": "20",
            "PSATRIAGE_MAX_ATTEMPTS": "60",
            **options.settings,
        }

    # -- delivering webhooks, as a PSA does ------------------------------------------------------

    def deliver(self, tenant: Tenant, delivery: Delivery, kind: str) -> None:
        """POST the delivery; after a 5xx or a dropped connection, wait a second and send it
        again (for up to 15 minutes)."""
        body, headers = delivery
        deadline = time.monotonic() + 900
        attempts = 0
        while True:
            attempts += 1
            try:
                response = self.client.post(tenant.webhook_path, content=body, headers=headers)
                status = response.status_code
                if status < 500:
                    break
            except httpx.HTTPError:
                status = 0
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        with self._lock:
            self.deliveries[kind] += 1
            self.deliveries["resent after 5xx or no answer"] += attempts - 1
            if status >= 400 or status == 0:
                self.refused.append(f"{tenant.name} {kind}: {status}")
            else:
                answer = response.json().get("status", "?")
                self.answers[f"{kind}: {status} {answer}"] += 1

    def send_new(self, tenant: Tenant) -> Sent:
        sent = tenant.new(self.phase, self.load_rng)
        self.pool.submit(self.deliver, tenant, sent.delivery, "new ticket")
        return sent

    def send_duplicate(self, tenant: Tenant) -> None:
        sent = tenant.pick(self.load_rng)
        if sent is None:
            return
        if self.load_rng.random() < 0.5:  # the same bytes again (a PSA retry)
            self.pool.submit(self.deliver, tenant, sent.delivery, "duplicate (same delivery)")
        else:  # a new delivery about the same new ticket
            delivery = tenant.kit.created(sent.ticket)
            self.pool.submit(self.deliver, tenant, delivery, "duplicate (new delivery)")

    def send_update(self, tenant: Tenant) -> None:
        sent = tenant.pick(self.load_rng)
        if sent is not None:
            self.pool.submit(self.deliver, tenant, tenant.kit.updated(sent.ticket), "update")

    # -- load -----------------------------------------------------------------------------------

    def load(self, until: Callable[[], bool]) -> None:
        """Poisson streams per tenant (new tickets, duplicates, updates) until ``until()``."""
        options, rng = self.options, self.load_rng
        streams: list[tuple[Tenant, str, float]] = []
        for tenant in self.tenants.values():
            streams += [
                (tenant, "new", 1.0),
                (tenant, "duplicate", options.duplicates),
                (tenant, "update", options.updates),
            ]
        now = time.monotonic()
        due = [now + rng.expovariate(self._rate(t, share)) for t, _, share in streams]
        while not until():
            index = min(range(len(due)), key=due.__getitem__)
            wait = due[index] - time.monotonic()
            if wait > 0 and self._stop.wait(min(wait, 0.5)):
                return
            if wait > 0.5:
                continue
            tenant, what, share = streams[index]
            {"new": self.send_new, "duplicate": self.send_duplicate, "update": self.send_update}[
                what
            ](tenant)
            due[index] = max(due[index], time.monotonic() - 1) + rng.expovariate(
                self._rate(tenant, share)
            )

    def _rate(self, tenant: Tenant, share: float) -> float:
        per_minute = self.options.rate * share
        if tenant.flooding and self.phase in {"flood", "chaos"}:
            per_minute *= self.options.flood
        return max(per_minute, 1e-6) / 60

    # -- faults ---------------------------------------------------------------------------------

    def chaos(self, ends: float) -> None:
        """Inject faults until ``ends`` (and, with ``every_kind``, until each kind was injected):
        the kinds are dealt from a shuffled deck, the waits are seeded too."""
        options, rng = self.options, self.fault_rng
        deck: list[str] = []
        seen: set[str] = set()
        while True:
            wait = rng.uniform(0.5, 1.5) * options.fault_every
            if self._stop.wait(wait):
                return
            everything = not options.every_kind or seen >= set(FAULT_KINDS)
            if time.monotonic() >= ends and everything:
                return
            if not deck:
                deck = list(FAULT_KINDS)
                rng.shuffle(deck)
            kind = deck.pop()
            seen.add(kind)
            try:
                self.inject(kind)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be made is reported
                with self._lock:
                    self.fault_errors.append(f"{kind}: {type(exc).__name__}: {exc}")

    def inject(self, kind: str) -> None:
        options, rng = self.options, self.fault_rng
        start = time.monotonic()
        target = ""
        if kind == "kill_worker":
            target = rng.choice(["worker-1", "worker-2"])
            self.service.kill(target)
        elif kind == "kill_web":  # over when the new process answers /readyz
            self.service.kill("web")
            fault = Fault(kind, "web", start, start)
            with self._lock:
                self.faults.append(fault)
            threading.Thread(target=self._web_back, args=(fault,), daemon=True).start()
            return
        elif kind == "restart_postgres":
            target = "postgresql"
            self.postgres.restart(rng.uniform(2, 8))
        elif kind == "restart_redis":
            target = "redis"
            self.redis.restart_empty(rng.uniform(1, 3))
        else:
            length = rng.uniform(0.5, 1.0) * options.fault_seconds
            window = Window(kind, start + length)
            if kind in PSA_FAULTS:
                free = [t for t in self.tenants.values() if not _active(t.window)]
                tenant = rng.choice(free or list(self.tenants.values()))
                tenant.window, target = window, tenant.name
            else:
                self.model.slow_seconds = rng.uniform(2, 6)
                self.model.window, target = window, "model"
            with self._lock:
                self.faults.append(Fault(kind, target, start, window.until))
            return
        end = time.monotonic()
        with self._lock:
            self.faults.append(Fault(kind, target, start, end))

    def _web_back(self, fault: Fault) -> None:
        with contextlib.suppress(SoakError):
            self.service.wait_ready()
        fault.end = time.monotonic()

    # -- watching -------------------------------------------------------------------------------

    def watch(self) -> None:
        """Each second: which tenants are degraded (seen from the PSAs, and as ``/readyz`` says
        when the web process answers), and each process's memory."""
        while not self._stop.wait(1.0):
            now = time.monotonic()
            phase = self.phase
            self.samples[phase] += 1
            for tenant in self.tenants.values():
                if tenant.oldest_wait(now) > self.options.degraded_after:
                    self.degraded[tenant.name][phase] += 1
            with contextlib.suppress(httpx.HTTPError, ValueError):
                ready = self.client.get("/readyz", timeout=2).json()
                self.reported_samples[phase] += 1
                for name in ready.get("degraded") or {}:
                    self.reported[name][phase] += 1
            self.service.sample_rss()

    # -- the whole run --------------------------------------------------------------------------

    def run(self, say: Callable[[str], None]) -> dict[str, Any]:
        options = self.options
        result: dict[str, Any] = {
            "commit": _commit(),
            "machine": machine(),
            "options": _public(options),
        }
        say("migrating the database, starting the service")
        self.service.migrate()
        self.service.start()
        self.service.wait_ready()
        self._watcher.start()
        say("warm-up: one ticket per tenant")
        self._enter("warmup")
        warm = [self.send_new(t) for t in self.tenants.values()]
        self._wait(lambda: all(s.noted_at is not None for s in warm), 300, "the warm-up tickets")
        self._enter("quiet")
        say(f"quiet run: {options.quiet_minutes:g} min, no flood, no faults")
        quiet_ends = time.monotonic() + options.quiet_minutes * 60
        self.load(lambda: time.monotonic() >= quiet_ends)
        self.service.sample_rss(warm=True)
        self._enter("flood")
        say(
            f"flood run: {options.flood_minutes:g} min, {FLOODING} floods at {options.flood:g}x, "
            f"the PSA of {HANGING} hangs"
        )
        flood_ends = time.monotonic() + options.flood_minutes * 60
        self.tenants[HANGING].window = Window("psa_hang", flood_ends)
        self.load(lambda: time.monotonic() >= flood_ends)
        self.tenants[HANGING].window = None
        self._enter("chaos")
        say(f"chaos run: {options.minutes:g} min, {FLOODING} floods at {options.flood:g}x, faults")
        chaos_ends = time.monotonic() + options.minutes * 60
        faults = threading.Thread(target=self.chaos, args=(chaos_ends,), name="soak-chaos")
        faults.start()
        self.load(lambda: time.monotonic() >= chaos_ends and not faults.is_alive())
        faults.join()
        self._enter("drain")
        say("drain: faults healed, waiting for every ticket")
        self._heal()
        self.pool.shutdown(wait=True)
        drained = self._drain(options.drain_minutes * 60)
        self.service.sample_rss()
        self._enter("end")
        result["drained"] = drained
        result["phases"] = {
            k: round(v[1] - v[0], 1) for k, v in self.phase_times.items() if k != "end"
        }
        result.update(self.report())
        result["machine"]["load_after"] = round(os.getloadavg()[0], 2)
        result["goals"] = goals(result)
        return result

    def _enter(self, phase: str) -> None:
        now = time.monotonic()
        if self.phase in self.phase_times:
            self.phase_times[self.phase][1] = now
        self.phase = phase
        self.phase_times[phase] = [now, now]

    def _heal(self) -> None:
        deadline = time.monotonic() + self.options.fault_seconds + 60
        for tenant in self.tenants.values():
            while _active(tenant.window) and time.monotonic() < deadline:
                time.sleep(0.5)
            tenant.window = None
        while _active(self.model.window) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.model.window = None

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise SoakError(f"{what} were not done in {timeout:.0f} s; see {self.root}")
            time.sleep(0.2)

    def _drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = sum(len(t.waiting) for t in self.tenants.values())
            if not waiting and self.service.running():
                with contextlib.suppress(psycopg.Error):
                    if not self._unfinished():
                        return True
            time.sleep(1.0)
        return False

    def _unfinished(self) -> int:
        states = ", ".join(f"'{s}'" for s in UNFINISHED)
        rows = self.postgres.query(f"SELECT count(*) FROM events WHERE state IN ({states})")  # noqa: S608
        return int(rows[0][0])

    def close(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=30)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
        self.service.stop()
        for tenant in self.tenants.values():
            tenant.kit.fake.stop()
        self.model.fake.stop()
        self.redis.stop()
        with contextlib.suppress(psycopg.Error, SoakError):
            self.postgres.start()  # a stop interrupted by ^C
            self.postgres.drop()

    # -- figures --------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        checks = self.check()
        faults = Counter(f.kind for f in self.faults)
        return {
            "tickets": {
                "sent": sum(len(t.tickets) for t in self.tenants.values()),
                "by_tenant": {
                    n: dict(Counter(s.phase for s in t.tickets.values()))
                    for n, t in self.tenants.items()
                },
                "by_phase": dict(
                    Counter(s.phase for t in self.tenants.values() for s in t.tickets.values())
                ),
            },
            "deliveries": dict(self.deliveries),
            "answers": dict(self.answers),
            "refused_deliveries": self.refused[:20],
            "faults": {kind: faults.get(kind, 0) for kind in FAULT_KINDS},
            "fault_errors": self.fault_errors,
            "fault_log": [
                {
                    "kind": f.kind,
                    "target": f.target,
                    "at_s": round(f.start - self.phase_times["chaos"][0], 1),
                    "seconds": round(f.end - f.start, 1),
                }
                for f in self.faults
            ],
            "checks": checks,
            "latency": self.latencies(),
            "slowest": self.slowest(10),
            "degraded": {
                name: {
                    phase: _share(self.degraded[name][phase], self.samples[phase])
                    for phase in (*PHASES, "drain")
                }
                for name in self.tenants
            },
            "reported_degraded": {
                name: {
                    phase: _share(self.reported[name][phase], self.reported_samples[phase])
                    for phase in (*PHASES, "drain")
                }
                for name in self.tenants
            },
            "memory": {
                slot.name: {
                    "after_warmup_mib": _mib(slot.rss_warm),
                    "peak_mib": _mib(slot.rss_peak),
                    "end_mib": _mib(slot.rss_now),
                    "starts": slot.starts,
                    "killed": slot.kills,
                    "exits": slot.exits,
                    "longest_lived": longest_life(slot),
                }
                for slot in self.service.slots.values()
            },
        }

    def check(self) -> dict[str, Any]:
        decisions: dict[tuple[str, str], list[tuple[bool, bool, bool]]] = defaultdict(list)
        for tenant, ticket, final, category, note in self.postgres.query(
            "SELECT tenant, ticket_id, final, wrote_category, wrote_note FROM decisions"
        ):
            decisions[(tenant, ticket)].append((bool(final), bool(category), bool(note)))
        states: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for tenant, ticket, state, count in self.postgres.query(
            "SELECT tenant, ticket_id, state, count(*) FROM events "
            "GROUP BY tenant, ticket_id, state"
        ):
            states[(tenant, ticket)][state] += int(count)
        lost: list[str] = []
        duplicated: list[str] = []
        problems: Counter[str] = Counter()
        for tenant in self.tenants.values():
            for ticket in tenant.order:
                key = (tenant.name, ticket)
                made = decisions.get(key, [])
                writes = len(tenant.kit.category_writes(ticket))
                notes = [n for n in tenant.kit.notes(ticket) if _is_our_note(n)]
                unfinished = {s: n for s, n in states[key].items() if s not in FINISHED}
                found = ticket_problems(made, writes, len(notes), unfinished)
                problems.update(found)
                label = f"{tenant.name}/{ticket}: {', '.join(found)}"
                if any(p.startswith("lost") or p.startswith("unfinished") for p in found):
                    lost.append(label)
                if any(p.startswith("duplicate") for p in found):
                    duplicated.append(label)
        claimed = self.postgres.query(
            "SELECT claims, count(*) FROM events GROUP BY claims ORDER BY claims"
        )
        outcomes = self.postgres.query("SELECT outcome, count(*) FROM decisions GROUP BY outcome")
        return {
            "lost": len(lost),
            "duplicates": len(duplicated),
            "problems": dict(problems),
            "examples": (lost + duplicated)[:20],
            "error_notes": sum(t.error_notes for t in self.tenants.values()),
            "events_by_state": dict(
                Counter(s for by_state in states.values() for s in by_state.elements())
            ),
            # how many times each event was taken (its fencing token at the end): above 1, a
            # worker was killed on it, its lease ran out, or it was given back to wait or retry
            "events_by_claims": {int(claims): int(count) for claims, count in claimed},
            "decisions_by_outcome": {str(outcome): int(count) for outcome, count in outcomes},
        }

    def slowest(self, count: int) -> list[dict[str, Any]]:
        """The slowest tickets to their note: when they were sent (seconds into the chaos run),
        the faults under way meanwhile, and their events' attempts."""
        chaos = self.phase_times["chaos"][0]
        noted = [s for t in self.tenants.values() for s in t.tickets.values() if s.noted_at]
        noted.sort(key=lambda s: (s.noted_at or 0) - s.sent_at, reverse=True)
        found = []
        for sent in noted[:count]:
            done = sent.noted_at or 0.0
            during = [
                f"{f.kind} {f.target}".strip()
                for f in self.faults
                if f.start <= done and f.end >= sent.sent_at
            ]
            attempts = self.postgres.query(
                "SELECT coalesce(sum(attempts), 0) FROM events "  # noqa: S608 - our own values
                f"WHERE tenant = '{sent.tenant}' AND ticket_id = '{sent.ticket}'"
            )
            found.append(
                {
                    "ticket": f"{sent.tenant}/{sent.ticket}",
                    "phase": sent.phase,
                    "sent_at_s": round(sent.sent_at - chaos, 1),
                    "seconds": round(done - sent.sent_at, 1),
                    "attempts": int(attempts[0][0]),
                    "faults": during,
                }
            )
        return found

    def latencies(self) -> dict[str, Any]:
        """Per tenant and for the others together (all but the flooding tenant and, in the flood
        run, the hanging one): p50/p99 by the phase the ticket was sent in."""
        found: dict[str, Any] = {}
        others: dict[str, list[float]] = defaultdict(list)
        for name, tenant in self.tenants.items():
            by_phase: dict[str, list[float]] = defaultdict(list)
            for sent in tenant.tickets.values():
                if sent.noted_at is not None:
                    by_phase[sent.phase].append(sent.noted_at - sent.sent_at)
            found[name] = {phase: percentiles(by_phase[phase]) for phase in PHASES}
            found[name]["flooding"] = tenant.flooding
            for phase in PHASES:
                if not tenant.flooding and not (phase == "flood" and name == HANGING):
                    others[phase] += by_phase[phase]
        found["others"] = {phase: percentiles(others[phase]) for phase in PHASES}
        found["others"]["flooding"] = False
        return found


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The soak's goals (issue: many tenants, one service), each with what was measured and
    whether it was met: nothing lost or doubled; while one tenant floods and another's PSA hangs,
    the others' p99 within 2× of the quiet run (together, and each); no process growing (its RSS
    at its end within 20 % of its RSS once settled, for each slot's longest-lived process)."""
    checks, latency = result["checks"], result["latency"]
    found = [
        {
            "goal": "0 lost, 0 duplicate decisions, writes or notes",
            "measured": f"{checks['lost']} lost, {checks['duplicates']} duplicates over "
            f"{result['tickets']['sent']} tickets and {sum(result['faults'].values())} faults",
            "met": checks["lost"] == 0 and checks["duplicates"] == 0,
        }
    ]
    ratios = {
        name: _ratio(figures)
        for name, figures in latency.items()
        if name not in {"others", FLOODING, HANGING}
    }
    together = _ratio(latency["others"])
    within = [name for name, ratio in ratios.items() if ratio is not None and ratio <= 2]
    known = [ratio for ratio in ratios.values() if ratio is not None]
    found.append(
        {
            "goal": "the others' p99 while one floods and one hangs within 2x of quiet",
            "measured": (f"together {together:.2f}x; " if together is not None else "together -; ")
            + (
                f"each {min(known):.2f}-{max(known):.2f}x, {len(within)} of {len(ratios)} within"
                if known
                else "each -"
            ),
            "met": together is not None and together <= 2 and len(within) == len(ratios),
        }
    )
    growth = {
        name: figures["longest_lived"]["growth"]
        for name, figures in result["memory"].items()
        if figures["longest_lived"] is not None
    }
    found.append(
        {
            "goal": "RSS at a process's end within 20 % of its RSS once settled",
            "measured": ", ".join(f"{name} {value:+.1%}" for name, value in growth.items()) or "-",
            "met": bool(growth)
            and len(growth) == len(result["memory"])
            and all(value <= 0.2 for value in growth.values()),
        }
    )
    return found


def _ratio(figures: dict[str, Any]) -> float | None:
    quiet, flood = figures["quiet"]["p99_s"], figures["flood"]["p99_s"]
    return round(flood / quiet, 3) if quiet and flood else None


def _commit() -> str:
    """The commit the soak runs (``+changes`` when the work tree differs from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return f"{head}+changes" if dirty else head


def longest_life(slot: Slot) -> dict[str, Any] | None:
    """The slot's longest-lived process: which one (1: the process started first), how long it
    ran, its RSS once settled (after the quiet run for the first process, 3 minutes in for one
    started again), at its peak and at its end (its kill or the end of the run)."""
    life = slot.longest()
    if life is None or not life.rss_settled:
        return None
    ended = life.ended or time.monotonic()
    return {
        "process": slot.lives.index(life) + 1,
        "minutes": round((ended - life.started) / 60, 1),
        "settled_mib": _mib(life.rss_settled),
        "peak_mib": _mib(life.rss_peak),
        "last_mib": _mib(life.rss_last),
        "growth": round(life.rss_last / life.rss_settled - 1, 4),
    }


def ticket_problems(
    made: list[tuple[bool, bool, bool]], writes: int, notes: int, unfinished: dict[str, int]
) -> list[str]:
    """What is wrong with one ticket: its decisions (final, wrote category, wrote note), the
    category writes and our notes at the fake, and its events not finished (by state)."""
    found = []
    if not made:
        found.append("lost: no decision")
    elif len(made) > 1:
        found.append(f"duplicate: {len(made)} decisions")
    if made and not all(final for final, _, _ in made):
        found.append("unfinished: decision not final")
    should_write = any(category for _, category, _ in made)
    should_note = any(note for _, _, note in made)
    if writes > 1:
        found.append(f"duplicate: {writes} category writes")
    elif should_write and not writes:
        found.append("lost: category not written")
    if notes > 1:
        found.append(f"duplicate: {notes} notes")
    elif should_note and not notes:
        found.append("lost: no note")
    found += [f"unfinished: {n} event(s) {s}" for s, n in sorted(unfinished.items())]
    return found


def _is_our_note(text: object) -> bool:
    return "psatriage:" in str(text) and "psatriage:error:" not in str(text)


def _active(window: Window | None) -> bool:
    return window is not None and time.monotonic() < window.until


def percentiles(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50_s": None, "p99_s": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(p99, 3),
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mib(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value else None


def _public(options: Options) -> dict[str, Any]:
    """The options as JSON, without the server URL (it may hold a password)."""
    values = {f.name: getattr(options, f.name) for f in fields(options)}
    values.pop("postgres_url")
    values["root"] = None
    return values


@contextmanager
def _folder(root: Path | None) -> Iterator[Path]:
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="psatriage-soak-") as made:
        yield Path(made)


def run(options: Options, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """One soak; the figures and the checks as a dict (see the module docstring)."""
    with _folder(options.root) as root:
        soak = Soak(options, root)
        try:
            return soak.run(say)
        finally:
            soak.close()


# -- output ---------------------------------------------------------------------------------------


def render(result: dict[str, Any], console: Console) -> None:
    checks, tickets = result["checks"], result["tickets"]
    summary = Table(title="Chaos soak", show_header=False)
    summary.add_row("tickets sent", f"{tickets['sent']} ({_pairs(tickets['by_phase'])})")
    summary.add_row("deliveries", _pairs(result["deliveries"]))
    summary.add_row("faults injected", _pairs(result["faults"]))
    summary.add_row("lost", str(checks["lost"]))
    summary.add_row("duplicates", str(checks["duplicates"]))
    summary.add_row("events by state", _pairs(checks["events_by_state"]))
    summary.add_row("events by times claimed", _pairs(checks["events_by_claims"]))
    summary.add_row("decisions by outcome", _pairs(checks["decisions_by_outcome"]))
    summary.add_row("error notes", str(checks["error_notes"]))
    summary.add_row("refused deliveries", str(len(result["refused_deliveries"])))
    summary.add_row("drained", "yes" if result["drained"] else "NO")
    summary.add_row("phases (s)", _pairs(result["phases"]))
    machine_ = result["machine"]
    summary.add_row(
        "machine",
        f"{machine_['cpu']}, {machine_['cores']} cores; load {machine_['load_before']} before, "
        f"{machine_['load_after']} after; commit {result['commit']}",
    )
    console.print(summary)
    for example in checks["examples"]:
        console.print(f"  {example}", markup=False, highlight=False)

    latency = Table(title="Webhook to note, p50 / p99 (s), and share of time degraded")
    columns = ("tenant", "quiet", "flood", "p99 flood/quiet", "chaos", "degraded (chaos)")
    for column in (*columns, "/readyz degraded (chaos)"):
        latency.add_column(column)
    for name, figures in result["latency"].items():
        degraded = result["degraded"].get(name, {}).get("chaos")
        reported = result.get("reported_degraded", {}).get(name, {}).get("chaos")
        role = {FLOODING: " (flooding)", HANGING: " (hangs in flood run)"}.get(name, "")
        quiet, flood = figures["quiet"]["p99_s"], figures["flood"]["p99_s"]
        latency.add_row(
            name + role,
            _pair(figures["quiet"]),
            _pair(figures["flood"]),
            f"{flood / quiet:.2f}" if quiet and flood else "-",
            _pair(figures["chaos"]),
            "-" if degraded is None else f"{degraded:.1%}",
            "-" if reported is None else f"{reported:.1%}",
        )
    console.print(latency)

    memory = Table(title="Memory (RSS, MiB)")
    for column in ("process", "after warm-up", "peak", "end", "starts", "killed", "exits"):
        memory.add_column(column)
    memory.add_column("longest-lived: #, min, settled -> end (growth)")
    for name, figures in result["memory"].items():
        life = figures["longest_lived"]
        memory.add_row(
            name,
            str(figures["after_warmup_mib"]),
            str(figures["peak_mib"]),
            str(figures["end_mib"]),
            str(figures["starts"]),
            str(figures["killed"]),
            ", ".join(map(str, figures["exits"])) or "-",
            "-"
            if life is None
            else f"#{life['process']}, {life['minutes']:g} min, {life['settled_mib']} -> "
            f"{life['last_mib']} ({life['growth']:+.1%})",
        )
    console.print(memory)

    verdicts = Table(title="Goals")
    for column in ("goal", "measured", "met"):
        verdicts.add_column(column)
    for goal in result["goals"]:
        verdicts.add_row(goal["goal"], goal["measured"], "yes" if goal["met"] else "NO")
    console.print(verdicts)


def _pair(figures: dict[str, Any]) -> str:
    if not figures["n"]:
        return "-"
    return f"{figures['p50_s']:.2f} / {figures['p99_s']:.2f}"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Options(postgres_url="", postgres_ctl="")
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL", ""),
        help="a PostgreSQL server the soak may restart (a database is created on it and dropped); "
        "default: PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL",
    )
    parser.add_argument(
        "--postgres-ctl",
        default=os.environ.get("PSATRIAGE_TEST_POSTGRES_CTL", ""),
        help="the command that stops/starts that server (stop or start is appended); default: "
        "PSATRIAGE_TEST_POSTGRES_CTL",
    )
    number = {"type": float}
    parser.add_argument("--minutes", default=defaults.minutes, help="the chaos run", **number)
    parser.add_argument("--quiet-minutes", default=defaults.quiet_minutes, **number)
    parser.add_argument("--flood-minutes", default=defaults.flood_minutes, **number)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--rate", default=defaults.rate, help="new tickets per minute per tenant", **number
    )
    parser.add_argument("--flood", default=defaults.flood, help="the flooding tenant's ×", **number)
    parser.add_argument("--duplicates", default=defaults.duplicates, **number)
    parser.add_argument("--updates", default=defaults.updates, **number)
    parser.add_argument("--fault-every", default=defaults.fault_every, **number)
    parser.add_argument("--fault-seconds", default=defaults.fault_seconds, **number)
    parser.add_argument("--model-latency", default=defaults.model_latency, **number)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--lease-seconds", type=int, default=defaults.lease_seconds)
    parser.add_argument("--degraded-after", default=defaults.degraded_after, **number)
    parser.add_argument("--drain-minutes", default=defaults.drain_minutes, **number)
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PSATRIAGE_X=VALUE",
        help="a setting for every process started (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    console = Console(
        stderr=args.json,
        markup=False,
        highlight=False,
        width=None if sys.stdout.isatty() else 120,
    )
    if not args.postgres_url or not args.postgres_ctl:
        console.print("bench.soak needs --postgres-url and --postgres-ctl (or their variables)")
        return 2
    options = Options(
        postgres_url=args.postgres_url,
        postgres_ctl=args.postgres_ctl,
        minutes=args.minutes,
        quiet_minutes=args.quiet_minutes,
        flood_minutes=args.flood_minutes,
        seed=args.seed,
        rate=args.rate,
        flood=args.flood,
        duplicates=args.duplicates,
        updates=args.updates,
        fault_every=args.fault_every,
        fault_seconds=args.fault_seconds,
        model_latency=args.model_latency,
        workers=args.workers,
        lease_seconds=args.lease_seconds,
        degraded_after=args.degraded_after,
        drain_minutes=args.drain_minutes,
        settings=dict(item.split("=", 1) for item in args.set),
        root=args.logs,
    )
    try:
        result = run(options, say=lambda text: console.print(f"{time.strftime('%H:%M:%S')} {text}"))
    except SoakError as exc:
        console.print(f"soak failed: {exc}")
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, console)
    return 0 if result["checks"]["lost"] == 0 and result["checks"]["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
