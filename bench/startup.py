"""Start-up benchmark: ``psatriage --help`` against a bare Typer app, and ``serve`` to ``/readyz``.

Run from the repository root::

    uv run python -m bench.startup [--runs N] [--json]

help     ``psatriage --help`` (the installed command) and a bare two-command Typer app's
         ``--help`` (written to a temporary folder, Typer's defaults), each run N times in turn
         in fresh interpreters of the same virtual environment; the ratio of the medians.
         Beside it, what ``import psatriage.cli`` loads: module count, and whether any of the
         heavy libraries (scikit-learn, SciPy, wordllama, openai, SQLAlchemy, FastAPI, the PSA
         adapters...) is among them.
ready    ``psatriage serve`` started N times with no tenants on a free port, a fresh SQLite
         database and queue in a temporary folder the first time (migrations run) and the same
         folder after; time from the process start to the first ``/readyz`` 200 (polled every
         10 ms).

Each is also given in CPU time (user + system of the process): on a shared machine the wall time
stretches with the load, the CPU time much less (the help ratio is less affected either way: both
sides pay the same). The 1-minute load average before and after is reported. Nothing here
asserts; ``docs/PERFORMANCE.md`` holds the numbers of one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline import _load, cpu_seconds, machine

BARE_APP = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str) -> None:
    """Say hello."""
    print(f"hello {name}")


@app.command()
def goodbye(name: str) -> None:
    """Say goodbye."""
    print(f"goodbye {name}")


if __name__ == "__main__":
    app()
'''

HEAVY = (
    "sklearn",
    "scipy",
    "wordllama",
    "numpy",
    "openai",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "huey",
    "redis",
    "psycopg",
    "pydantic",
    "psatriage.psa.connectwise",
    "psatriage.psa.autotask",
    "psatriage.psa.halopsa",
    "psatriage.psa.kaseya_bms",
)
TARGETS = {"help_ratio": 1.5, "ready_seconds": 2.0}


def _command() -> list[str]:
    script = Path(sys.executable).with_name("psatriage")
    return [str(script)] if script.exists() else [sys.executable, "-m", "psatriage"]


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def help_ratio(runs: int, folder: Path) -> dict[str, Any]:
    bare = folder / "bare.py"
    bare.write_text(BARE_APP, encoding="utf-8")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    ours_argv, bare_argv = [*_command(), "--help"], [sys.executable, str(bare), "--help"]
    _timed(ours_argv, env)  # warm the page cache and the .pyc files
    _timed(bare_argv, env)
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_timed(ours_argv, env))
        theirs.append(_timed(bare_argv, env))
    ours_ms = statistics.median(w for w, _ in ours) * 1000
    bare_ms = statistics.median(w for w, _ in theirs) * 1000
    ours_cpu = statistics.median(c for _, c in ours) * 1000
    bare_cpu = statistics.median(c for _, c in theirs) * 1000
    return {
        "psatriage_help_ms": round(ours_ms, 1),
        "bare_typer_help_ms": round(bare_ms, 1),
        "ratio": round(ours_ms / bare_ms, 2),
        "psatriage_help_cpu_ms": round(ours_cpu, 1),
        "bare_typer_help_cpu_ms": round(bare_cpu, 1),
        "cpu_ratio": round(ours_cpu / bare_cpu, 2),
        "imports": cli_imports(),
    }


def cli_imports() -> dict[str, Any]:
    """What ``import psatriage.cli`` loads, from a fresh interpreter."""
    code = "import sys, json, psatriage.cli; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    heavy = sorted({h for h in HEAVY for m in loaded if m == h or m.startswith(h + ".")})
    return {"modules": len(loaded), "heavy": heavy}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_to_ready(runs: int, folder: Path) -> dict[str, Any]:
    data = folder / "data"
    env = {
        **os.environ,
        "PSATRIAGE_DATA_DIR": str(data),
        "PSATRIAGE_CONFIG": str(folder / "psatriage.toml"),
        "PSATRIAGE_LOG_LEVEL": "warning",
    }
    (folder / "psatriage.toml").write_text("", encoding="utf-8")
    times, cpu = [], []
    for _ in range(runs):
        port = _free_port()
        started = time.perf_counter()
        process = subprocess.Popen(
            [*_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            times.append(_wait_ready(port, started, process))
            cpu.append(cpu_seconds(process.pid))
        finally:
            process.terminate()
            process.wait(timeout=60)
    return {
        "first_start_s": round(times[0], 3),
        "later_starts_s": [round(t, 3) for t in times[1:]],
        "median_s": round(statistics.median(times[1:] or times), 3),
        "first_start_cpu_s": round(cpu[0], 3),
        "median_cpu_s": round(statistics.median(cpu[1:] or cpu), 3),
    }


def _wait_ready(port: int, started: float, process: subprocess.Popen[bytes]) -> float:
    deadline = started + 180
    with httpx.Client(timeout=2) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise SystemExit(f"serve exited with {process.returncode}: {error[-2000:]}")
            try:
                if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise SystemExit("serve was not ready within 180 s")


def _package_folders() -> list[Path]:
    """Where the service's code is imported from: psatriage and the installed libraries."""
    import sqlalchemy  # noqa: PLC0415

    import psatriage  # noqa: PLC0415 - only to find where they live

    return [Path(psatriage.__file__).parent, Path(str(sqlalchemy.__file__)).parents[1]]


def bytecode() -> dict[str, Any]:
    """Whether the interpreter finds compiled bytecode for the service's modules. Without it
    (installed without compiling, and ``PYTHONDONTWRITEBYTECODE`` set, as on some CI and
    container set-ups) every process compiles every module it imports from source, a large part
    of its start-up CPU. The image compiles at install (``UV_COMPILE_BYTECODE=1``)."""
    folders = _package_folders()
    sources = [p for folder in folders for p in folder.rglob("*.py")]
    cached = sum(1 for p in sources if Path(importlib.util.cache_from_source(str(p))).exists())
    writes = not sys.dont_write_bytecode and not os.environ.get("PYTHONDONTWRITEBYTECODE")
    state = f"{cached} of {len(sources)} modules compiled" + (
        "" if writes else "; PYTHONDONTWRITEBYTECODE is set, so the rest compile at each start"
    )
    return {"modules": len(sources), "compiled": cached, "writes_cache": writes, "state": state}


def compile_bytecode() -> None:
    """``compileall`` over the service's code and libraries (what ``UV_COMPILE_BYTECODE`` does)."""
    folders = [str(folder) for folder in _package_folders()]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", *folders],
        check=False,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs of each measure")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the environment's bytecode first, as the image does (UV_COMPILE_BYTECODE)",
    )
    args = parser.parse_args(argv)
    if args.compile:
        compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="psatriage-startup-") as tmp:
        folder = Path(tmp)
        result: dict[str, Any] = {"machine": machine(), "bytecode": bytecode()}
        result["help"] = help_ratio(args.runs, folder)
        result["ready"] = serve_to_ready(max(2, args.runs // 2), folder)
        result["machine"]["load_after"] = _load()
    help_, ready = result["help"], result["ready"]
    result["targets"] = {
        "help_ratio": {"goal": TARGETS["help_ratio"], "met": help_["ratio"] <= 1.5},
        "ready_seconds": {"goal": TARGETS["ready_seconds"], "met": ready["median_s"] <= 2.0},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    box = result["machine"]
    print(f"{box['cpu']}, {box['cores']} cores, Python {box['python']}, {box['system']}")
    print(f"bytecode: {result['bytecode']['state']}")
    print(f"load average (1 min): {box['load_before']} before, {box['load_after']} after")
    print(
        f"--help: psatriage {help_['psatriage_help_ms']} ms, bare Typer app "
        f"{help_['bare_typer_help_ms']} ms: {help_['ratio']}× (goal ≤ 1.5×); CPU "
        f"{help_['psatriage_help_cpu_ms']} / {help_['bare_typer_help_cpu_ms']} ms: "
        f"{help_['cpu_ratio']}×"
    )
    imports = help_["imports"]
    print(
        f"import psatriage.cli: {imports['modules']} modules; heavy: "
        f"{', '.join(imports['heavy']) or 'none'}"
    )
    print(
        f"serve → /readyz 200: first start (migrations) {ready['first_start_s']} s, "
        f"then median {ready['median_s']} s {ready['later_starts_s']} (goal ≤ 2 s idle); "
        f"CPU to ready {ready['first_start_cpu_s']} s, then {ready['median_cpu_s']} s"
    )


if __name__ == "__main__":
    main()
