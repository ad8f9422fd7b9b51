"""``psatriage train --tenant T`` on the closed tickets of a tenant's PSA (the ConnectWise fake)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from tests.harness import TENANT, Harness

runner = CliRunner()

HISTORY = {
    (10, 20, 30): [
        "Printer jammed on the second floor",
        "Paper stuck in the office printer",
        "Printer keeps jamming with A4 paper",
        "Paper jam in tray 2 of the copier printer",
        "The printer says paper jam again",
        "Cannot print, paper is jammed",
        "Jammed paper in the HP printer",
        "Printer feeding two sheets and jamming",
        "Label printer paper jam",
        "Reception printer paper jam",
    ],
    (11, 22, 32): [
        "Set up Outlook email on new laptop",
        "Email account setup for new starter",
        "Configure shared mailbox in Outlook",
        "Add email signature and mailbox setup",
        "New user needs an email mailbox",
        "Set up email on my phone",
        "Outlook profile setup for the mailbox",
        "Mailbox setup for the sales team",
        "Email client setup after reinstall",
        "Create a distribution list email",
    ],
    (12, 24, None): [
        "VPN keeps disconnecting from home",
        "Cannot connect to the VPN",
        "VPN client fails to authenticate",
        "Remote access VPN is very slow",
        "VPN tunnel drops every hour",
        "Need VPN access to work from home",
        "VPN error 809 when connecting",
        "Forticlient VPN will not connect",
        "VPN connected but no network shares",
        "Reset my VPN token",
    ],
}


def _write_local_tenant(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Path:
    harness.tenant["classifier"] = {"kind": "local", "reload_seconds": 0}
    harness.tenant["policy"] = {"mode": "apply", "min_confidence": 0.0}
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    data_dir = harness.root / "data"
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(data_dir))
    return data_dir


@pytest.mark.parametrize("limited", [False, True], ids=["unlimited", "under-a-limit"])
def test_train_a_tenant_model_from_its_psa_history(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, limited: bool
) -> None:
    """Reading the history takes 31 calls: under a limit of 25 per 3 s (a wait longer than a
    worker would make) the command waits for room, not fails."""
    if limited:
        harness.tenant["connection"] |= {"requests_per_window": 25, "window_seconds": 3}
    data_dir = _write_local_tenant(harness, monkeypatch)
    start = datetime.now(UTC) - timedelta(days=30)
    for (type_id, subtype_id, item_id), titles in HISTORY.items():
        for n, title in enumerate(titles):
            ticket_id = harness.cw.add_ticket(
                title,
                f"{title}. Reported by the user, please help.",
                type_id=type_id,
                subtype_id=subtype_id,
                item_id=item_id,
                entered=start + timedelta(hours=n),
            )
            harness.cw.close_ticket(ticket_id)
    harness.cw.add_ticket("Open ticket", "not closed", type_id=12, subtype_id=24)

    before = len(harness.cw.requests)
    result = runner.invoke(app, ["train", "--tenant", TENANT, "--json"])

    assert result.exit_code == 0, result.output
    calls = len(harness.cw.requests) - before
    assert calls >= 31
    assert f"read 30 closed, categorized tickets of {TENANT} in {calls} calls to the PSA (" in (
        result.stderr
    )
    report = json.loads(result.stdout)
    assert report["version"] == "v0001"
    assert report["examples"] == 30 and report["classes"] == 3
    models = sorted(p.name for p in (data_dir / "models" / TENANT).iterdir())
    assert models == ["v0001.json", "v0001.npz"]
    assert "training on 30 closed tickets" in result.stderr

    new = harness.cw.add_ticket("The printer on floor 3 has a paper jam", "Paper stuck again")
    decided = runner.invoke(
        app, ["categorize", "--tenant", TENANT, "--ticket", str(new), "--dry-run"]
    )
    assert decided.exit_code == 0, decided.output
    assert "Hardware › Printer › Paper jam (10/20/30)" in decided.output
    assert "local" in decided.output


def test_train_from_the_psa_needs_enough_history(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_local_tenant(harness, monkeypatch)
    for title in HISTORY[(10, 20, 30)][:3]:
        harness.cw.close_ticket(harness.cw.add_ticket(title, "", type_id=10, subtype_id=20))
    result = runner.invoke(app, ["train", "-t", TENANT, "--since", "2020-01-01", "--limit", "50"])
    assert result.exit_code == 2, result.output
    assert "connectwise has 3 closed, categorized tickets created since 2020-01-01" in (
        result.output
    )
    bad = runner.invoke(app, ["train", "-t", TENANT, "--since", "last year"])
    assert bad.exit_code == 2 and "is not an ISO date" in bad.output


def test_an_unwritable_model_file_stops_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    data = str(Path(__file__).resolve().parent.parent / "fixtures" / "local" / "tickets.jsonl")
    for out, says in (
        (blocker / "model.npz", f"{blocker} is not a folder this user can write"),
        (tmp_path, f"the model file {tmp_path} is a folder; fix: name a file"),
    ):
        result = runner.invoke(app, ["train", "--data", data, "-l", "category", "--out", str(out)])
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and says in result.stderr
        assert "training on" not in result.stderr


def test_every_problem_of_a_data_file_in_one_pass(tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    lines = [
        '{"title": "Printer jam", "labels": {"category": "Hardware"}}',
        "not json",
        '["a list"]',
        '{"title": "", "description": ""}',
        '{"title": "VPN", "labels": "Network"}',
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["train", "--data", str(data), "-l", "category", "--out", "m.npz"])
    assert result.exit_code == 2
    reported = result.stderr.splitlines()
    assert [line.removeprefix("error: ").split(": ")[0] for line in reported] == [
        f"{data}, line 2",
        f"{data}, line 3",
        f"{data}, line 4",
        f"{data}, line 5",
    ]
    many = tmp_path / "many.jsonl"
    many.write_text("x\n" * 60, encoding="utf-8")
    capped = runner.invoke(app, ["train", "--data", str(many), "-l", "category", "--out", "m.npz"])
    assert capped.stderr.splitlines()[-1] == "… and 10 more"
    assert len(capped.stderr.splitlines()) == 51
