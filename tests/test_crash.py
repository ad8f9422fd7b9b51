"""Crash safety: real `serve --no-worker` and `worker` processes and a burst of 500 tickets, with
the worker SIGKILLed twice mid-burst and restarted, or the PostgreSQL server stopped twice, or
the default `serve`'s own worker process SIGKILLed twice (serve starts another); every ticket ends
done with one write and one note."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from psatriage.config import load_config
from psatriage.runtime import Runtime
from tests.conftest import RestartablePostgres
from tests.harness import TENANT, Harness, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # minutes on a loaded machine

TICKETS = 500
KILL_AT = (100, 250)  # kill the worker when this many notes have arrived
STALL_SECONDS = 300  # no new note for this long: the service is stuck, not slow


class Service:
    """``serve --no-worker`` beside a ``worker`` process (``split``), or the default ``serve``
    with the worker process it starts itself."""

    def __init__(
        self, harness: Harness, root: Path, extra_env: dict[str, str], *, split: bool = True
    ) -> None:
        self.root = root
        self.port = free_port()
        self.env = {
            **os.environ,
            **harness.env,
            **extra_env,
            "PSATRIAGE_CONFIG": str(harness.write_config()),
            "PSATRIAGE_DATA_DIR": str(root / "data"),
            "PSATRIAGE_LOG_FORMAT": "json",
            "PSATRIAGE_LOG_LEVEL": "warning",
            "PSATRIAGE_LEASE_SECONDS": "2",
            "PSATRIAGE_HOUSEKEEPING_SECONDS": "0.5",
            "PSATRIAGE_RETRY_BASE_SECONDS": "0.2",
            "PSATRIAGE_RETRY_MAX_SECONDS": "1",
            "PSATRIAGE_MAX_ATTEMPTS": "20",
            "PSATRIAGE_WORKERS": "8",
        }
        self.logs: list[Any] = []
        if split:
            self.web = self._start("serve", "--no-worker", "--port", str(self.port))
            self.workers = [self._start("worker", "--workers", "8")]
        else:
            self.web = self._start("serve", "--port", str(self.port))
            self.workers = []
        self.kills = 0

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{args[0]}-{time.monotonic_ns()}.log").open("wb")
        self.logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "psatriage", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 180  # a loaded 2-core machine can take a while to start
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the service did not become ready")

    def kill_worker(self) -> None:
        (worker,) = self.workers
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        self.kills += 1
        self.workers = [self._start("worker", "--workers", "8")]

    def stop(self) -> None:
        for process in (self.web, *self.workers):
            process.terminate()
        for process in (self.web, *self.workers):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self.logs:
            log.close()


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def backends(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {
        "PSATRIAGE_DATABASE_URL": request.getfixturevalue("postgres_url"),
        "PSATRIAGE_QUEUE_URL": request.getfixturevalue("redis_url"),
    }


@pytest.fixture
def service(harness: Harness, tmp_path: Path, backends: dict[str, str]) -> Iterator[Service]:
    harness.llm.latency = 0.01
    running = Service(harness, tmp_path, backends)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def _our_notes(harness: Harness, ticket: int) -> list[dict[str, Any]]:
    return [n for n in harness.cw.notes(ticket) if "psatriage:" in str(n["text"])]


def test_killing_the_worker_mid_burst_loses_nothing_and_doubles_nothing(
    harness: Harness, service: Service, backends: dict[str, str]
) -> None:
    tickets = [
        harness.cw.add_ticket(f"Printer {n}", "My printer has a paper jam") for n in range(TICKETS)
    ]
    deliveries = [harness.cw.callback(t) for t in tickets]
    with httpx.Client(base_url=service.url) as client, ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(
                lambda d: (
                    client.post(f"/webhooks/{TENANT}", content=d[0], headers=d[1]).status_code
                ),
                deliveries,
            )
        )
    assert statuses == [202] * TICKETS

    # A loaded 2-core machine may take many minutes for the burst: give up only when no new
    # note has arrived for STALL_SECONDS, never on the total time.
    stalled_at = time.monotonic() + STALL_SECONDS
    pending = list(KILL_AT)
    noted = 0
    while time.monotonic() < stalled_at:
        now_noted = sum(1 for t in tickets if _our_notes(harness, t))
        if now_noted > noted:
            noted, stalled_at = now_noted, time.monotonic() + STALL_SECONDS
        if pending and noted >= pending[0]:
            service.kill_worker()
            pending.pop(0)
        if noted == TICKETS and not pending:
            break
        time.sleep(0.05)
    assert service.kills == len(KILL_AT)

    _assert_done_once_each(harness, service, tickets, backends)


def _children(pid: int) -> list[int]:
    """The running child processes of ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker in /proc")
def test_killing_a_worker_process_of_serve_mid_burst_loses_nothing_and_doubles_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    """The default `serve`: a web process and a worker process it started. The worker process is
    SIGKILLed twice mid-burst; serve starts another each time."""
    harness.llm.latency = 0.01
    service = Service(harness, tmp_path, {}, split=False)
    try:
        service.wait_ready()
        tickets = [
            harness.cw.add_ticket(f"Printer {n}", "My printer has a paper jam")
            for n in range(TICKETS)
        ]
        deliveries = [harness.cw.callback(t) for t in tickets]
        with httpx.Client(base_url=service.url, timeout=30) as client:
            assert PsaSender(client).deliver_all(deliveries) == [202] * TICKETS
        killed: list[int] = []
        for count in KILL_AT:
            _wait_for_notes(harness, tickets, count)
            deadline = time.monotonic() + 180
            while not (workers := [p for p in _children(service.web.pid) if p not in killed]):
                assert time.monotonic() < deadline, "serve started no worker process"
                time.sleep(0.1)
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
        _wait_for_notes(harness, tickets, TICKETS)
        _assert_done_once_each(harness, service, tickets, {})
    finally:
        service.stop()


class Outage(Protocol):
    def down(self) -> AbstractContextManager[None]: ...


class RestartableRedis:
    """A Redis server of this test's own, which keeps nothing on disk: killed, it comes back
    empty, as the queue's Redis would after a crash."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = (root / "redis.log").open("wb")
        self._process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return process
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    @contextmanager
    def down(self) -> Iterator[None]:
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)
        try:
            yield
        finally:
            self._process = self._start()

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(timeout=10)
        self._log.close()


@pytest.fixture(params=["postgresql", "redis-queue"])
def outage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Outage, dict[str, str]]]:
    """What goes away, and the backends the service runs on: PostgreSQL holding the database and
    the queue, or the Redis holding the queue (database on PostgreSQL)."""
    if request.param == "postgresql":
        server: RestartablePostgres = request.getfixturevalue("restartable_postgres")
        yield server, {"PSATRIAGE_DATABASE_URL": server.url, "PSATRIAGE_QUEUE_URL": server.url}
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (no Redis this test may kill)")
    database: str = request.getfixturevalue("postgres_url")
    redis_server = RestartableRedis(tmp_path)
    try:
        yield (
            redis_server,
            {"PSATRIAGE_DATABASE_URL": database, "PSATRIAGE_QUEUE_URL": redis_server.url},
        )
    finally:
        redis_server.stop()


def test_a_server_going_away_mid_burst_loses_nothing_and_doubles_nothing(
    harness: Harness, tmp_path: Path, outage: tuple[Outage, dict[str, str]]
) -> None:
    """The server is away for a few seconds twice: once while half the webhooks are still
    arriving (with the database away the PSA sees 5xx and retries), once mid-processing. A
    killed Redis comes back empty: the reaper re-queues from the ledger."""
    server, backends = outage
    harness.llm.latency = 0.01
    service = Service(harness, tmp_path, backends)
    try:
        service.wait_ready()
        tickets = [
            harness.cw.add_ticket(f"Printer {n}", "My printer has a paper jam")
            for n in range(TICKETS)
        ]
        deliveries = [harness.cw.callback(t) for t in tickets]
        half = TICKETS // 2
        with httpx.Client(base_url=service.url, timeout=10) as client:
            psa = PsaSender(client)
            assert psa.deliver_all(deliveries[:half]) == [202] * half
            _wait_for_notes(harness, tickets, 100)
            with ThreadPoolExecutor(1) as background:
                with server.down():
                    late = background.submit(psa.deliver_all, deliveries[half:])
                    time.sleep(OUTAGE_SECONDS)
                assert late.result() == [202] * (TICKETS - half)
            _wait_for_notes(harness, tickets, 350)
            with server.down():
                time.sleep(OUTAGE_SECONDS)
            _wait_for_notes(harness, tickets, TICKETS)
        if isinstance(server, RestartablePostgres):
            assert psa.refused > 0  # the edge said 503 while the ledger was away; retries got in
        _assert_done_once_each(harness, service, tickets, backends)
    finally:
        service.stop()


OUTAGE_SECONDS = 3


class PsaSender:
    """Delivers webhooks as a PSA does: a 5xx or a dropped connection is retried after a pause."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.refused = 0
        self._lock = threading.Lock()

    def deliver_all(self, deliveries: list[tuple[bytes, dict[str, str]]]) -> list[int]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(self.deliver, deliveries))

    def deliver(self, delivery: tuple[bytes, dict[str, str]]) -> int:
        body, headers = delivery
        deadline = time.monotonic() + 60
        while True:
            try:
                status = self.client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
                if status.status_code < 500 or time.monotonic() > deadline:
                    return status.status_code
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            with self._lock:
                self.refused += 1
            time.sleep(0.25)


def _wait_for_notes(harness: Harness, tickets: list[int], count: int) -> None:
    """Wait until ``count`` tickets have our note, for as long as notes keep arriving."""
    stalled_at = time.monotonic() + STALL_SECONDS
    noted = 0
    while noted < count:
        now_noted = sum(1 for t in tickets if _our_notes(harness, t))
        if now_noted > noted:
            noted, stalled_at = now_noted, time.monotonic() + STALL_SECONDS
        assert time.monotonic() < stalled_at, f"no new note for {STALL_SECONDS} s at {noted}"
        time.sleep(0.05)


def _assert_done_once_each(
    harness: Harness, service: Service, tickets: list[int], backends: dict[str, str]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**harness.env, **backends}.items():
            patch.setenv(key, value)
        runtime = Runtime(
            harness.settings(data_dir=service.root / "data", **_settings(backends)),
            load_config(Path(service.env["PSATRIAGE_CONFIG"])),
            migrate=False,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and runtime.ledger.count_by_state() != {
            "done": len(tickets)
        }:
            time.sleep(0.2)
        assert runtime.ledger.count_by_state() == {"done": len(tickets)}
    finally:
        runtime.close()
    for ticket in tickets:
        assert len(harness.cw.patches(ticket)) == 1, ticket
        assert len(_our_notes(harness, ticket)) == 1, ticket


def _settings(backends: dict[str, str]) -> dict[str, str]:
    names = {"PSATRIAGE_DATABASE_URL": "database_url", "PSATRIAGE_QUEUE_URL": "queue_url"}
    return {names[k]: v for k, v in backends.items()}
