"""Console benchmark: each page of the web console with 100,000 decisions in the database.

Run from the repository root::

    uv run python -m bench.console [--decisions N] [--requests R] [--json]
                                   [--database sqlite|postgresql|both] [--postgres-url URL]

For each database: a fresh database gets N decisions (each with its event and model call) spread
over 90 days and some failed events (``tests/web/console/seed.py``, bulk inserts); a console user
is added; a real ``psatriage serve --no-worker`` starts on it as a subprocess, its tenants on the
HTTP fakes of the test suite (in this process); one signed-in client then asks every page R times
in turn, after a warm-up round, and the time to the last byte of each answer is recorded. The
target is p95 ≤ 200 ms per page. PostgreSQL gets a database of its own on the server of
``--postgres-url`` (default: ``PSATRIAGE_TEST_POSTGRES_URL``), dropped afterwards.

Nothing here asserts: ``docs/PERFORMANCE.md`` holds the numbers of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from tests.conftest import _fresh_database as fresh_database
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import FakeOpenAI
from tests.harness import TENANT, Harness
from tests.web.console.conftest import PASSWORD, write_tenants
from tests.web.console.seed import seed

from bench.pipeline import BenchError, machine, pct, serve
from psatriage.store import db
from psatriage.store.users import Role, Users

TARGET_P95_MS = 200.0
DAYS = 90


def pages(first_id: int, last_id: int) -> list[tuple[str, str]]:
    """(name, path) of every page, with ids that exist in the seeded database."""
    middle = (first_id + last_id) // 2
    today = date.today()
    week_ago = today - timedelta(days=7)
    return [
        ("overview, all tenants", "/"),
        ("overview, one tenant", f"/?tenant={TENANT}"),
        ("decisions", "/decisions"),
        ("decisions, tenant + outcome", f"/decisions?tenant={TENANT}&outcome=suggested"),
        ("decisions, category text", "/decisions?category=vpn"),
        ("decisions, last week", f"/decisions?since={week_ago.isoformat()}&until={today}"),
        ("decisions, deep page", f"/decisions?before={middle}"),
        ("decisions, a verdict", "/decisions?verdict=agreed"),
        ("decision", f"/decisions/{middle}"),
        ("review queue", "/reviews"),
        ("categories", "/categories"),
        ("events", "/events"),
        ("tenants", "/tenants"),
        ("tenant", f"/tenants/{TENANT}"),
    ]


@contextmanager
def signed_in(url: str) -> Iterator[httpx.Client]:
    """A client signed in to the console (as a browser would: the form, its CSRF token)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        if token is None:
            raise BenchError("the sign-in page has no CSRF token")
        answer = client.post(
            "/login", data={"csrf_token": token.group(1), "name": "bench", "password": PASSWORD}
        )
        if answer.status_code != 303:
            raise BenchError(f"sign-in answered {answer.status_code}")
        yield client


def run_database(kind: str, database_url: str, decisions: int, requests: int) -> dict[str, Any]:
    with (
        FakeConnectWise() as cw,
        FakeOpenAI() as llm,
        tempfile.TemporaryDirectory(prefix="psatriage-bench-console-") as folder,
    ):
        harness = Harness(cw, llm, Path(folder))
        engine = db.make_engine(database_url)
        try:
            db.upgrade(engine)
            started = time.perf_counter()
            seeded = seed(
                engine, tenants=(TENANT, "globex"), decisions=decisions, failures=40, days=DAYS
            )
            seeding = time.perf_counter() - started
            if engine.dialect.name == "postgresql":  # what autovacuum does after such a load
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as bare:
                    bare.exec_driver_sql("VACUUM ANALYZE")
            Users(db.make_sessionmaker(engine)).add("bench", Role.ADMIN, PASSWORD)
        finally:
            engine.dispose()
        settings = {
            "PSATRIAGE_CONFIG": str(write_tenants(harness, "console.toml")),
            "PSATRIAGE_DATABASE_URL": database_url,
            "PSATRIAGE_LOG_LEVEL": "warning",
        }
        with (
            serve(harness, workers=0, settings=settings) as service,
            signed_in(service.url) as client,
        ):
            listed = pages(seeded.first_decision_id, seeded.first_decision_id + decisions - 1)
            for _, path in listed:  # warm-up: connections, templates, the health checks
                _get(client, path)
            time.sleep(1.0)  # let the background connection checks finish
            timings: dict[str, list[float]] = {name: [] for name, _ in listed}
            for _ in range(requests):
                for name, path in listed:
                    timings[name].append(_get(client, path))
    return {
        "database": kind,
        "decisions": decisions,
        "seconds_to_seed": round(seeding, 1),
        "pages": {
            name: {
                "p50_ms": round(pct(values, 50) * 1000, 1),
                "p95_ms": round(pct(values, 95) * 1000, 1),
                "max_ms": round(max(values) * 1000, 1),
            }
            for name, values in timings.items()
        },
    }


def _get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"{path} answered {response.status_code}")
    return elapsed


def render(results: list[dict[str, Any]], context: dict[str, Any], console: Console) -> None:
    table = Table(title=f"console pages, p95 target ≤ {TARGET_P95_MS:g} ms")
    table.add_column("page")
    for result in results:
        for column in ("p50", "p95", "max"):
            table.add_column(f"{result['database']} {column} ms", justify="right")
    for name in results[0]["pages"]:
        cells = []
        for result in results:
            figures = result["pages"][name]
            ok = figures["p95_ms"] <= TARGET_P95_MS
            p95 = f"{figures['p95_ms']:.1f}" + ("" if ok else " ✗")
            cells += [f"{figures['p50_ms']:.1f}", p95, f"{figures['max_ms']:.1f}"]
        table.add_row(name, *cells)
    console.print(table)
    console.print(
        f"{context['cpu']}, {context['cores']} cores, Python {context['python']}; load "
        f"{context['load_before']} before, {context.get('load_after')} after; "
        + ", ".join(f"{r['database']} seeded in {r['seconds_to_seed']} s" for r in results),
        highlight=False,
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=100_000, help="default 100,000")
    parser.add_argument("--requests", type=int, default=40, help="per page (default 40)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "PSATRIAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    context = machine()
    results = []
    if args.database in {"sqlite", "both"}:
        with tempfile.TemporaryDirectory(prefix="psatriage-bench-db-") as folder:
            url = f"sqlite:///{Path(folder) / 'psatriage.db'}"
            results.append(run_database("SQLite", url, args.decisions, args.requests))
    if args.database in {"postgresql", "both"}:
        with fresh_database(args.postgres_url) as url:
            results.append(run_database("PostgreSQL", url, args.decisions, args.requests))
    context["load_after"] = machine()["load_before"]
    if args.json:
        print(json.dumps({"machine": context, "results": results}, indent=2))
    else:
        render(results, context, Console(width=120))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
