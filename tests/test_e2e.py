"""End to end: a real `psatriage serve` process, a signed ConnectWise callback, and the fakes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.harness import TENANT, Harness, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def service(harness: Harness, tmp_path: Path) -> Iterator[str]:
    config = harness.write_config()
    port = free_port()
    env = {
        **os.environ,
        **harness.env,
        "PSATRIAGE_CONFIG": str(config),
        "PSATRIAGE_DATA_DIR": str(tmp_path / "data"),
        "PSATRIAGE_LOG_FORMAT": "json",
        "PSATRIAGE_WORKERS": "4",
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "psatriage", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_callback_to_a_running_service_writes_one_patch_and_one_note(
    harness: Harness, service: str
) -> None:
    ticket = harness.cw.add_ticket("Printer on 3rd floor", "My printer has a paper jam")
    body, headers = harness.cw.callback(ticket)
    started = time.monotonic()
    response = httpx.post(f"{service}/webhooks/{TENANT}", content=body, headers=headers)
    assert response.status_code == 202
    event_id = response.json()["event_id"]

    deadline = started + 15
    while time.monotonic() < deadline:
        event = httpx.get(f"{service}/api/events/{event_id}").json()
        if event["state"] not in {"received", "processing"}:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started

    assert event["state"] == "done", event
    assert elapsed < 5
    assert len(harness.cw.patches(ticket)) == 1
    ours = [n for n in harness.cw.notes(ticket) if "psatriage:" in n["text"]]
    assert len(ours) == 1 and ours[0]["internalAnalysisFlag"] is True
    assert event["decision"]["outcome"] == "applied"
    assert event["decision"]["category"] == "Hardware › Printer › Paper jam"
    assert len(event["model_calls"]) == 1 and event["model_calls"][0]["tokens_in"] > 0
    decisions = httpx.get(f"{service}/api/decisions", params={"ticket_id": str(ticket)}).json()
    assert [d["event_id"] for d in decisions["decisions"]] == [event_id]

    # the same callback again (ConnectWise retrying) changes nothing
    again = httpx.post(f"{service}/webhooks/{TENANT}", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    time.sleep(0.3)
    assert len(harness.cw.patches(ticket)) == 1


def test_five_concurrent_deliveries_make_one_write_and_one_note(
    harness: Harness, service: str
) -> None:
    ticket = harness.cw.add_ticket("Laptop", "My laptop will not power on")
    body, headers = harness.cw.callback(ticket)
    with ThreadPoolExecutor(5) as pool:
        statuses = sorted(
            pool.map(
                lambda _: (
                    httpx.post(
                        f"{service}/webhooks/{TENANT}", content=body, headers=headers
                    ).status_code
                ),
                range(5),
            )
        )
    assert statuses == [200, 200, 200, 200, 202]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _ours(harness, ticket):
        time.sleep(0.05)
    time.sleep(0.5)  # room for a duplicate to show up, if there were one
    assert len(harness.cw.patches(ticket)) == 1
    assert len(_ours(harness, ticket)) == 1


def _ours(harness: Harness, ticket: int) -> list[dict[str, object]]:
    return [n for n in harness.cw.notes(ticket) if "psatriage:" in str(n["text"])]
