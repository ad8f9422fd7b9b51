"""``psatriage --help`` loads only the command line: the heavy libraries and the service's parts
are imported by the commands that use them (the start-up time itself is measured in
``bench/startup.py``, never here)."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from psatriage.cli import app, report
from psatriage.cli.review import ReviewStateChoice
from psatriage.cli.users import RoleChoice
from psatriage.reports import period
from psatriage.store.tables import ReviewState
from psatriage.store.users import Role

HEAVY = (
    "sklearn",
    "scipy",
    "numpy",
    "wordllama",
    "openai",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "uvicorn",
    "httpx",
    "huey",
    "redis",
    "psycopg",
    "pydantic",
    "structlog",
    "jinja2",
    "psatriage.config",
    "psatriage.runtime",
    "psatriage.store.tables",
    "psatriage.web",
    "psatriage.psa.connectwise",
    "psatriage.classifiers",
)


def _loaded(code: str) -> list[str]:
    """The modules a fresh interpreter holds after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def _heavy(modules: list[str]) -> list[str]:
    return sorted({h for h in HEAVY for m in modules if m == h or m.startswith(h + ".")})


def test_importing_the_command_line_loads_no_heavy_library() -> None:
    assert _heavy(_loaded("import psatriage.cli")) == []


def test_help_loads_no_heavy_library_and_lists_the_commands() -> None:
    code = (
        "import sys\nfrom psatriage.cli import app\nsys.argv = ['psatriage', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert _heavy(_loaded(code)) == []
    shown = CliRunner().invoke(app, ["--help"]).output
    for command in ("serve", "worker", "categorize", "events", "users", "config", "backtest"):
        assert command in shown


def test_the_command_lines_copies_agree_with_the_originals() -> None:
    assert [r.value for r in RoleChoice] == [r.value for r in Role]
    assert [s.value for s in ReviewStateChoice] == [s.value for s in ReviewState]
    assert report.DEFAULT_SINCE == period.DEFAULT_SINCE


def test_the_service_starts_without_the_model_libraries() -> None:
    """``serve`` imports the web app, the runtime and the jobs; the OpenAI SDK comes with the
    first model call and the local engine's training libraries never come."""
    code = "from psatriage.web import create_app\nfrom psatriage.runtime import Runtime\n"
    code += "from psatriage import jobs"
    loaded = _loaded(code)
    model_libraries = ("sklearn", "scipy", "numpy", "wordllama", "openai")
    assert sorted({m.split(".")[0] for m in loaded} & set(model_libraries)) == []


def test_the_service_imports_the_queue_server_clients_only_for_their_queues() -> None:
    """The Redis client and the PostgreSQL driver come with a queue (or database) on them: a
    service on SQLite starts without either."""
    code = "from psatriage.web import create_app\nfrom psatriage.runtime import Runtime\n"
    code += "from psatriage import jobs, queue"
    loaded = {m.split(".")[0] for m in _loaded(code)}
    assert sorted(loaded & {"redis", "psycopg"}) == []
