"""Shared fixtures: settings on temporary SQLite files, and real PostgreSQL / Redis when configured.

Production-mode tests need ``PSATRIAGE_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1/test``)
and ``PSATRIAGE_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/15``); ``.ci/run`` exports both.
Without them those tests are skipped, with the reason shown.

The test that restarts PostgreSQL mid-burst needs a server of its own that it may stop and start:
``PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL`` reaches it and ``PSATRIAGE_TEST_POSTGRES_CTL`` is the
command that controls it, to which ``stop`` or ``start`` is appended (``.ci/run`` creates one with
``pg_createcluster`` on port 5433).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from psatriage.settings import Settings
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import FakeOpenAI
from tests.harness import Harness


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in an empty directory, without the caller's ``PSATRIAGE_*`` settings:
    a ``psatriage.toml`` written by ``psatriage init`` in the clone, or an exported
    ``PSATRIAGE_DATABASE_URL``, never reaches a test."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"PSATRIAGE_{name.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, config=tmp_path / "psatriage.toml")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = os.environ.get("PSATRIAGE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PSATRIAGE_TEST_POSTGRES_URL is not set (no PostgreSQL to test against)")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with _fresh_database(postgres_server) as url:
        yield url


@contextmanager
def _fresh_database(server: str) -> Iterator[str]:
    """Create a database on ``server`` for one test; drop it afterwards."""
    name = f"psatriage_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(server).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class RestartablePostgres:
    url: str
    control: list[str]

    @contextmanager
    def down(self) -> Iterator[None]:
        """Stop the server (fast shutdown: every connection is cut) and start it on leaving."""
        subprocess.run([*self.control, "stop", "-m", "fast"], check=True, capture_output=True)
        try:
            yield
        finally:
            subprocess.run([*self.control, "start"], check=True, capture_output=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    psycopg.connect(self.url, connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    time.sleep(0.2)


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A fresh database on a PostgreSQL server this test may stop and start."""
    server = os.environ.get("PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL")
    control = os.environ.get("PSATRIAGE_TEST_POSTGRES_CTL")
    if not server or not control:
        pytest.skip(
            "PSATRIAGE_TEST_RESTARTABLE_POSTGRES_URL and PSATRIAGE_TEST_POSTGRES_CTL are not set "
            "(no PostgreSQL server that this test may restart)"
        )
    with _fresh_database(server) as url:
        yield RestartablePostgres(url, shlex.split(control))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database emptied before and after the test."""
    url = os.environ.get("PSATRIAGE_TEST_REDIS_URL")
    if not url:
        pytest.skip("PSATRIAGE_TEST_REDIS_URL is not set (no Redis to test against)")
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on the three queues whose stores the worker processes share: a
    SQLite file (one machine), Redis, PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    url: str = request.getfixturevalue("redis_url" if request.param == "redis" else "postgres_url")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'psatriage.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def cw() -> Iterator[FakeConnectWise]:
    with FakeConnectWise() as fake:
        yield fake


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def harness(
    cw: FakeConnectWise, llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    built = Harness(cw, llm, tmp_path)
    for key, value in built.env.items():
        monkeypatch.setenv(key, value)
    return built
