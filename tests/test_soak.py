"""The chaos soak, short and with a fixed seed: the real deployment of ``bench/soak.py`` (a
PostgreSQL server it restarts, a Redis of its own, ``serve --no-worker`` and two workers, ten
tenants on the four PSA fakes) with every kind of fault injected once or more; every ticket ends
with one decision, at most one category write and one note, and nothing is lost. Nothing here is
timed: the figures are ``bench/soak.py``'s to report."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bench import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # minutes on a loaded machine


def test_a_short_chaos_soak_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    server = os.environ.get("PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL")
    control = os.environ.get("PSATRIAGE_TEST_POSTGRES_CTL")
    if not server or not control:
        pytest.skip(
            "PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL and PSATRIAGE_TEST_POSTGRES_CTL are not set "
            "(no PostgreSQL server that the soak may restart)"
        )
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (no Redis the soak may kill)")
    options = soak.Options(
        postgres_url=server,
        postgres_ctl=control,
        seed=18,
        minutes=1.5,
        quiet_minutes=0.25,
        flood_minutes=0.25,
        rate=10,
        fault_every=8,
        fault_seconds=8,
        lease_seconds=30,
        drain_minutes=10,
        root=tmp_path,
    )

    result = soak.run(options)

    assert all(count >= 1 for count in result["faults"].values()), result["faults"]
    assert not result["fault_errors"]
    checks = result["checks"]
    assert result["tickets"]["sent"] > 100
    assert checks["lost"] == 0, checks["examples"]
    assert checks["duplicates"] == 0, checks["examples"]
    assert result["drained"], checks["events_by_state"]
    assert not result["refused_deliveries"]
