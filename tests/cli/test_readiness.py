"""``psatriage readiness`` on the ConnectWise fake: the last backtest's verdict, a small fresh
backtest when there is none, failed connections, changed settings, and bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from psatriage.cli import app
from tests.cli.psa_history import TENANT, HistoryTenant, history
from tests.harness import to_toml

runner = CliRunner()


def test_without_a_backtest_a_small_one_is_run_and_kept(cw_with_history: HistoryTenant) -> None:
    history(cw_with_history)

    result = runner.invoke(app, ["readiness", "-t", TENANT, "--json"])

    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    assert first["verdict"] == "ready to suggest"
    assert first["backtest"]["tickets"] == 5  # the last 90 days
    assert first["backtest"]["run"]["limit"] == 50
    checks = {c["name"]: (c["ok"], c["detail"]) for c in first["checks"]}
    assert checks["PSA"][0] is True and checks["model"][0] is True
    assert checks["webhook"] == (
        None,
        "no delivery received yet: register it (psatriage webhooks register) and create a "
        "test ticket",
    )
    asked = len(cw_with_history.llm.calls)

    again = runner.invoke(app, ["readiness", "-t", TENANT, "--json"])

    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["backtest"] == first["backtest"]  # the stored one
    assert len(cw_with_history.llm.calls) - asked <= 1  # the model's connection check only


def test_one_page_of_tables(cw_with_history: HistoryTenant) -> None:
    history(cw_with_history)
    result = runner.invoke(app, ["readiness", "-t", TENANT])
    assert result.exit_code == 0, result.output
    for heading in (
        "readiness of acme (connectwise, classifier openai)",
        "last backtest (finished",
        "recommended policy",
        "projected per month",
        "category hygiene",
        "ready to suggest",
        "to improve:",
    ):
        assert heading in result.output


def test_not_ready_without_a_backtest_or_with_a_refused_connection(
    cw_with_history: HistoryTenant,
) -> None:
    history(cw_with_history)
    untested = runner.invoke(app, ["readiness", "-t", TENANT, "--sample", "0", "--json"])
    assert untested.exit_code == 1, untested.output
    verdict = json.loads(untested.stdout)
    assert verdict["verdict"] == "not ready"
    assert verdict["reasons"] == ["no backtest yet: run psatriage backtest --tenant acme"]

    cw_with_history.kit.fake.fail("*", r".", 401, times=1000)
    refused = runner.invoke(app, ["readiness", "-t", TENANT])
    assert refused.exit_code == 1, refused.output
    assert "not ready" in refused.output and "PSA: AuthFailed" in refused.output
    assert len(cw_with_history.llm.calls) == 2  # each run's model check; no backtest ran


def test_changed_settings_ask_for_a_new_backtest(cw_with_history: HistoryTenant) -> None:
    history(cw_with_history)
    assert runner.invoke(app, ["backtest", "-t", TENANT]).exit_code == 0
    config = cw_with_history.root / "psatriage.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text + "\n" + to_toml({"tenants": {TENANT: {"prompt": {"instructions": "Be brief."}}}}),
        encoding="utf-8",
    )

    result = runner.invoke(app, ["readiness", "-t", TENANT, "--json"])

    assert result.exit_code == 0, result.output
    improve = json.loads(result.stdout)["improve"]
    assert "the tenant's settings changed since the backtest: run it again" in improve


def test_an_unknown_tenant_is_one_clear_line(cw_with_history: HistoryTenant) -> None:
    result = runner.invoke(app, ["readiness", "-t", "nobody"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: no tenant named 'nobody' (configured: acme)"
