"""The deployment files, checked and run without a container engine: compose.yaml's shape, the
image's entry point and environment, the systemd units, and the stack's commands run as the
containers would run them, against real PostgreSQL and Redis. Where a container engine runs,
docs/deploy.md is followed for real; CI has none.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.harness import TENANT, Harness, free_port

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
ENV_EXAMPLE = ROOT / "deploy" / "psatriage.env.example"
UNITS = ROOT / "deploy" / "systemd"
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
APP = ("migrate", "web", "worker")
DEADLINE = 180  # seconds: a busy 2-core CI machine starting Python processes


def _env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, as Compose and systemd read them (comments and blanks skipped)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _image_env() -> dict[str, str]:
    """The ``ENV`` of the Dockerfile's last stage (``$PATH`` left to the host)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    last_stage = text.rsplit("\nFROM ", 1)[1]
    found: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            found |= dict(pair.split("=", 1) for pair in shlex.split(line[4:]))
    found.pop("PATH")
    return found


def _required() -> list[str]:
    names: list[str] = SERVICES["web"]["environment"]["PSATRIAGE_REQUIRED_ENV"].split()
    return names


def _unit(name: str) -> configparser.RawConfigParser:
    unit = configparser.RawConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((UNITS / name).read_text(encoding="utf-8"))
    return unit


def test_the_stack_migrates_once_then_starts_web_and_scalable_workers() -> None:
    assert set(SERVICES) == {"postgres", "redis", *APP}
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker"):
        assert SERVICES[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }
    assert SERVICES["web"]["command"] == ["serve", "--no-worker"]
    assert SERVICES["worker"]["command"] == ["worker"]
    # scalable: nothing a second worker would collide on, and a graceful stop
    assert not {"ports", "container_name"} & set(SERVICES["worker"])
    assert SERVICES["worker"]["stop_signal"] == "SIGINT"
    for name in APP:
        assert SERVICES[name]["env_file"] == "psatriage.env"
        assert "psatriage-data:/data" in SERVICES[name]["volumes"]
    for name in ("postgres", "redis"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD"
    assert set(COMPOSE["volumes"]) == {"psatriage-data", "postgres-data", "redis-data"}


def test_the_env_example_sets_every_required_variable() -> None:
    example = _env_file(ENV_EXAMPLE)
    assert _required() == ["PSATRIAGE_DATABASE_URL", "PSATRIAGE_QUEUE_URL", "PSATRIAGE_API_TOKEN"]
    assert all(example.get(name) for name in _required())
    password = example["POSTGRES_PASSWORD"]
    assert f":{password}@postgres:5432/" in example["PSATRIAGE_DATABASE_URL"]


def _entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("PSATRIAGE_DATABASE_URL", "unset"),
        ("PSATRIAGE_QUEUE_URL", "unset"),
        ("PSATRIAGE_API_TOKEN", "unset"),
        ("PSATRIAGE_API_TOKEN", "empty"),
    ],
)
def test_the_entrypoint_names_a_missing_variable(name: str, how: str) -> None:
    env = {**_env_file(ENV_EXAMPLE), "PSATRIAGE_REQUIRED_ENV": " ".join(_required())}
    if how == "empty":
        env[name] = ""
    else:
        del env[name]
    result = _entrypoint(env, "serve")
    assert result.returncode == 2
    assert result.stderr == (
        f"psatriage: {name} is not set; fix: add {name}=... to the env file "
        "(deploy/psatriage.env.example lists them)\n"
    )
    assert result.stdout == ""  # psatriage never started


def test_the_entrypoint_refuses_a_bad_list_and_lets_version_through() -> None:
    bad = _entrypoint({"PSATRIAGE_REQUIRED_ENV": "PSATRIAGE_QUEUE_URL $(reboot)"}, "serve")
    assert bad.returncode == 2 and "lists '$(reboot)', which is not a variable name" in bad.stderr
    version = _entrypoint({"PSATRIAGE_REQUIRED_ENV": " ".join(_required())}, "--version")
    assert version.returncode == 0 and version.stdout.startswith("psatriage ")


def test_the_systemd_units_run_what_the_containers_run() -> None:
    for unit_name, service in (
        ("psatriage-migrate.service", "migrate"),
        ("psatriage-web.service", "web"),
        ("psatriage-worker@.service", "worker"),
    ):
        unit = _unit(unit_name)["Service"]
        command = shlex.split(unit["ExecStart"])
        assert command == ["/opt/psatriage/bin/psatriage", *SERVICES[service]["command"]]
        assert unit["EnvironmentFile"] == "/etc/psatriage/psatriage.env"
        assert unit["User"] == "psatriage"
    assert _unit("psatriage-migrate.service")["Service"]["Type"] == "oneshot"
    for name in ("psatriage-web.service", "psatriage-worker@.service"):
        assert _unit(name)["Unit"]["Requires"] == "psatriage-migrate.service"
        assert "psatriage-migrate.service" in _unit(name)["Unit"]["After"]
    assert _unit("psatriage-worker@.service")["Service"]["KillSignal"] == "SIGINT"


# -- the stack's commands, run as its containers run them ------------------------------------


class Stack:
    """compose.yaml's application services as host processes: the entry point and the
    command of each, the image's environment, and the example env file pointed at the test's
    PostgreSQL, Redis and fakes."""

    def __init__(self, harness: Harness, root: Path, database: str, queue: str) -> None:
        self.root = root
        self.port = free_port()
        self.token = "stack-test-token"
        self.env = {
            "PATH": os.environ["PATH"],
            **_image_env(),
            **_env_file(ENV_EXAMPLE),
            **harness.env,
            "PSATRIAGE_REQUIRED_ENV": " ".join(_required()),
            "PSATRIAGE_DATABASE_URL": database,
            "PSATRIAGE_QUEUE_URL": queue,
            "PSATRIAGE_API_TOKEN": self.token,
            # what the volumes and the port mapping provide inside a container
            "PSATRIAGE_DATA_DIR": str(root / "data"),
            "PSATRIAGE_CONFIG": str(harness.write_config()),
            "PSATRIAGE_HOST": "127.0.0.1",
            "PSATRIAGE_PORT": str(self.port),
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, service: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(ENTRYPOINT), *SERVICES[service]["command"]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )

    def start(self, service: str) -> None:
        log = (self.root / f"{service}-{len(self.processes)}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                ["sh", str(ENTRYPOINT), *SERVICES[service]["command"]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()

    def get(self, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=10)

    def wait_until(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            try:
                if ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        logs = {p.name: p.read_text(errors="replace") for p in self.root.glob("*.log")}
        raise AssertionError(f"{what}: {logs}")

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(2)  # SIGINT, compose's stop_signal for workers
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def stack(harness: Harness, tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    running = Stack(harness, tmp_path, postgres_url, redis_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_the_stack_commands_serve_a_ticket_end_to_end(harness: Harness, stack: Stack) -> None:
    migrated = stack.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert re.fullmatch(r"database at revision \w+\n", migrated.stdout)
    stack.start("web")
    stack.start("worker")
    stack.start("worker")  # docker compose up --scale worker=2
    stack.wait_until(lambda: stack.get("/readyz").status_code == 200, "web never became ready")
    assert httpx.get(f"http://127.0.0.1:{stack.port}/api/events").status_code == 401

    tickets = [harness.cw.add_ticket(f"Printer {n}", "My printer has a paper jam") for n in (1, 2)]
    events = []
    for ticket in tickets:
        body, headers = harness.cw.callback(ticket)
        answer = httpx.post(
            f"http://127.0.0.1:{stack.port}/webhooks/{TENANT}", content=body, headers=headers
        )
        assert answer.status_code == 202
        events.append(answer.json()["event_id"])

    def done() -> bool:
        states = [stack.get(f"/api/events/{e}").json()["state"] for e in events]
        return states == ["done", "done"]

    stack.wait_until(done, "the workers did not process the tickets")
    for ticket in tickets:
        assert len(harness.cw.patches(ticket)) == 1
        assert sum("psatriage:" in str(n["text"]) for n in harness.cw.notes(ticket)) == 1
    again = stack.run("migrate")  # a second run (an upgrade with nothing new) changes nothing
    assert again.returncode == 0 and again.stdout == migrated.stdout


# -- the wheel ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_builds_and_installs(tmp_path: Path) -> None:
    """``uv build``, then the wheel in a fresh environment (as pipx makes one) and through
    ``uvx``, with the locked versions (from uv's cache where it has them, else the registry:
    ``--offline`` would also need the index pages, which a locked ``uv sync`` never reads)."""
    uv = ["uv"]
    build = subprocess.run(
        [*uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("psatriage-*-py3-none-any.whl")
    locked = tmp_path / "locked.txt"
    exported = subprocess.run(
        [*uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    locked.write_text(exported.stdout, encoding="utf-8")
    venv = tmp_path / "venv"
    for step in (
        [*uv, "venv", "--offline", "--python", sys.executable, str(venv)],
        [*uv, "pip", "install", "--python", str(venv), "-c", str(locked), str(wheel)],
    ):
        done = subprocess.run(step, capture_output=True, text=True, timeout=DEADLINE, check=False)
        assert done.returncode == 0, done.stderr
    version = re.search(r"psatriage-([^-]+)-", wheel.name)
    assert version is not None
    installed = subprocess.run(
        [str(venv / "bin" / "psatriage"), "--version"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert installed.stdout == f"psatriage {version.group(1)}\n", installed.stderr
    tool = subprocess.run(
        ["uvx", "-c", str(locked), "--from", str(wheel), "psatriage", "--version"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert tool.stdout == installed.stdout, tool.stderr
    migrations = subprocess.run(
        [str(venv / "bin" / "psatriage"), "db", "upgrade"],
        env={"PATH": os.environ["PATH"], "PSATRIAGE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert migrations.stdout.startswith("database at revision "), migrations.stderr
