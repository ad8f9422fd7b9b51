"""What ``psatriage serve`` and ``psatriage worker`` do to their own process (the processes
themselves run in ``tests/test_e2e.py`` and ``tests/test_crash.py``)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from psatriage.cli.serve import _freeze_heap, _key_for_this_run
from psatriage.shared.sqlite_backend import for_queue
from tests.harness import child_pids, free_port


def test_start_up_objects_are_left_out_of_later_garbage_collections() -> None:
    """A full collection over a started process's objects stalled every request in flight;
    after start-up they are frozen, and what is made later is collected as before."""
    gc.unfreeze()
    try:
        _freeze_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # this process's modules, at least
        later = [[n] for n in range(100)]
        assert gc.get_freeze_count() <= frozen  # frozen objects may still be freed
        collected = (o for generation in range(3) for o in gc.get_objects(generation=generation))
        assert any(tracked is later[0] for tracked in collected)
    finally:
        gc.unfreeze()


DEADLINE = 180  # seconds: a busy 2-core machine starting three Python processes


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_worker_processes_before_serve_ends(tmp_path: Path) -> None:
    """A service manager stops ``serve`` with SIGTERM: it stops its worker processes and waits
    for them (their tickets finish) before it ends, instead of leaving them to notice that
    their parent is gone."""
    (tmp_path / "psatriage.toml").write_text("", encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PSATRIAGE_")},
        "PSATRIAGE_CONFIG": str(tmp_path / "psatriage.toml"),
        "PSATRIAGE_DATA_DIR": str(tmp_path / "data"),
        "PSATRIAGE_WORKER_PROCESSES": "2",
        "PSATRIAGE_LOG_FORMAT": "json",
    }
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "psatriage", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + DEADLINE
            while len(workers := child_pids(process.pid)) < 2:  # they start once it answers
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=DEADLINE) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert "the serve process is gone" not in log.read_text()


def test_serve_on_one_machine_makes_a_key_for_its_processes_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a SQLite queue and no PSATRIAGE_SECRET_KEY, ``serve`` puts a key of its own in its
    environment (its worker processes inherit it) and drops the last run's tokens, which that
    key cannot read; a key that is set, or a Redis queue, is left alone."""
    for name in ("PSATRIAGE_SECRET_KEY", "PSATRIAGE_QUEUE_URL", "PSATRIAGE_CONFIG"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever it sets
        monkeypatch.delenv(name)
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path))
    last_run = for_queue(f"sqlite:///{tmp_path / 'queue.db'}")
    last_run.put("halopsa:app", b"sealed with the last run's key", time.time() + 600)
    _key_for_this_run()
    made = os.environ["PSATRIAGE_SECRET_KEY"]
    Fernet(made.encode())  # a valid key
    assert last_run.get("halopsa:app") is None
    last_run.close()
    _key_for_this_run()
    assert os.environ["PSATRIAGE_SECRET_KEY"] == made  # set: kept
    monkeypatch.delenv("PSATRIAGE_SECRET_KEY")
    monkeypatch.setenv("PSATRIAGE_QUEUE_URL", "redis://127.0.0.1:1/0")
    _key_for_this_run()
    assert "PSATRIAGE_SECRET_KEY" not in os.environ  # other machines would need it too
