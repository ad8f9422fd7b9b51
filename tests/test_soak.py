"""The chaos soak, short and with a fixed seed: the real deployment of ``bench/soak.py`` (a
PostgreSQL server it restarts, a Redis of its own, ``serve --no-worker`` and two workers, ten
tenants on the four PSA fakes) with every kind of fault injected once or more; every ticket ends
with one decision, at most one category write and one note, and nothing is lost. Nothing here is
timed: the figures are ``bench/soak.py``'s to report. Beside it, the soak's own judgement of a
ticket, of its goals and of memory growth, on figures made up here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench import soak

# what the soak reads back per ticket: its decisions (final, wrote category, wrote note)
DECIDED = (True, True, True)


def test_a_ticket_decided_once_with_one_write_and_one_note_is_fine() -> None:
    assert soak.ticket_problems([DECIDED], writes=1, notes=1, unfinished={}) == []
    # a decision that wrote nothing (a suggestion without a note) needs neither
    assert soak.ticket_problems([(True, False, False)], writes=0, notes=0, unfinished={}) == []


@pytest.mark.parametrize(
    ("made", "writes", "notes", "unfinished", "found"),
    [
        ([], 0, 0, {}, ["lost: no decision"]),
        ([DECIDED, DECIDED], 1, 1, {}, ["duplicate: 2 decisions"]),
        ([(False, True, True)], 1, 1, {}, ["unfinished: decision not final"]),
        ([DECIDED], 2, 1, {}, ["duplicate: 2 category writes"]),
        ([DECIDED], 0, 1, {}, ["lost: category not written"]),
        ([DECIDED], 1, 2, {}, ["duplicate: 2 notes"]),
        ([DECIDED], 1, 0, {}, ["lost: no note"]),
        ([DECIDED], 1, 1, {"failed": 1}, ["unfinished: 1 event(s) failed"]),
        ([], 0, 0, {"retrying": 2}, ["lost: no decision", "unfinished: 2 event(s) retrying"]),
    ],
)
def test_a_ticket_missing_or_doubling_anything_is_named(
    made: list[tuple[bool, bool, bool]],
    writes: int,
    notes: int,
    unfinished: dict[str, int],
    found: list[str],
) -> None:
    assert soak.ticket_problems(made, writes, notes, unfinished) == found


def test_a_p99_of_140_tickets_is_their_second_slowest() -> None:
    figures = soak.percentiles([float(n) for n in range(1, 141)])

    assert figures == {"n": 140, "p50_s": 70.5, "p99_s": 139.0}
    assert soak.percentiles([]) == {"n": 0, "p50_s": None, "p99_s": None}


def _result(quiet: float, flood: dict[str, float], growth: float, lost: int = 0) -> dict[str, Any]:
    def phases(quiet_p99: float, flood_p99: float) -> dict[str, Any]:
        return {
            "quiet": {"n": 140, "p50_s": 0.3, "p99_s": quiet_p99},
            "flood": {"n": 140, "p50_s": 0.3, "p99_s": flood_p99},
            "chaos": {"n": 400, "p50_s": 0.5, "p99_s": 90.0},
        }

    latency = {name: phases(quiet, p99) for name, p99 in flood.items()}
    latency[soak.FLOODING] = phases(quiet, 50 * quiet)  # neither the flooding tenant
    latency[soak.HANGING] = phases(quiet, 500 * quiet)  # nor the hanging one is judged
    latency["others"] = phases(quiet, max(flood.values()))
    life = {"process": 1, "minutes": 30.0, "settled_mib": 150.0, "growth": growth}
    return {
        "checks": {"lost": lost, "duplicates": 0},
        "tickets": {"sent": 5000},
        "faults": {"kill_worker": 5, "restart_postgres": 4},
        "latency": latency,
        "memory": {name: {"longest_lived": life} for name in ("web", "worker-1", "worker-2")},
    }


def test_the_goals_are_met_when_nothing_is_lost_the_others_hold_and_memory_is_flat() -> None:
    goals = soak.goals(_result(0.5, {"cw2": 0.9, "at2": 0.6}, growth=0.05))

    assert [goal["met"] for goal in goals] == [True, True, True]
    assert goals[1]["measured"] == "together 1.80x; each 1.20-1.80x, 2 of 2 within"


def test_each_goal_missed_is_named() -> None:
    goals = soak.goals(_result(0.5, {"cw2": 1.1, "at2": 0.6}, growth=0.25, lost=1))

    assert [goal["met"] for goal in goals] == [False, False, False]
    assert "1 of 2 within" in goals[1]["measured"]
    assert "web +25.0%" in goals[2]["measured"]


def test_memory_growth_is_judged_on_the_slot_s_longest_lived_process() -> None:
    slot = soak.Slot("worker-1", ("worker",))
    slot.lives = [
        soak.Life(0.0, ended=1800.0, rss_settled=150 * 2**20, rss_last=160 * 2**20),
        soak.Life(1800.0, ended=2000.0, rss_settled=140 * 2**20, rss_last=200 * 2**20),
        soak.Life(2000.0, ended=2100.0),  # killed before it settled
    ]

    life = soak.longest_life(slot)

    assert life is not None
    assert (life["process"], life["minutes"], life["growth"]) == (1, 30.0, 0.0667)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes on a loaded machine
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
    # the figures beside the processes' logs, for a failure to be read afterwards
    (tmp_path / "soak.json").write_text(json.dumps(result, indent=2), encoding="utf-8")

    assert all(count >= 1 for count in result["faults"].values()), result["faults"]
    assert not result["fault_errors"]
    checks = result["checks"]
    assert result["tickets"]["sent"] > 100
    assert checks["lost"] == 0, checks["examples"]
    assert checks["duplicates"] == 0, checks["examples"]
    assert result["drained"], checks["events_by_state"]
    assert not result["refused_deliveries"]
