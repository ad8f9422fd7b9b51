"""``psatriage init``: a starter tenants file that loads once its variables are set."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psatriage.cli import app
from psatriage.cli.init import placeholders
from psatriage.config import load_config
from psatriage.psa import adapters

runner = CliRunner()


def _variables(output: str) -> list[str]:
    return re.findall(r"([A-Z][A-Z0-9_]+)=…", output)


@pytest.mark.parametrize("engine", ["openai", "local"])
@pytest.mark.parametrize("psa", sorted(adapters()))
def test_the_starter_file_loads_once_its_variables_are_set(
    psa: str, engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tenants.toml"
    command = ["--config", str(path), "init", "--psa", psa, "--tenant", "acme-1"]
    result = runner.invoke(app, [*command, "--engine", engine])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    steps = lines[lines.index("next:") + 1 :]
    assert [s.split(" init")[0] for s in steps] == [
        f"  psatriage --config {path} config check",
        f"  psatriage --config {path} categorize --tenant acme-1 --ticket ID --dry-run",
        f"  psatriage --config {path} "
        + ("serve" if adapters()[psa].default_trigger == "poll" else "webhooks register")
        + (
            ""
            if adapters()[psa].default_trigger == "poll"
            else " --tenant acme-1 --url https://HOST/webhooks/acme-1"
        ),
    ]
    variables = _variables(result.stdout)
    assert variables and all(v.startswith(("ACME_1_", "OPENAI_")) for v in variables)
    assert ("OPENAI_API_KEY" in variables) == (engine == "openai")
    for variable in variables:
        monkeypatch.setenv(variable, "set-by-the-test")
    tenant = load_config(path).tenant("acme-1")
    assert tenant.psa == psa and tenant.classifier_kind == engine
    assert tenant.policy.mode.value == "suggest"


def test_it_never_overwrites_without_force(tmp_path: Path) -> None:
    path = tmp_path / "psatriage.toml"
    path.write_text("# mine\n", encoding="utf-8")
    command = ["--config", str(path), "init", "--psa", "halopsa"]
    refused = runner.invoke(app, command)
    assert refused.exit_code == 2
    assert refused.stderr == f"error: {path} exists already; fix: pass --force to overwrite it\n"
    assert path.read_text(encoding="utf-8") == "# mine\n"
    assert runner.invoke(app, [*command, "--force"]).exit_code == 0
    assert 'psa = "halopsa"' in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ([], "not on a terminal: give --psa, one of autotask, connectwise, halopsa, kaseya_bms"),
        (
            ["--psa", "zendesk"],
            "--psa 'zendesk' is not a PSA psatriage knows; fix: use one of autotask, connectwise,",
        ),
        (["--psa", "autotask", "--tenant", "Acme Corp"], "--tenant 'Acme Corp': use lower-case"),
    ],
)
def test_bad_answers_are_one_line(options: list[str], says: str, tmp_path: Path) -> None:
    path = tmp_path / "psatriage.toml"
    result = runner.invoke(app, ["--config", str(path), "init", *options])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {says}") and result.stderr.count("\n") == 1
    assert not path.exists()


def test_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    under_a_file = runner.invoke(
        app, ["--config", str(blocker / "psatriage.toml"), "init", "--psa", "connectwise"]
    )
    assert under_a_file.exit_code == 2
    assert under_a_file.stderr == (
        f"error: cannot write the tenants file {blocker / 'psatriage.toml'}: {blocker} is not a "
        "folder this user can write\n"
    )
    a_folder = runner.invoke(
        app, ["init", "--force", "--psa", "halopsa"], env={"PSATRIAGE_CONFIG": str(tmp_path)}
    )
    assert a_folder.exit_code == 2
    assert a_folder.stderr == (
        f"error: the tenants file {tmp_path} is a folder; fix: name a file\n"
    )


def _read_until(fd: int, wanted: str, seen: list[str], deadline: float) -> None:
    while wanted not in "".join(seen):
        assert time.monotonic() < deadline, f"no {wanted!r} in {''.join(seen)!r}"
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            seen.append(os.read(fd, 4096).decode(errors="replace"))


@pytest.mark.slow
def test_on_a_terminal_it_asks(tmp_path: Path) -> None:
    path = tmp_path / "psatriage.toml"
    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "psatriage", "--config", str(path), "init"],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(child)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for prompt, answer in (
            ("PSA (autotask, connectwise, halopsa, kaseya_bms) [connectwise]", "jira"),
            ("Error: one of autotask", "kaseya_bms"),
            ("Tenant name [main]", "north"),
            ("Model (openai: an API key; local: offline) (openai, local) [openai]", "local"),
        ):
            _read_until(parent, prompt, seen, deadline)
            os.write(parent, answer.encode() + b"\n")
        _read_until(parent, "serve", seen, deadline)
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
        os.close(parent)
    text = path.read_text(encoding="utf-8")
    assert 'psa = "kaseya_bms"' in text and "[tenants.north.connection]" in text
    assert 'kind = "local"' in text


@pytest.mark.parametrize("psa", sorted(adapters()))
def test_config_check_names_the_values_left_to_fill_in(
    psa: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "psatriage.toml"
    made = runner.invoke(app, ["--config", str(path), "init", "--psa", psa, "--engine", "local"])
    for variable in _variables(made.stdout):
        monkeypatch.setenv(variable, "set-by-the-test")
    left = placeholders(psa)
    assert left, psa
    check = runner.invoke(app, ["--config", str(path), "config", "check", "--offline"])
    assert check.exit_code == 1, check.output
    for key, (value, what) in left.items():
        assert (
            f"tenant 'main', key 'connection.{key}': still {value!r}, as init wrote it; "
            f"fix: fill in {what}\n"
        ) in check.stderr
    text = path.read_text(encoding="utf-8")
    for value, _ in left.values():
        filled = "https://acme.halopsa.com" if value.startswith("https://") else "acme-1"
        if value.count("-") == 4:  # a GUID
            filled = "0d6c3b1e-7f55-4b39-9f2a-4ad2f1c0a001"
        text = text.replace(f'"{value}"', f'"{filled}"')
    path.write_text(text, encoding="utf-8")
    again = runner.invoke(app, ["--config", str(path), "config", "check", "--offline"])
    assert again.exit_code == 0, again.output
    assert again.stderr == ""
