"""What the cross-process stores share: the two interfaces their backends implement and the error
a backend raises when its server does not answer.

A backend (``RedisBackend``, ``PostgresBackend``, ``SqliteBackend``) is written once and serves both
stores: the call limits (``LimitStore``: rolling windows and concurrency slots) and the shared
access tokens (``TokenStore``: encrypted values and a refresh lock). ``MemoryLimits`` is the
in-process ``LimitStore`` of a limiter used without a Runtime.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from psatriage.errors import TransientError


class StoreUnavailable(TransientError):
    """The queue's Redis or PostgreSQL (or the file beside its SQLite file), which holds the
    shared limits and tokens, did not answer.

    A call limit that cannot be counted makes the job wait and try again later (it is a
    ``TransientError``); a token that cannot be shared makes the process use one of its own.
    """

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(
            f"the queue's {where}, which holds the shared PSA call limits and tokens, did not "
            f"answer ({type(exc).__name__}: {first_line(exc)}); retrying later (check that it "
            "is up)"
        )


class LimitStore(Protocol):
    """Where call limits are counted: in this process, or shared by every process.

    ``now`` is wall-clock time (``time.time()``), comparable between processes.
    """

    def take(self, key: str, limit: int, window: float, now: float) -> float:
        """Count one call if ``key`` has room; return 0.0, else the seconds until it has."""

    def count(self, key: str, window: float, now: float) -> int:
        """Calls counted for ``key`` in the window ending at ``now``."""

    def acquire(self, key: str, limit: int, lease: float, now: float) -> str | None:
        """Take one of ``limit`` slots of ``key`` until released or ``now + lease``; return its
        token, or None when all are taken (slots whose lease ran out are taken back first)."""

    def release(self, key: str, token: str) -> None:
        """Give the slot back (a token unknown or already expired is ignored)."""

    def close(self) -> None:
        """Release the connection, if any."""


class TokenStore(Protocol):
    """Where shared values live (already encrypted); raises ``StoreUnavailable`` when its server
    does not answer."""

    where: str  # "Redis" or "PostgreSQL", for messages

    def get(self, name: str) -> bytes | None:
        """The value stored under ``name``, unless it expired."""

    def put(self, name: str, value: bytes, expires_at: float) -> None:
        """Store ``value`` until ``expires_at`` (wall clock), replacing any other."""

    def refreshing(self, name: str, timeout: float) -> AbstractContextManager[bool]:
        """Hold ``name``'s lock for the block (True), or False after ``timeout`` seconds."""

    def close(self) -> None:
        """Release the connections."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
