"""PSA access tokens shared by every worker process of a deployment, encrypted, in the Redis or
PostgreSQL server of its queue or in a file beside its SQLite file.
``psatriage.psa.tokens.TokenCache`` uses them.

``SharedTokens`` is what callers see: ``get(name)`` gives ``(value, expires_at)`` or None,
``put(name, value, expires_at)`` stores, and ``refreshing(name, timeout)`` is a lock across
processes, held by the one that renews the value while the others wait. ``expires_at`` is
wall-clock time (``time.time()``): when every process should stop using the value; the server
forgets it then. The Runtime picks the store from the queue URL (``tokens_for``) and makes it the
process's (``share_tokens``), as it does for the call limits.

Values are encrypted with Fernet (``PSATRIAGE_SECRET_KEY``) before they leave the process, together
with their name and expiry: the server holds no token in clear, and a value copied under another
name is refused. A value that does not decrypt (the key changed) counts as absent, and the next
``put`` replaces it.

A server that does not answer never stops the caller: ``get`` then finds nothing, ``put`` stores
nothing and ``refreshing`` holds no lock (it yields False), with a warning, so the caller falls
back to a token of its own. The store is then left alone for ``PAUSE_SECONDS``; after that, a
dropped connection is opened again. The lock does not outlive a process that dies holding it (see
the backends).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import structlog
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from psatriage.settings import shared_server
from psatriage.shared import backend_for
from psatriage.shared.base import StoreUnavailable, TokenStore

log = structlog.get_logger(__name__)

T = TypeVar("T")

PAUSE_SECONDS = 30.0
"""How long a store that did not answer is left alone: one timeout, not one per token."""

_FIX_KEY = (
    'set PSATRIAGE_SECRET_KEY on every process to one key from: python -c "from '
    'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class SharedTokens:
    """Encrypted values in a ``TokenStore``, and the fallback when it does not answer."""

    def __init__(
        self, backend: TokenStore, key: SecretStr, *, pause: float = PAUSE_SECONDS
    ) -> None:
        self._backend = backend
        self._fernet = Fernet(key.get_secret_value())
        self._pause = pause
        self._paused_until = 0.0  # time.monotonic(); the store is skipped until then
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"SharedTokens(in {self._backend.where})"

    def get(self, name: str) -> tuple[str, float] | None:
        """``(value, expires_at)``, or None when absent, expired, unreadable or unreachable."""
        raw = self._call("read a shared token", name, lambda: self._backend.get(name), None)
        if raw is None:
            return None
        try:
            data = json.loads(self._fernet.decrypt(raw))
        except (InvalidToken, ValueError):
            log.warning(
                "a shared token could not be decrypted (was PSATRIAGE_SECRET_KEY changed?); "
                "ignored, it will be replaced",
                name=name,
            )
            return None
        if not isinstance(data, dict) or data.get("name") != name:
            log.warning("a shared token was stored under another name; ignored", name=name)
            return None
        value, expires_at = data.get("value"), data.get("expires_at")
        if not isinstance(value, str) or not isinstance(expires_at, int | float):
            return None
        return (value, float(expires_at)) if expires_at > time.time() else None

    def put(self, name: str, value: str, expires_at: float) -> None:
        """Share ``value`` until ``expires_at``; if the store does not answer, it is not shared."""
        sealed = self._fernet.encrypt(
            json.dumps({"name": name, "value": value, "expires_at": expires_at}).encode()
        )
        self._call("share a token", name, lambda: self._backend.put(name, sealed, expires_at), None)

    @contextmanager
    def refreshing(self, name: str, timeout: float) -> Iterator[bool]:
        """Hold ``name``'s refresh lock for the block; False if it could not be had within
        ``timeout`` seconds or the store does not answer (the block runs all the same)."""
        with ExitStack() as stack:
            held = self._call(
                "take the refresh lock",
                name,
                lambda: stack.enter_context(self._backend.refreshing(name, timeout)),
                False,
            )
            if not held and time.monotonic() >= self._paused_until:  # not down: just busy
                log.warning(
                    f"the shared refresh lock stayed taken for {timeout:.1f} s; renewing "
                    "without it",
                    name=name,
                )
            yield held

    def close(self) -> None:
        self._backend.close()

    def _call(self, what: str, name: str, work: Callable[[], T], fallback: T) -> T:
        """``work()``, or ``fallback`` while the store is paused or when it does not answer."""
        with self._state:
            if time.monotonic() < self._paused_until:
                return fallback
        try:
            return work()
        except StoreUnavailable as exc:
            with self._state:
                self._paused_until = time.monotonic() + self._pause
            log.warning(
                f"could not {what}: {exc}; meanwhile this process uses tokens of its own",
                name=name,
                retry_in=self._pause,
            )
            return fallback


# -- the process's store ----------------------------------------------------------------------

_shared: SharedTokens | None = None


def share_tokens(store: SharedTokens | None) -> None:
    """Make ``store`` the one this process's token sources use (None: each keeps its own)."""
    global _shared  # noqa: PLW0603 - one deployment-wide setting, made by the Runtime at start
    _shared = store


def current() -> SharedTokens | None:
    """The store set by ``share_tokens``, if any."""
    return _shared


def tokens_for(queue_url: str, secret_key: SecretStr | None) -> SharedTokens | None:
    """Shared tokens where the deployment has a ``secret_key`` (on the queue's Redis or PostgreSQL
    server and database, or beside its SQLite file); else None, and tokens stay per process. A
    Redis or PostgreSQL queue without a key logs a warning: its worker processes may be on many
    machines. On one machine, ``serve`` makes a key for its own processes when none is set."""
    if secret_key is None:
        if shared_server(queue_url) is None:
            return None
        log.warning(
            "PSA access tokens are not shared between worker processes because "
            "PSATRIAGE_SECRET_KEY is not set: each process asks for its own, and a new one may "
            f"invalidate the others' (401, then one more token request); to share them, {_FIX_KEY}"
        )
        return None
    return SharedTokens(backend_for(queue_url), secret_key)
