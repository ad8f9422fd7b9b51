"""The scheduled retrain reads each PSA's closed tickets through its HTTP fake: the first model
is trained on them, and a retrain on the same tickets, no better, is refused and recorded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from psatriage.config import load_config
from psatriage.learning.retrain import (
    RetrainMarks,
    psa_history,
    retrain,
    scheduled_retrain,
)
from psatriage.learning.versions import ModelVersions
from psatriage.local_engine.embed import shared_embedder
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.store.tables import RetrainMarkRow, utcnow
from tests.cli.psa_history import PSAS, TENANT, HistoryTenant, tenant_of
from tests.fakes.openai import FakeOpenAI

TITLES = (
    ("printer", "Printer jammed on floor {n}", "paper stuck in the printer tray {n}"),
    ("vpn", "VPN drops at home {n}", "the VPN tunnel disconnects every hour {n}"),
)


@pytest.fixture(params=sorted(PSAS))
def psa(
    request: pytest.FixtureRequest, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HistoryTenant]:
    yield from tenant_of(
        request.param,
        llm,
        tmp_path,
        monkeypatch,
        classifier={"kind": "local"},
        learning={"retrain_every": "1d", "held_out": 0.25, "min_held_out": 3},
    )


def test_a_retrain_on_each_psas_history_that_is_no_better_is_refused(psa: HistoryTenant) -> None:
    first, second = PSAS[psa.kind][1:]
    for n in range(12):
        for (_, title, text), category in zip(TITLES, (first, second), strict=True):
            psa.close(f"{title.format(n=n)}. {text.format(n=n)}", category, days=20 - n)
    runtime = Runtime(
        Settings(data_dir=psa.root / "data", config=psa.root / "psatriage.toml"),
        load_config(psa.root / "psatriage.toml"),
    )
    try:
        history = psa_history(runtime)(TENANT, utcnow() - timedelta(days=365), 5000)
        assert len(history) == 24 and len({h.key for h in history}) == 2
        versions = ModelVersions(runtime.sessions)
        first_model = retrain(
            versions, TENANT, history, [], shared_embedder(),
            held_out=0.25, min_held_out=1000, min_examples=3,
        )  # fmt: skip
        assert first_model.promoted and first_model.reason == "the tenant had no model"

        RetrainMarks(runtime.sessions).claim(TENANT, 86400)
        with runtime.sessions.begin() as session:
            session.execute(update(RetrainMarkRow).values(next_run_at=utcnow()))
        assert scheduled_retrain(runtime) == 1
        mark = RetrainMarks(runtime.sessions).get(TENANT)
        assert mark is not None
        assert mark.result.startswith("refused v0002: not better: candidate"), mark.result
        assert "on 6 held-out tickets" in mark.result
        listed = versions.list(TENANT)
        assert [(v.name, v.state) for v in listed] == [("v0002", "refused"), ("v0001", "active")]
        evaluation = listed[0].evaluation
        assert evaluation is not None and evaluation["current"] == "v0001"
        assert evaluation["candidate_accuracy"] == evaluation["current_accuracy"]
    finally:
        runtime.close()
