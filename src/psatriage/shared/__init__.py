"""State shared by every worker process of a deployment, in the server of its queue.

::

    limits.py            client-side limits on PSA calls: rolling windows, concurrency slots
    tokens.py            PSA access tokens, encrypted, with a lock for the one who renews them
    base.py              the interfaces both backends implement; ``StoreUnavailable``
    redis_backend.py     both stores in Redis
    postgres_backend.py  both stores in PostgreSQL
    sqlite_backend.py    both stores in a SQLite file beside the queue's (one machine)

The Runtime picks the backend from the queue URL (``backend_for``) and makes the stores the
process's (``limits.share_limits``, ``tokens.share_tokens``). A SQLite deployment never loads the
Redis or PostgreSQL client (each backend is imported when chosen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psatriage.settings import shared_server

if TYPE_CHECKING:
    from psatriage.shared.postgres_backend import PostgresBackend
    from psatriage.shared.redis_backend import RedisBackend
    from psatriage.shared.sqlite_backend import SqliteBackend


def backend_for(queue_url: str) -> RedisBackend | PostgresBackend | SqliteBackend:
    """The backend on the queue's own server and database (Redis, PostgreSQL), or in a file
    beside the queue's SQLite file. Nothing is connected until the first call."""
    server = shared_server(queue_url)
    if server is None:
        from psatriage.shared.sqlite_backend import for_queue  # noqa: PLC0415 - when chosen

        return for_queue(queue_url)
    kind, url = server
    if kind == "redis":
        from psatriage.shared.redis_backend import RedisBackend  # noqa: PLC0415 - when chosen

        return RedisBackend(url)
    from psatriage.shared.postgres_backend import PostgresBackend  # noqa: PLC0415 - when chosen

    return PostgresBackend(url)
