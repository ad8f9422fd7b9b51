"""One access-token cache for every PSA that logs in for a token (HaloPSA, Kaseya BMS).

A ``TokenCache`` holds one tenant's token, shared by every worker thread of the process; where the
Runtime shares tokens (``psatriage.shared.tokens``: a Redis or PostgreSQL queue and
``PSATRIAGE_SECRET_KEY``), by every process of the deployment. Some PSAs invalidate earlier tokens
when a new one is issued [UNSURE for HaloPSA: from django-psa's comment], so at most one thread
asks for a token at a time (a lock), a token is replaced shortly before it is due, and a 401
replaces it once: unless another thread already did.

With a shared store, the deployment holds one token per API login (``name``): a process keeps a
copy while it is valid; when it needs another (none yet, due for renewal, or refused with 401) it
first takes the one another process shared, if that is neither due nor the one refused; only then,
holding a lock across processes and after reading the shared one again, does it ask the PSA and
share the answer. A store that does not answer costs nothing but the sharing: the process asks the
PSA itself. ``with_token`` sends a call with the token and, on a 401 for a token this call did not
have issued (another thread's or process's), gets one more replacement, so only a token issued
for the call can make it fail with ``AuthFailed``.

The PSA's own login (``fetch``) gets the token being replaced, if any, so it can use a refresh
token where the PSA has one (Kaseya BMS) rather than the password again.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from psatriage.shared.tokens import SharedTokens

log = structlog.get_logger(__name__)

LOCK_WAIT_SECONDS = 45.0  # for another process's token request (10 s to connect, 30 s to answer)


@dataclass(frozen=True)
class Token:
    """An access token and when to renew it; times are on the cache's clock (``time.monotonic``).

    ``refresh`` and ``refresh_until`` are the PSA's refresh token and when it stops working, where
    the PSA issues one."""

    access: str
    renew_at: float
    refresh: str = ""
    refresh_until: float | None = None

    def __repr__(self) -> str:
        return "Token(...)"


Fetch = Callable[[Token | None], Token]


def cache_name(kind: str, *login: str) -> str:
    """The name one API login's token is shared under: the PSA and a hash of what identifies the
    login (instance, client or user, scope...), never a secret."""
    return f"{kind}:" + hashlib.sha256("\n".join(login).encode()).hexdigest()[:32]


class TokenCache:
    """The token of one API login; see the module docstring."""

    def __init__(
        self,
        name: str,
        fetch: Fetch,
        *,
        shared: SharedTokens | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._shared = shared
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Token | None = None  # replaced whole

    def __repr__(self) -> str:
        return f"TokenCache({self.name.split(':', 1)[0]})"

    def now(self) -> float:
        """The cache's clock, for ``fetch`` to say when its token is due."""
        return self._clock()

    def current(self) -> str:
        """A token that is not due for renewal (fetched now if there is none)."""
        cached = self._cached
        if cached is not None and self._clock() < cached.renew_at:
            return cached.access
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() < cached.renew_at:
                return cached.access  # another thread renewed it while we waited
            return self._renew(None)[0]

    def replace(self, refused: str) -> tuple[str, bool]:
        """A token to use after the PSA refused ``refused`` (401), one fetch for all threads and
        processes; and whether it was issued for this call (False: another thread or process had
        it issued, so a 401 on it is worth one more ``replace``)."""
        with self._lock:
            cached = self._cached
            if cached is not None and cached.access != refused and self._clock() < cached.renew_at:
                return cached.access, False
            return self._renew(refused)

    # -- under the lock ---------------------------------------------------------------------------

    def _renew(self, refused: str | None) -> tuple[str, bool]:
        """The shared token if another process renewed it, else a new one from the PSA (shared)."""
        shared = self._shared
        if shared is None:
            return self._issue().access, True
        token = self._adopt(shared, refused)
        if token is not None:
            return token, False
        with shared.refreshing(self.name, LOCK_WAIT_SECONDS):
            token = self._adopt(shared, refused)  # renewed while we waited for the lock?
            if token is not None:
                return token, False
            issued = self._issue()
            shared.put(self.name, self._sealed(issued), self._wall(issued.renew_at))
            return issued.access, True

    def _issue(self) -> Token:
        previous = self._cached
        self._cached = self._fetch(previous)
        return self._cached

    def _adopt(self, shared: SharedTokens, refused: str | None) -> str | None:
        """The shared token, kept as this process's, unless absent, due or ``refused``."""
        found = shared.get(self.name)
        if found is None:
            return None
        text, expires_at = found
        left = expires_at - time.time()
        token = self._unsealed(text, self._clock() + left)
        if token is None or token.access == refused or left <= 0:
            return None
        self._cached = token
        log.debug("access token taken from the shared store", cache=self.name.split(":")[0])
        return token.access

    def _wall(self, monotonic: float) -> float:
        return time.time() + monotonic - self._clock()

    def _sealed(self, token: Token) -> str:
        until = None if token.refresh_until is None else self._wall(token.refresh_until)
        return json.dumps({"access": token.access, "refresh": token.refresh, "until": until})

    def _unsealed(self, text: str, renew_at: float) -> Token | None:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        access = data.get("access") if isinstance(data, dict) else None
        if not isinstance(access, str) or not access:
            return None
        until = data.get("until")
        refresh_until = None
        if isinstance(until, int | float):
            refresh_until = self._clock() + until - time.time()
        refresh = data.get("refresh")
        return Token(access, renew_at, refresh if isinstance(refresh, str) else "", refresh_until)


def with_token(
    tokens: TokenCache,
    attempt: Callable[[str], httpx.Response],
    refused: Callable[[httpx.Response], bool] = lambda response: response.status_code == 401,
) -> httpx.Response:
    """``attempt(token)``; when the PSA refuses the token, once more with its replacement (twice
    when the first replacement was another thread's or process's, not issued for this call)."""
    token = tokens.current()
    response = attempt(token)
    if refused(response):
        token, issued = tokens.replace(token)
        response = attempt(token)
        if refused(response) and not issued:
            token = tokens.replace(token)[0]
            response = attempt(token)
    return response
