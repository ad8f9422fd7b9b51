"""``psatriage train --tenant T`` on the closed tickets of a tenant's PSA (the ConnectWise fake)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.store import db
from psatriage.store.examples import add_example
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
    _close_history(harness)
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
    assert report["version"] == "v0001" and report["stored"] == f"{TENANT} v0001 (active)"
    assert report["examples"] == 30 and report["classes"] == 3
    assert report["history_tickets"] == 30 and report["example_tickets"] == 0
    assert not (data_dir / "models").exists()  # the version is kept in the database
    listed = json.loads(runner.invoke(app, ["model", "list", "-t", TENANT, "--json"]).stdout)
    assert [(v["version"], v["state"], v["trigger"]) for v in listed] == [
        ("v0001", "active", "train")
    ]
    assert "training on 30 closed tickets" in result.stderr

    new = harness.cw.add_ticket("The printer on floor 3 has a paper jam", "Paper stuck again")
    decided = runner.invoke(
        app, ["categorize", "--tenant", TENANT, "--ticket", str(new), "--dry-run"]
    )
    assert decided.exit_code == 0, decided.output
    assert "Hardware › Printer › Paper jam (10/20/30)" in decided.output
    assert "local" in decided.output


def _close_history(harness: Harness) -> dict[str, list[int]]:
    """The closed tickets of ``HISTORY`` in the fake; their ids by category key."""
    start = datetime.now(UTC) - timedelta(days=30)
    ids: dict[str, list[int]] = {}
    for (type_id, subtype_id, item_id), titles in HISTORY.items():
        key = "/".join(str(i) for i in (type_id, subtype_id, item_id) if i is not None)
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
            ids.setdefault(key, []).append(ticket_id)
    return ids


def test_train_learns_the_tenants_examples_with_its_history_and_keeps_versions(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Examples win over history for the same ticket; versions are listed, promoted and rolled
    back; a version that does not exist is one line and a non-zero exit."""
    _write_local_tenant(harness, monkeypatch)
    ids = _close_history(harness)
    engine = db.make_engine(harness.settings().effective_database_url)
    db.upgrade(engine)
    for ticket in ids["10/20/30"][:4]:  # a person said these "printer" tickets were VPN ones
        add_example(
            engine,
            tenant=TENANT,
            company=None,
            ticket_id=str(ticket),
            text="VPN drops\nThe VPN tunnel drops",
            category_key="12/24",
            category_path="Network › VPN",
            source="correction",
            decision_id=None,
        )
    for n in range(3):  # and three tickets that are not in the history at all
        add_example(
            engine,
            tenant=TENANT,
            company="7",
            ticket_id=f"new-{n}",
            text="Toner is empty\nThe printer needs a new toner cartridge",
            category_key="10/20/30",
            category_path="Hardware › Printer › Paper jam",
            source="fill",
            decision_id=None,
        )
    engine.dispose()

    first = runner.invoke(app, ["train", "--tenant", TENANT, "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["history_tickets"] == 26 and report["example_tickets"] == 7
    assert report["history_overridden"] == 4 and report["examples"] == 33
    assert "training on 26 closed tickets and 7 labeled examples" in first.stderr

    second = runner.invoke(app, ["train", "--tenant", TENANT])
    assert second.exit_code == 0, second.output
    assert "26 from history, 7 labeled examples (4 overriding history)" in second.stdout
    listed = runner.invoke(app, ["model", "list", "--tenant", TENANT])
    assert listed.exit_code == 0, listed.output
    assert "v0002" in listed.stdout and "33 (7 labeled)" in listed.stdout
    assert "scheduled retrain every 7d" in listed.stdout

    def states() -> list[tuple[str, str]]:
        shown = runner.invoke(app, ["model", "list", "-t", TENANT, "--json"])
        return [(v["version"], v["state"]) for v in json.loads(shown.stdout)]

    assert states() == [("v0002", "active"), ("v0001", "retired")]
    back = runner.invoke(app, ["model", "rollback", "--tenant", TENANT])
    assert back.exit_code == 0, back.output
    assert "rolled back from v0002 to v0001" in back.stdout
    assert states() == [("v0002", "candidate"), ("v0001", "active")]
    again = runner.invoke(app, ["model", "rollback", "--tenant", TENANT])
    assert again.exit_code == 2
    assert again.stderr.count("\n") == 1 and "nothing to roll back to" in again.stderr
    promoted = runner.invoke(app, ["model", "promote", "--tenant", TENANT, "v0002"])
    assert promoted.exit_code == 0 and "v0002 is now the active model" in promoted.stdout
    assert states() == [("v0002", "active"), ("v0001", "retired")]
    for wrong in ("v0009", "latest"):
        missing = runner.invoke(app, ["model", "promote", "--tenant", TENANT, wrong])
        assert missing.exit_code == 2, missing.output
        assert missing.stderr.count("\n") == 1
        assert f"tenant '{TENANT}'" in missing.stderr and "model list" in missing.stderr
    unknown = runner.invoke(app, ["model", "list", "--tenant", "nobody"])
    assert unknown.exit_code == 2 and "no tenant named 'nobody'" in unknown.stderr


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
