"""Kaseya BMS on polling alone, through real `psatriage serve` processes: every ticket created at
the fake is categorized exactly once, including those created while the service was down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from psatriage.store import db
from psatriage.store.ledger import Ledger
from psatriage.store.polls import PollMarks
from psatriage.store.tables import utcnow
from tests.fakes.kaseya_bms import FakeKaseyaBMS
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI
from tests.harness import free_port, to_toml

# a web and a worker process start twice: minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _ours(fake: FakeKaseyaBMS, ticket: int) -> list[dict[str, Any]]:
    return [n for n in fake.notes(ticket) if "psatriage:" in n["Details"]]


def _serve(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    log = (root / f"serve-{time.monotonic_ns()}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "psatriage", "serve", "--port", str(free_port())],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 300  # a busy machine may take long to start the service
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


class Records:
    """The service's database, read beside it: the events ledger and the poll marks."""

    def __init__(self, data_dir: Path) -> None:
        self.engine = db.make_engine(f"sqlite:///{data_dir / 'psatriage.db'}")
        sessions = db.make_sessionmaker(self.engine)
        self.ledger = Ledger(self.engine, sessions)
        self.polls = PollMarks(self.engine, sessions)

    def done(self, count: int) -> bool:
        """Whether the ledger holds ``count`` events, all done (once the service made it)."""
        return db.at_head(self.engine) and self.ledger.count_by_state() == {"done": count}

    def polled_since(self, moment: Any) -> bool:
        row = self.polls.get("bms")
        return row is not None and row.mark >= moment


def test_poll_only_tenant_across_a_restart(tmp_path: Path) -> None:
    with FakeKaseyaBMS() as fake, FakeOpenAI() as llm:
        tenant = {
            "psa": "kaseya_bms",  # polling is BMS's default trigger
            "poll_seconds": 5,
            "connection": fake.connection_config(),
            "classifier": {"api_key": "env:POLL_OPENAI_KEY", "base_url": f"{llm.url}/v1"},
        }
        config = tmp_path / "psatriage.toml"
        config.write_text(to_toml({"tenants": {"bms": tenant}}), encoding="utf-8")
        env = {
            **os.environ,
            **fake.secret_env(),
            "POLL_OPENAI_KEY": DEFAULT_API_KEY,
            "PSATRIAGE_CONFIG": str(config),
            "PSATRIAGE_DATA_DIR": str(tmp_path / "data"),
            "PSATRIAGE_HOUSEKEEPING_SECONDS": "1",
            "PSATRIAGE_LOG_FORMAT": "json",
        }
        records = Records(tmp_path / "data")
        first = [fake.add_ticket(f"Printer {n}", "My printer has a paper jam") for n in range(3)]
        process, log = _serve(tmp_path, env)
        try:
            _wait_until(lambda: records.done(3), "the first three tickets' events to be done")
        finally:
            process.terminate()
            process.wait(timeout=20)
            log.close()
        assert all(len(_ours(fake, t)) == 1 for t in first)

        while_down = [fake.add_ticket(f"Laptop {n}", "will not power on") for n in range(3)]
        process, log = _serve(tmp_path, env)
        try:
            _wait_until(lambda: records.done(6), "the tickets created while down to be done")
            settled = utcnow()  # one more poll: its overlap sees every ticket again
            _wait_until(lambda: records.polled_since(settled), "one more poll")
        finally:
            process.terminate()
            process.wait(timeout=20)
            log.close()
        assert records.done(6)  # the ledger dropped what the last poll saw again
        records.engine.dispose()
        for ticket in first + while_down:
            assert len(_ours(fake, ticket)) == 1, ticket
            assert len(fake.patches(ticket)) == 1, ticket
