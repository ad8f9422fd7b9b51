"""Outbound HTTP: the one client factory (PSA adapters and key fetches) and the one reading of
``Retry-After`` (PSAs and model servers)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar
from typing import Any
from urllib.request import getproxies

import httpx

from psatriage import __version__
from psatriage.transport import StdlibTransport

USER_AGENT = f"psatriage/{__version__}"
READ_TIMEOUT_SECONDS = 30.0
"""How long ``make_client``'s clients wait for an answer by default."""


def make_client(
    *,
    timeout: float = READ_TIMEOUT_SECONDS,
    connect_timeout: float = 10.0,
    max_connections: int = 32,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with our timeouts, pool and User-Agent; redirects are not followed and
    cookies are neither kept, sent nor read (``Client``). Its transport is ``transport``, else the
    lean one (``psatriage.transport``) unless the environment names a proxy, which ``httpx``'s
    own transports then serve."""
    if transport is None and lean_transport():
        transport = StdlibTransport(max_connections=max_connections)
    return Client(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
    )


def lean_transport() -> bool:
    """Whether clients may use ``psatriage.transport``: not when ``HTTP(S)_PROXY`` or
    ``ALL_PROXY`` is set, since a client given its own transport does not read them."""
    return not any(key in {"http", "https", "all"} for key in getproxies())


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing. One client serves every tenant's adapter: a cookie one
    tenant's PSA set (a session, a load balancer's) would otherwise go back with the next tenant's
    requests to the same host. The PSA APIs authenticate each request by its headers."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None


class Cookieless(httpx.Cookies):
    """The cookies of a ``Client``: always empty, and an answer's are never looked at."""

    def __init__(self) -> None:
        super().__init__(NoCookies())

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


_COOKIELESS = Cookieless()


class Client(httpx.Client):
    """An ``httpx.Client`` without cookies (``NoCookies``): its ``cookies`` are always the empty
    ``Cookieless`` store, so none is kept or sent, and an answer's ``Set-Cookie`` is not even
    read. Reading it cost ``httpx`` a ``urllib`` request built from each answer, about a tenth
    of a worker's CPU a ticket (``docs/PERFORMANCE.md``, round 12)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _COOKIELESS

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        """Cookies given to the client are dropped (``NoCookies``)."""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """How long the server asks us to wait, in seconds: ``retry-after-ms`` (OpenAI, Azure), else
    ``Retry-After`` as seconds or as an HTTP date; None when absent or unreadable. Never negative.

    ``headers`` is looked up by lower-case name (``httpx.Headers`` ignores case anyway).
    """
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
