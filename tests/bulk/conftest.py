"""A tenant of each PSA's HTTP fake (``psa``), and the runtime a command would build on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from psatriage.runtime import Runtime
from psatriage.settings import get_settings
from tests.cli.psa_history import PSAS, HistoryTenant, tenant_of
from tests.fakes.openai import FakeOpenAI


@pytest.fixture(params=sorted(PSAS))
def psa(
    request: pytest.FixtureRequest, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HistoryTenant]:
    """The tenant ``acme`` of each PSA's fake, empty until a test adds tickets."""
    yield from tenant_of(request.param, llm, tmp_path, monkeypatch)


def command_runtime() -> Runtime:
    """What ``psatriage backfill`` or ``export`` builds: settings from the environment."""
    return Runtime(get_settings(retry_base_seconds=0.01, retry_max_seconds=0.05))
