"""``config check`` sends the model the real request and shows what its server supports."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.classifiers import _openai_capabilities
from psatriage.cli import app
from tests.harness import Harness

runner = CliRunner()


@pytest.fixture
def llama(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """The tenant on a server that answers as llama.cpp's llama-cpp-python server does."""
    _openai_capabilities.forget()  # a port seen by an earlier test may have been another fake
    harness.llm.like("llama.cpp")
    harness.tenant["classifier"] = {
        "kind": "openai",
        "provider": "compatible",
        "model": "smollm2",
        "base_url": f"{harness.llm.url}/v1",
        "cost": "free",
        "timeout_seconds": 5,
    }
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path / "data"))
    return harness


def _check(harness: Harness, monkeypatch: pytest.MonkeyPatch, **classifier: object) -> str:
    path = harness.write_config(classifier=classifier)
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(path))
    result = runner.invoke(app, ["config", "check"])
    return f"{result.exit_code}\n{result.output}"


def test_check_sends_the_real_request_shape(
    llama: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2: the check sent neither response_format nor logprobs, so it passed a tenant
    whose every ticket then failed."""
    output = _check(llama, monkeypatch)
    assert output.startswith("0\n"), output
    sent = llama.llm.calls[-1]
    assert sent["response_format"]["type"] == "json_object" and "schema" in sent["response_format"]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 1
    assert "acme model: ok compatible: smollm2 answered at" in output
    assert "acme model: structured_output: json_object_schema" in output
    assert "acme model: logprobs: yes, with top_logprobs" in output
    assert "json_schema refused (HTTP 500)" in output
    assert 'acme model: cost: free (cost = "free")' in output


def test_a_mode_the_server_refuses_fails_naming_the_setting(
    llama: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _check(llama, monkeypatch, structured_output="json_schema")
    assert output.startswith("1\n"), output
    assert "PermanentError" in output
    assert "refuses structured_output 'json_schema' (HTTP 500" in output
    assert 'set structured_output = "auto" to use what it supports' in output


def test_a_wrong_model_name_fails_listing_what_the_server_has(
    llama: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _check(llama, monkeypatch, model="llama3.1:8b")
    assert output.startswith("1\n"), output
    assert "does not serve model 'llama3.1:8b': it lists 'smollm2'; set model" in output


def test_a_token_budget_too_small_fails_naming_the_setting(
    llama: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    llama.llm.script("length", "length")
    output = _check(llama, monkeypatch)
    assert output.startswith("1\n"), output
    assert "InvalidAnswer" in output and "raise max_tokens (now 300)" in output


def test_an_unpriced_model_says_how_to_price_it(
    llama: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _check(llama, monkeypatch, cost="prices")
    assert output.startswith("0\n"), output
    assert "unpriced: no price for 'smollm2'" in output
    assert 'cost = "free" for a server you run yourself' in output


def test_fields_naming_what_the_psa_lacks_fail_the_check(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.tenant["fields"] = {
        "enabled": ["priority", "routing", "noise"],
        "priority": {
            "order": ["Priority 1 - Emergency Response", "Priority 9 - Whenever"],
            "at_least": "Priority 1 - Emergency Response",
        },
        "routing": {"targets": ["Help Desk", "Closed board"]},
        "noise": {
            "auto_reply": {"action": "set", "category": "Nowhere", "routing": "Help Desk"},
            "spam": {"action": "set", "status": "Spam bin"},
        },
    }
    output = _check(harness, monkeypatch)
    assert output.startswith("1\n"), output
    assert (
        "tenant 'acme', key 'fields.noise.spam.status': the PSA has no active status 'Spam bin' "
        "on Help Desk (it has 'New', 'In Progress'" in output
    )  # ConnectWise: every board's statuses, a status belongs to a board
    assert (
        "tenant 'acme', key 'fields.priority.order': the PSA has no active priority "
        "'Priority 9 - Whenever'" in output
    )
    assert "key 'fields.routing.targets': the PSA has no active board 'Closed board'" in output
    assert "key 'fields.noise.auto_reply.category': 'Nowhere' is not an active category" in output
    assert "Emergency Response'" in output.split("Whenever")[1]  # lists what the PSA has


def test_fields_the_psa_has_pass_the_check(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.tenant["fields"] = {
        "enabled": ["priority", "routing", "noise"],
        "priority": {"order": ["Priority 1 - Emergency Response"]},
        "routing": {"targets": ["Help Desk"]},
        "noise": {
            "auto_reply": {"action": "set", "category": "Hardware", "routing": "Help Desk"},
            "spam": {"action": "set", "routing": "Help Desk", "status": "Waiting on client"},
        },
    }
    output = _check(harness, monkeypatch)
    assert output.startswith("0\n"), output


def test_a_noise_category_is_checked_on_the_board_its_routing_moves_the_ticket_to(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ConnectWise: a board owns its tree, so a category set with a board must be the board's;
    one set without a board must be on every board a noise ticket may arrive on."""
    routed = {"action": "set", "category": "Outage > Firewall", "routing": "Network Operations"}
    harness.tenant["fields"] = {"enabled": ["noise"], "noise": {"auto_reply": routed}}
    assert _check(harness, monkeypatch).startswith("0\n")
    harness.tenant["fields"]["noise"] = {
        "auto_reply": {**routed, "category": "Hardware"},  # Help Desk's, not Network's
        "spam": {"action": "set", "category": "Hardware"},  # no board: wherever it arrives
    }
    output = _check(harness, monkeypatch)
    assert output.startswith("1\n"), output
    flat = " ".join(output.split())
    assert (
        "tenant 'acme', key 'fields.noise.auto_reply.category': 'Hardware' is not an active "
        "category of Network Operations; fix: name an active category of Network Operations "
        "(key or path)"
    ) in flat
    assert "'fields.noise.spam.category': 'Hardware' is not an active category of Onboarding" in (
        flat
    )
    assert "category of Help Desk" not in flat


def test_a_category_entry_that_names_no_category_is_named(
    llama: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    llama.tenant["categories"] = {
        "Hardware > Printer": {"hints": ["toner"]},
        "10/21": {"description": "Laptops"},
        "Hardwre": {"hints": ["device"]},
    }
    output = _check(llama, monkeypatch)
    assert output.startswith("1\n"), output
    assert (
        "tenant 'acme', key 'categories.\"Hardwre\"': names no category of the PSA's category "
        "trees; fix: use a key or a path prefix shown by 'psatriage taxonomy show --tenant acme'"
    ) in output
    assert "Hardware > Printer" not in output and "10/21" not in output
    del llama.tenant["categories"]["Hardwre"]
    assert _check(llama, monkeypatch).startswith("0\n")


def test_a_local_engine_tenant_checks_on_a_new_database(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first check after `psatriage init --engine local` has no database yet: the check
    creates it rather than failing on the local engine's model versions."""
    harness.tenant["classifier"] = {"kind": "local"}
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path / "new"))
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "acme model: ok offline engine ready (zero-shot:" in result.output
