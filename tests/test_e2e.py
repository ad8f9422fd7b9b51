"""End to end for every PSA: one real `psatriage serve` process with a tenant per PSA, each on its
fake, and signed "ticket created" deliveries: webhook → queue → worker → PSA fake → note.

Each check waits for the ledger to say the event finished, then looks at what the PSA received.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from psatriage.psa import adapters
from psatriage.settings import Settings
from psatriage.store.tables import EventState
from tests.fakes.halopsa import FakeHaloPSA
from tests.fakes.kit import ContractKit, Delivery
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import (
    OPENAI_KEY_ENV,
    child_pids,
    free_port,
    kit_for,
    kit_tenant,
    to_toml,
)

pytestmark = pytest.mark.slow

PSAS = sorted(adapters())
DEADLINE = 120  # seconds: a busy machine may take long to start the service or finish an event


@dataclass
class Service:
    """The running service and the fakes behind its tenants (named after their PSA)."""

    url: str
    kits: dict[str, ContractKit]
    pid: int = 0  # the serve process
    data: Path | None = None  # its PSATRIAGE_DATA_DIR

    def deliver(self, psa: str, delivery: Delivery) -> httpx.Response:
        body, headers = delivery
        path = f"/webhooks/{psa}{self.kits[psa].webhook_path_suffix}"
        return httpx.post(self.url + path, content=body, headers=headers, timeout=30)

    def finished(self, event_id: int) -> dict[str, Any]:
        """The event once the ledger says it reached a final state."""
        deadline = time.monotonic() + DEADLINE
        while True:
            event: dict[str, Any] = httpx.get(f"{self.url}/api/events/{event_id}").json()
            if EventState(event["state"]).terminal:
                return event
            assert time.monotonic() < deadline, f"event {event_id} is still {event['state']}"
            time.sleep(0.05)

    def events_for(self, psa: str, ticket: str) -> list[dict[str, Any]]:
        params = {"tenant": psa, "ticket_id": ticket}
        events: list[dict[str, Any]] = httpx.get(f"{self.url}/api/events", params=params).json()[
            "events"
        ]
        return events


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("e2e")
    with ExitStack() as stack:
        llm = stack.enter_context(FakeOpenAI())
        kits: dict[str, ContractKit] = {}
        for psa in PSAS:
            kits[psa] = kit_for(psa)
            stack.callback(kits[psa].fake.stop)
        tenants = {psa: kit_tenant(kit, llm) for psa, kit in kits.items()}
        url, pid = serve(stack, root, tenants, kits)
        yield Service(url, kits, pid, root / "data")


def serve(
    stack: ExitStack,
    root: Path,
    tenants: dict[str, dict[str, Any]],
    kits: dict[str, ContractKit],
) -> tuple[str, int]:
    """Start the default ``psatriage serve`` (4 workers, SQLite in ``root``) on ``tenants``,
    stopped when ``stack`` closes; its URL once ``/readyz`` answers, and its process id."""
    config = root / "psatriage.toml"
    config.write_text(to_toml({"tenants": tenants}), encoding="utf-8")
    env = {
        **os.environ,
        **{key: value for kit in kits.values() for key, value in kit.env.items()},
        OPENAI_KEY_ENV: DEFAULT_API_KEY,
        "PSATRIAGE_CONFIG": str(config),
        "PSATRIAGE_DATA_DIR": str(root / "data"),
        "PSATRIAGE_LOG_FORMAT": "json",
        "PSATRIAGE_WORKERS": "4",
    }
    port = free_port()
    log = stack.enter_context((root / "serve.log").open("wb"))
    process = subprocess.Popen(
        [sys.executable, "-m", "psatriage", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(process.wait, timeout=60)
    stack.callback(process.terminate)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process, root / "serve.log")
    return url, process.pid


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(log.read_text())
        time.sleep(0.1)


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_worker_processes_yield_the_cpu_to_the_web_process(service: Service) -> None:
    """Busy workers must not delay a webhook's acknowledgement: serve's worker processes (one
    per core by default) run at a lower priority (worker_nice, 10 by default) than the web
    process."""
    wanted = min(19, _niceness(service.pid) + 10)
    expected = Settings().worker_process_count  # the environment serve was started with
    deadline = time.monotonic() + DEADLINE  # the workers may still be starting
    while True:
        workers = child_pids(service.pid)
        if len(workers) == expected and all(_niceness(w) == wanted for w in workers):
            return
        assert time.monotonic() < deadline, (workers, [_niceness(w) for w in workers], wanted)
        time.sleep(0.1)


def _ours(kit: ContractKit, ticket: str) -> list[str]:
    return [text for text in kit.notes(ticket) if "psatriage:" in text]


@pytest.mark.parametrize("psa", PSAS)
def test_a_created_ticket_gets_one_category_write_and_one_note(service: Service, psa: str) -> None:
    kit = service.kits[psa]
    ticket = kit.new_ticket("Printer on 3rd floor", "My printer has a paper jam")
    delivery = kit.created(ticket)
    response = service.deliver(psa, delivery)
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]

    event = service.finished(event_id)
    assert event["state"] == "done", event
    assert event["decision"]["outcome"] == "applied"
    assert len(event["model_calls"]) == 1 and event["model_calls"][0]["tokens_in"] > 0
    assert len(kit.category_writes(ticket)) == 1
    assert len(_ours(kit, ticket)) == 1

    # the same delivery again (the PSA retrying) is recorded nowhere and queues nothing
    again = service.deliver(psa, delivery)
    assert again.status_code == 200 and again.json() == {
        "status": "duplicate",
        "event_id": event_id,
    }
    assert [e["id"] for e in service.events_for(psa, ticket)] == [event_id]
    assert len(kit.category_writes(ticket)) == 1 and len(_ours(kit, ticket)) == 1


@pytest.mark.parametrize("psa", PSAS)
def test_five_concurrent_deliveries_make_one_event_one_write_and_one_note(
    service: Service, psa: str
) -> None:
    kit = service.kits[psa]
    ticket = kit.new_ticket("Laptop", "My laptop will not power on")
    delivery = kit.created(ticket)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: service.deliver(psa, delivery), range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]
    (event_id,) = {r.json()["event_id"] for r in responses}

    assert service.finished(event_id)["state"] == "done"
    assert [e["id"] for e in service.events_for(psa, ticket)] == [event_id]
    assert len(kit.category_writes(ticket)) == 1
    assert len(_ours(kit, ticket)) == 1


def test_the_worker_processes_share_one_halopsa_token(service: Service) -> None:
    """With no PSATRIAGE_SECRET_KEY, ``serve`` on SQLite makes a key for its processes: they keep
    one HaloPSA token, sealed, in the file beside the queue's, and tickets spread over every
    worker process cost one token request between them."""
    kit = service.kits["halopsa"]
    assert isinstance(kit.fake, FakeHaloPSA)
    tickets = [kit.new_ticket(f"VPN drops ({n})", "The VPN drops every hour") for n in range(12)]
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda t: service.deliver("halopsa", kit.created(t)), tickets))
    assert [r.status_code for r in responses] == [202] * 12
    assert all(service.finished(r.json()["event_id"])["state"] == "done" for r in responses)
    assert kit.fake.token_requests() == 1
    assert service.data is not None
    with closing(sqlite3.connect(service.data / "queue.db.shared")) as shared:
        sealed = [value for (value,) in shared.execute("SELECT value FROM shared_tokens")]
    assert sealed  # HaloPSA's, and Kaseya BMS's login
    assert kit.fake.token is not None
    assert all(kit.fake.token.encode() not in value for value in sealed)
