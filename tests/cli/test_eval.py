"""``psatriage eval``, ``psatriage train`` and ``psatriage categorize --engine local``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from psatriage.classifiers import _openai_capabilities
from psatriage.cli import app
from tests.harness import TENANT, Harness, to_toml

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "local"
DATA = str(FIXTURES / "tickets.jsonl")
EXAMPLE = str(ROOT / "examples" / "taxonomy.toml")


def test_eval_local_trains_on_the_rest_and_reports() -> None:
    result = runner.invoke(app, ["eval", DATA, "--label", "category", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "local" and data["split"] == "eval"
    assert data["training"]["classes"] == 4
    assert data["examples"] > 0 and 0 <= data["accuracy"] <= 1
    assert {"macro_f1", "ece", "thresholds", "classes", "confused", "latency_p99_ms"} <= set(data)
    assert data["engines"] == {"local": data["examples"]}
    assert data["tokens_in"] == 0 and data["cost_usd"] == 0


def test_eval_zero_shot_with_a_taxonomy_as_tables() -> None:
    result = runner.invoke(
        app,
        ["eval", DATA, "-l", "team", "--zero-shot", "--split", "all", "--limit", "10"],
    )
    assert result.exit_code == 0, result.output
    for heading in ("accuracy", "macro-F1", "calibration error", "thresholds", "per category"):
        assert heading in result.output
    assert "10 tickets" in result.output


def test_eval_with_a_saved_model(tmp_path: Path) -> None:
    model = tmp_path / "m.npz"
    trained = runner.invoke(
        app, ["train", "--data", DATA, "--label", "category", "--out", str(model)]
    )
    assert trained.exit_code == 0, trained.output
    assert "cross-validated accuracy" in trained.output
    assert "Security/Phishing (1)" in trained.output  # too few examples: left zero-shot
    result = runner.invoke(app, ["eval", DATA, "-l", "category", "--model", str(model), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["training"] is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["eval", DATA, "-l", "nope"], "no ticket has the label level 'nope'"),
        (["eval", "missing.jsonl", "-l", "x"], "missing.jsonl does not exist"),
        (["eval", DATA, "-l", "category", "--engine", "openai"], "needs --tenant"),
        (["eval", DATA, "-l", "category", "--zero-shot", "--model", "m.npz"], "exclude"),
        (["train", "-l", "category", "--out", "m.npz"], "--data FILE is needed"),
        (["train", "--data", DATA, "-l", "category"], "exactly one of --tenant"),
    ],
)
def test_bad_input_is_a_clear_error(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_train_stores_versions_per_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "psatriage.toml"
    config.write_text(
        to_toml(
            {
                "tenants": {
                    "acme": {
                        "psa": "connectwise",
                        "connection": {
                            "site": "api-na.myconnectwise.net",
                            "company_id": "acme",
                            "public_key": "env:T_PUBLIC",
                            "private_key": "env:T_PRIVATE",
                            "client_id": "0d6c3b1e-7f55-4b39-9f2a-4ad2f1c0a001",
                        },
                        "classifier": {"kind": "local"},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(config))
    monkeypatch.setenv("PSATRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("T_PUBLIC", "public")
    monkeypatch.setenv("T_PRIVATE", "private")
    for version in ("v0001", "v0002"):
        result = runner.invoke(
            app, ["train", "--data", DATA, "-l", "category", "--tenant", "acme", "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["version"] == version
    listed = json.loads(runner.invoke(app, ["model", "list", "-t", "acme", "--json"]).stdout)
    assert [(v["version"], v["state"]) for v in listed] == [
        ("v0002", "active"),
        ("v0001", "retired"),
    ]
    unknown = runner.invoke(app, ["train", "--data", DATA, "-l", "category", "--tenant", "other"])
    assert unknown.exit_code == 2 and "no tenant named 'other'" in unknown.stderr


def test_eval_with_the_llm_of_a_tenant(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    for name, value in harness.env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(
        app,
        ["eval", DATA, "-l", "category", "--engine", "openai", "-t", TENANT, "--limit", "3"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "tokens in / out" in result.output
    assert len(harness.llm.calls) == 3
    hybrid = runner.invoke(
        app,
        ["eval", DATA, "-l", "category", "--engine", "hybrid", "-t", TENANT, "--json"],
    )
    assert hybrid.exit_code == 0, hybrid.output
    assert set(json.loads(hybrid.stdout)["engines"]) <= {"local", "openai"}


def _llm_eval(harness: Harness, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> Any:
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    return runner.invoke(
        app,
        ["eval", DATA, "-l", "category", "--engine", "openai", "-t", TENANT, *arguments],
        catch_exceptions=False,
    )


def test_a_ticket_without_an_answer_is_counted_and_the_run_goes_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3: one answer cut off twice aborted eval and lost every result."""
    harness.llm.script("length", "length")  # the first ticket's answer, and its retry
    result = _llm_eval(harness, monkeypatch, "--limit", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["examples"] == 3 and data["failed"] == 1
    assert data["failures"] == {"invalid answer": 1}
    failure = data["failure_examples"][0]
    assert "cut off" in failure["message"] and failure["tokens_out"] > 0
    assert failure["latency_ms"] > 0
    assert data["tokens_out"] > failure["tokens_out"]  # the failed calls count too
    assert len(harness.llm.calls) == 5


def test_eval_on_a_server_that_answers_as_llama_cpp(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 1: llama-cpp-python's 500 refusing json_schema was retried as an outage until
    eval stopped with rc 2."""
    _openai_capabilities.forget()  # a port seen by an earlier test may have been another fake
    harness.llm.like("llama.cpp")
    harness.tenant["classifier"] |= {"provider": "compatible", "model": "smollm2", "cost": "free"}
    del harness.tenant["classifier"]["api_key"]
    result = _llm_eval(harness, monkeypatch, "--limit", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["examples"], data["failed"], data["cost_usd"]) == (3, 0, 0)
    assert data["pricing"] == 'free (cost = "free")'
    assert {c["response_format"]["type"] for c in harness.llm.calls} == {"json_object"}


def test_failures_by_kind_in_the_table_and_no_answer_at_all_is_exit_1(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.llm.script(("status", 503))
    mixed = _llm_eval(harness, monkeypatch, "--limit", "3")
    assert mixed.exit_code == 0, mixed.output
    assert "2 tickets answered" in mixed.output
    assert "1 tickets (server unavailable: 1)" in mixed.output
    assert "HTTP 503" in mixed.output

    harness.llm.fail("POST", "chat/completions", 503, times=100)
    none = _llm_eval(harness, monkeypatch, "--limit", "2")
    assert none.exit_code == 1, none.output
    assert "server unavailable: 2" in none.output


def test_refused_credentials_stop_the_run_and_keep_the_report(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.llm.api_key = "another-key"
    result = _llm_eval(harness, monkeypatch, "--limit", "5", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["failures"] == {"credentials refused": 1}
    assert data["stopped"].startswith("stopped after ticket")


def test_the_offline_one_liner() -> None:
    result = runner.invoke(
        app,
        [
            "categorize",
            "--engine",
            "local",
            "--taxonomy",
            EXAMPLE,
            "Printer on the third floor keeps jamming",
        ],
    )
    assert result.exit_code == 0, result.output
    first, *alternatives = result.output.strip().splitlines()
    assert first.startswith("Hardware › Printer › Paper jam  (confidence ")
    assert len(alternatives) == 3 and all(a.strip().startswith("or ") for a in alternatives)


def test_offline_json_and_csv_for_a_file(tmp_path: Path) -> None:
    single = runner.invoke(
        app,
        ["categorize", "--engine", "local", "--taxonomy", EXAMPLE, "VPN drops", "--output", "json"],
    )
    assert json.loads(single.stdout)["key"] == "Network > Remote access > VPN"
    many = runner.invoke(
        app,
        [
            "categorize",
            "--engine",
            "local",
            "--taxonomy",
            EXAMPLE,
            "--file",
            DATA,
            "--output",
            "csv",
        ],
    )
    assert many.exit_code == 0, many.output
    rows = list(csv.DictReader(io.StringIO(many.stdout)))
    assert len(rows) == 66 and set(rows[0]) == {
        "id",
        "key",
        "category",
        "confidence",
        "alternatives",
    }
    table = runner.invoke(
        app, ["categorize", "--engine", "local", "--taxonomy", EXAMPLE, "--file", DATA]
    )
    assert table.exit_code == 0 and "next best" in table.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["categorize", "--engine", "openai", "--taxonomy", EXAMPLE, "x"], "needs --engine local"),
        (["categorize", "--engine", "local", "x"], "needs --taxonomy"),
        (
            ["categorize", "--engine", "local", "--taxonomy", EXAMPLE],
            'give the ticket text ("Printer keeps jamming") or --file FILE (JSON Lines)',
        ),
        (
            ["categorize", "--engine", "local", "--taxonomy", EXAMPLE, "--file", DATA, "x"],
            "or --file, not both",
        ),
        (["categorize", "--engine", "local", "--tenant", "acme", "x"], "use one or the other"),
        (["categorize"], "give --tenant and --ticket"),
        (
            [
                "categorize",
                "--engine",
                "local",
                "--taxonomy",
                str(FIXTURES / "duplicate.toml"),
                "x",
            ],
            "the key 'Hardware > Printer' is used by categories 1 and 2",
        ),
    ],
)
def test_offline_bad_input(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert message in result.output


FIELDS_DATA = str(FIXTURES / "fields.jsonl")


def test_eval_a_ticket_field_with_the_local_engine() -> None:
    """The local engine learns a field as a label, as it decides it from a tenant's history."""
    result = runner.invoke(app, ["eval", FIELDS_DATA, "-l", "priority", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["field"] is True and data["engine"] == "local"
    assert data["examples"] > 0 and {c["label"] for c in data["classes"]} <= {
        "P1",
        "P2",
        "P3",
        "P4",
    }
    assert data["training"]["classes"] == 4


def test_eval_a_ticket_field_asked_of_the_llm_beside_the_category(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    harness.llm.facet_answers = {"noise": "spam"}
    result = runner.invoke(
        app,
        ["eval", FIELDS_DATA, "-l", "noise", "--engine", "openai", "-t", TENANT, "--split",
         "all", "--json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["field"] is True and data["examples"] == 32
    assert data["accuracy"] == pytest.approx(4 / 32)  # every ticket called spam; 4 are
    assert len(harness.llm.calls) == 32  # one call per ticket: the category and the field
    schema = harness.llm.calls[0]["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]["noise"]["enum"]) == {
        "request", "spam", "auto_reply", "alert", "newsletter"
    }  # fmt: skip
    assert len(schema["properties"]["category"]["enum"]) == 3  # the file's categories


def test_eval_a_ticket_field_with_the_hybrid_counts_what_its_local_half_decides(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ticket the hybrid's local half answers gets the field from the local engine's model of
    the field (as the service's field models decide it), not "(not decided)"."""
    llm = {k: v for k, v in harness.tenant["classifier"].items() if k != "kind"}
    harness.tenant["classifier"] = {"kind": "hybrid", "min_local_confidence": 0.0, "llm": llm}
    monkeypatch.setenv("PSATRIAGE_CONFIG", str(harness.write_config()))
    result = runner.invoke(
        app,
        ["eval", FIELDS_DATA, "-l", "priority", "--engine", "hybrid", "-t", TENANT, "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["field"] is True and data["engines"] == {"local": data["examples"]}
    assert harness.llm.calls == []  # every ticket decided by the local half
    assert {c["label"] for c in data["classes"]} <= {"P1", "P2", "P3", "P4"}
    assert data["accuracy"] > 0
    assert data["training"]["label"] == "priority"


def test_eval_the_language_offline() -> None:
    data_file = str(FIXTURES / "multilingual.jsonl")
    result = runner.invoke(app, ["eval", data_file, "-l", "language", "--split", "all", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "offline" and data["examples"] == 60
    assert data["accuracy"] > 0.9 and data["tokens_in"] == 0


def test_a_field_value_the_service_cannot_decide_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"b{n}",
                    "title": f"t{n}",
                    "description": "d",
                    "labels": {"noise": "phishing"},
                }
            )
            + "\n"
            for n in range(10)
        )
    )
    result = runner.invoke(app, ["eval", str(bad), "-l", "noise", "--zero-shot", "--split", "all"])
    assert result.exit_code == 2
    assert "noise values ['phishing'] are not among request, spam" in result.stderr
