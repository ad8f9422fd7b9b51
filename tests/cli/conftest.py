import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.psa_history import PSAS, HistoryTenant, tenant_of
from tests.fakes.openai import FakeOpenAI

# Rich sizes its console when psatriage.cli is imported; give it room so lines do not wrap.
os.environ["COLUMNS"] = "200"


@pytest.fixture(params=sorted(PSAS))
def psa_with_history(
    request: pytest.FixtureRequest, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HistoryTenant]:
    """The tenant ``acme`` of each PSA's fake (empty until ``psa_history.history`` fills it)."""
    yield from tenant_of(request.param, llm, tmp_path, monkeypatch)


@pytest.fixture
def cw_with_history(
    llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HistoryTenant]:
    yield from tenant_of("connectwise", llm, tmp_path, monkeypatch)
