"""Settings refuse what would be unsafe to run with, and resolve what depends on the machine."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from psatriage.errors import ConfigError
from psatriage.settings import MAX_AUTO_WORKER_PROCESSES, Settings, auto_worker_processes


@pytest.mark.parametrize("value", ["change-me", " change-me\n"])
def test_the_example_api_token_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_API_TOKEN", value)
    with pytest.raises(ConfigError, match="PSATRIAGE_API_TOKEN is still the example's 'change-me'"):
        Settings()


def test_another_api_token_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_API_TOKEN", "a-token-of-our-own")
    settings = Settings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "a-token-of-our-own"
    assert "a-token-of-our-own" not in repr(settings)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.mark.parametrize(
    "queue", [None, "sqlite:///queue.db", "redis://127.0.0.1:6379/0", "postgresql://u@db/psatriage"]
)
def test_serve_starts_one_worker_process_per_core_by_default(
    queue: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On every queue: the processes share their PSA call limits, storm locks and tokens through
    its server, or a file beside its SQLite file."""
    monkeypatch.delenv("PSATRIAGE_WORKER_PROCESSES", raising=False)
    monkeypatch.delenv("PSATRIAGE_QUEUE_URL", raising=False)
    if queue is not None:
        monkeypatch.setenv("PSATRIAGE_QUEUE_URL", queue)
    settings = Settings()
    assert settings.worker_processes == "auto"
    expected = max(1, min(MAX_AUTO_WORKER_PROCESSES, _cores()))
    assert settings.worker_process_count == expected == auto_worker_processes()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="sets the CPU affinity (Linux)")
def test_auto_counts_the_cores_this_process_may_use() -> None:
    """A container or ``taskset`` that gives the process one core gets one worker process."""
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert auto_worker_processes() == 1
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.mark.parametrize(("value", "count"), [("0", 0), ("3", 3), (" AUTO ", None), ("64", 64)])
def test_worker_processes_is_a_number_or_auto(
    value: str, count: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSATRIAGE_WORKER_PROCESSES", value)
    assert Settings().worker_process_count == (auto_worker_processes() if count is None else count)


@pytest.mark.parametrize("value", ["lots", "-1", "65", "2.5", ""])
def test_another_worker_processes_value_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSATRIAGE_WORKER_PROCESSES", value)
    with pytest.raises(ValidationError, match="give a number from 0 to 64, or auto"):
        Settings()
