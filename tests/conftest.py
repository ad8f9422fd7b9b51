"""Shared fixtures: settings on temporary SQLite files, and real PostgreSQL / Redis when configured.

Production-mode tests need ``PSATRIAGE_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1/test``)
and ``PSATRIAGE_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/15``); ``.ci/run`` exports both.
Without them those tests are skipped, with the reason shown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from psatriage.settings import Settings
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.openai import FakeOpenAI
from tests.harness import Harness


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
    name = f"psatriage_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_server).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
