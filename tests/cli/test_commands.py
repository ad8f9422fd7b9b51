"""The CLI against the fakes: config check, taxonomy show, webhooks register, categorize, db."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.store import db
from tests.harness import TENANT, Harness

runner = CliRunner()


@pytest.fixture
def configured(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path / "data"))
    return harness


def test_config_check_validates_and_calls_each_connection(configured: Harness) -> None:
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "1 tenant(s), file is valid" in result.output
    assert "ConnectWise" in result.output and "gpt-4o-mini" in result.output
    assert "[green]" not in result.output  # colour, not markup printed as text
    assert any(r.path.endswith("/system/info") for r in configured.cw.requests)


def test_config_check_says_what_is_wrong(configured: Harness) -> None:
    configured.llm.api_key = "another-key"
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 1
    assert "AuthFailed" in result.output
    assert "sk-fake" not in result.output


def test_config_check_on_a_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[tenants.acme]\npsa = "connectwise"\nconnection = {}\n[tenants.acme.policy]\nmode = "x"\n'
    )
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(bad))
    result = runner.invoke(app, ["config", "check", "--offline"])
    assert result.exit_code == 2
    assert "tenant 'acme', key 'policy.mode'" in result.output


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PSATRIAGE_WORKERS", "many", "PSATRIAGE_WORKERS: Input should be a valid integer"),
        (
            "PSATRIAGE_WORKER_PROCESSES",
            "lots",
            "PSATRIAGE_WORKER_PROCESSES: give a number from 0 to 64, or auto",
        ),
        ("PSATRIAGE_SECRET_KEY", "not-a-fernet-key", "PSATRIAGE_SECRET_KEY is not a Fernet key"),
    ],
)
def test_a_bad_process_setting_is_a_clear_error_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["config", "check", "--offline"])
    assert result.exit_code == 2
    assert says in " ".join(result.stderr.split())
    assert value not in result.output and "Traceback" not in result.output


def test_taxonomy_show(configured: Harness) -> None:
    result = runner.invoke(app, ["taxonomy", "show", "--tenant", TENANT, "--board", "Help Desk"])
    assert result.exit_code == 0, result.output
    assert "10/20/30" in result.output and "Paper jam" in result.output
    assert "Network Operations" not in result.output
    everything = runner.invoke(app, ["taxonomy", "show", "--tenant", TENANT])
    assert "Network Operations" in everything.output and "Onboarding" in everything.output


def test_webhooks_register_is_idempotent(configured: Harness) -> None:
    url = "https://triage.example.com/webhooks/acme"
    first = runner.invoke(app, ["webhooks", "register", "--tenant", TENANT, "--url", url])
    second = runner.invoke(app, ["webhooks", "register", "--tenant", TENANT, "--url", url])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == second.output.splitlines()[-1] == "registered: 1000"
    assert len(configured.cw.callbacks) == 1
    assert configured.cw.callbacks[0]["url"] == url


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("https://triage.example.com/webhooks/acme", ""),
        ("https://triage.example.com/hooks", "does not end in /webhooks/acme"),
        ("https://triage.example.com/webhooks/other", "does not end in /webhooks/acme"),
        ("http://triage.example.com/webhooks/acme", "is not HTTPS"),
    ],
)
def test_webhooks_register_warns_of_a_url_the_tenant_would_not_hear(
    configured: Harness, url: str, warned: str
) -> None:
    result = runner.invoke(app, ["webhooks", "register", "--tenant", TENANT, "--url", url])
    assert result.exit_code == 0, result.output
    assert ("warning: " in result.stderr) == bool(warned)
    assert warned in result.stderr
    assert configured.cw.callbacks[0]["url"] == url


@pytest.mark.parametrize("url", ["triage.example.com/webhooks/acme", "ftp://x/webhooks/acme"])
def test_webhooks_register_refuses_what_is_no_web_address(configured: Harness, url: str) -> None:
    result = runner.invoke(app, ["webhooks", "register", "--tenant", TENANT, "--url", url])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --url {url!r} is not a web address; fix: --url https://HOST/webhooks/acme\n"
    )
    assert configured.cw.callbacks == []


def test_categorize_dry_run_then_for_real(configured: Harness) -> None:
    ticket = configured.cw.add_ticket("Printer", "My printer has a paper jam")
    dry = runner.invoke(
        app, ["categorize", "--tenant", TENANT, "--ticket", str(ticket), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "Hardware › Printer › Paper jam" in dry.output and "applied" in dry.output
    assert configured.cw.writes == []
    real = runner.invoke(app, ["categorize", "--tenant", TENANT, "--ticket", str(ticket)])
    assert real.exit_code == 0, real.output
    assert "done" in real.output
    assert len(configured.cw.patches(ticket)) == 1


def test_categorize_dry_run_on_a_kept_ticket_shows_the_models_choice(configured: Harness) -> None:
    ticket = configured.cw.add_ticket(
        "Printer", "My printer has a paper jam", type_id=10, subtype_id=20, item_id=31
    )
    dry = runner.invoke(
        app, ["categorize", "--tenant", TENANT, "--ticket", str(ticket), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "kept" in dry.output and "a person already set the category" in dry.output
    assert "the model would choose (not written)" in dry.output
    assert "Paper jam" in dry.output and configured.cw.writes == []


def test_categorize_unknown_tenant(configured: Harness) -> None:
    result = runner.invoke(app, ["categorize", "--tenant", "nope", "--ticket", "1"])
    assert result.exit_code == 2
    assert "no tenant named 'nope'" in result.output


def test_db_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0
    assert f"database at revision {db.head_revision()}" in result.output


def test_events_list_and_retry(configured: Harness) -> None:
    ticket = configured.cw.add_ticket("Printer", "My printer has a paper jam")
    configured.llm.script("refusal", "refusal")
    command = ["categorize", "--tenant", TENANT, "--ticket", str(ticket)]
    assert runner.invoke(app, command).exit_code == 1  # the model refused: failed
    listed = runner.invoke(app, ["events", "list", "--state", "failed"])
    assert listed.exit_code == 0 and "refused" in listed.output
    retried = runner.invoke(app, ["events", "retry", "--failed"])
    assert retried.exit_code == 0, retried.output
    assert "queued again: 1 event(s) [1]" in retried.output
    again = runner.invoke(app, ["events", "list", "--state", "received"])
    assert str(ticket) in again.output
    assert "left alone: [1]" in runner.invoke(app, ["events", "retry", "1"]).output
    assert runner.invoke(app, ["events", "retry"]).exit_code == 2


def test_tenants_pause_list_and_resume(configured: Harness) -> None:
    paused = runner.invoke(app, ["tenants", "pause", TENANT])
    assert paused.exit_code == 0, paused.output
    assert f"{TENANT}: paused" in paused.output
    assert "already paused" in runner.invoke(app, ["tenants", "pause", TENANT]).output
    listed = runner.invoke(app, ["tenants", "list"])
    assert listed.exit_code == 0 and "paused since" in listed.output
    resumed = runner.invoke(app, ["tenants", "resume", TENANT])
    assert resumed.exit_code == 0 and f"{TENANT}: resumed" in resumed.output
    assert "running" in runner.invoke(app, ["tenants", "list"]).output
    assert "was not paused" in runner.invoke(app, ["tenants", "resume", TENANT]).output
    unknown = runner.invoke(app, ["tenants", "pause", "nope"])
    assert unknown.exit_code == 2 and "no tenant named 'nope'" in unknown.output


def test_events_list_refuses_an_unknown_state(configured: Harness) -> None:
    result = runner.invoke(app, ["events", "list", "--state", "finished"])
    assert result.exit_code == 2
    assert "Invalid value for '--state'" in result.stderr and "'failed'" in result.stderr


def test_events_list_names_an_unknown_tenant_instead_of_an_empty_table(configured: Harness) -> None:
    unknown = runner.invoke(app, ["events", "list", "--tenant", "nope"])
    assert unknown.exit_code == 2
    assert f"no tenant named 'nope' (configured: {TENANT})" in unknown.output
    known = runner.invoke(app, ["events", "list", "--tenant", TENANT])  # none yet: an empty table
    assert known.exit_code == 0, known.output


def test_events_retry_says_which_ids_do_not_exist(configured: Harness) -> None:
    ticket = configured.cw.add_ticket("Printer", "My printer has a paper jam")
    configured.llm.script("refusal", "refusal")
    assert runner.invoke(app, ["categorize", "--tenant", TENANT, "--ticket", str(ticket)]).exit_code
    result = runner.invoke(app, ["events", "retry", "1", "404", "77"])
    assert result.exit_code == 1
    assert "queued again: 1 event(s) [1]" in result.stdout
    assert (
        result.stderr
        == "error: no event with the id(s) [77, 404]; fix: see `psatriage events list`\n"
    )
