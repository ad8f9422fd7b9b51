"""``psatriage categorize --engine local --model FILE``: the model must fit the taxonomy."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "local"
TAXONOMY = str(FIXTURES / "taxonomy.toml")
DATA = str(FIXTURES / "tickets.jsonl")


def _model(tmp_path: Path, label: str) -> Path:
    path = tmp_path / f"{label}.npz"
    trained = runner.invoke(app, ["train", "--data", DATA, "--label", label, "--out", str(path)])
    assert trained.exit_code == 0, trained.output
    return path


def test_a_model_for_other_labels_is_an_error(tmp_path: Path) -> None:
    model = _model(tmp_path, "team")  # "Accounts", "Email": none is a leaf of the taxonomy
    result = runner.invoke(
        app,
        ["categorize", "--engine", "local", "--taxonomy", TAXONOMY, "--model", str(model), "VPN"],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: --model {model} was trained for other categories (level 'team': "
    )
    assert f"than {TAXONOMY} lists; fix: train it on labels of this taxonomy" in result.stderr


@pytest.mark.parametrize("output", ["json", "table"])
def test_a_model_for_these_labels_is_used(tmp_path: Path, output: str) -> None:
    model = _model(tmp_path, "category")  # "Network/VPN" is the leaf "Network > VPN"
    result = runner.invoke(
        app,
        [
            "categorize",
            "--engine",
            "local",
            "--taxonomy",
            TAXONOMY,
            "--model",
            str(model),
            "--output",
            output,
            "cannot connect to the office network remotely over the vpn",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "VPN" in result.stdout
    if output == "json":
        assert '"source": "model"' in result.stdout


def test_every_problem_of_a_taxonomy_file_in_one_pass(tmp_path: Path) -> None:
    taxonomy = tmp_path / "taxonomy.toml"
    taxonomy.write_text(
        '[[category]]\npath = "Hardware > Printer"\n'
        "[[category]]\npath = 3\n"
        '[[category]]\npath = "Hardware > Printer"\n'
        '[[category]]\npath = "Network"\ncolour = "blue"\n',
        encoding="utf-8",
    )
    result = runner.invoke(
        app, ["categorize", "--engine", "local", "--taxonomy", str(taxonomy), "VPN"]
    )
    assert result.exit_code == 2
    reported = result.stderr.splitlines()
    assert len(reported) == 3
    assert "category 2: 'path' must be a string" in reported[0]
    assert "is used by categories 1 and 3" in reported[1]
    assert "category 4: unknown key(s) colour" in reported[2]
