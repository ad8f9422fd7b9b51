"""What the shared-store tests need to be cruel to a PostgreSQL server: its sessions ended, its
database closed to connections (``database``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest


@dataclass
class Database:
    """A fresh database (``url``) and an administrator's connection to its server."""

    url: str
    admin: psycopg.Connection[Any]

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def end_sessions(self) -> int:
        """End every session on the database, as a server restart would; how many there were."""
        ended = self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (self.name,),
        ).fetchall()
        return sum(1 for (done,) in ended if done)

    def allow_connections(self, allowed: bool) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {str(allowed).lower()}')


@pytest.fixture
def database(postgres_url: str, postgres_server: str) -> Iterator[Database]:
    with psycopg.connect(postgres_server.replace("+psycopg", ""), autocommit=True) as admin:
        yield Database(postgres_url, admin)
