"""Migrations bring a blank database to head, and agree with the models, on both databases."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from psatriage.store import db
from psatriage.store.tables import Base


def _check_upgrade_and_agreement(url: str) -> None:
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) is None
        assert not db.at_head(engine)
        db.upgrade(engine)
        assert db.at_head(engine)
        assert {"events", "decisions", "model_calls", "taxonomy_cache"} <= set(
            inspect(engine).get_table_names()
        )
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        db.upgrade(engine)  # idempotent
        assert db.at_head(engine)
    finally:
        engine.dispose()


def test_sqlite_blank_to_head_matches_models(tmp_path: Path) -> None:
    _check_upgrade_and_agreement(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")


@pytest.mark.postgres
def test_postgresql_blank_to_head_matches_models(postgres_url: str) -> None:
    _check_upgrade_and_agreement(postgres_url)


def test_plain_postgresql_urls_use_psycopg3() -> None:
    assert db.normalize_url("postgresql://u@h/d").startswith("postgresql+psycopg://")
    assert db.normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def _upgrade_in_a_process(url: str, start: Any) -> None:
    engine = db.make_engine(url)
    try:
        start.wait()
        db.upgrade(engine)
    finally:
        engine.dispose()


@pytest.mark.slow  # starts four Python processes
def test_processes_starting_together_migrate_a_blank_postgresql_one_at_a_time(
    postgres_url: str,
) -> None:
    """Web and workers start at once on a new database: every upgrade succeeds, one migrates.

    Processes, not threads: Alembic's ``context`` is one per process."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(4)
    processes = [
        spawn.Process(target=_upgrade_in_a_process, args=(postgres_url, start)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    engine = db.make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_heads() == (
                db.head_revision(),
            )
    finally:
        engine.dispose()
