"""The OpenAI SDK's HTTP client: its own ``httpx2.Client`` with the SDK's defaults, no cookies,
and the lean transport (``psatriage.transport``) unless the environment names a proxy.

Imported only where a model is called (it loads ``httpx2`` and the SDK)."""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from psatriage.http import NoCookies, lean_transport
from psatriage.transport import httpx2_transport

MAX_CONNECTIONS = 256


class Cookieless(httpx2.Cookies):
    """Always empty, and an answer's ``Set-Cookie`` is never read (as ``psatriage.http``'s)."""

    def __init__(self) -> None:
        super().__init__(NoCookies())

    def extract_cookies(self, response: httpx2.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx2.Request) -> None:
        return None


_COOKIELESS = Cookieless()


class Client(httpx2.Client):
    """An ``httpx2.Client`` whose ``cookies`` are always ``Cookieless``. Model APIs authenticate
    by header; reading each answer's cookies cost a ``urllib`` request built from it."""

    @property
    def cookies(self) -> httpx2.Cookies:
        return _COOKIELESS

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        """Cookies given to the client are dropped."""


def make_http_client() -> Client:
    """The SDK's default client (its timeout, its connection limits, redirects followed) as a
    ``Client``, on the lean transport unless ``HTTP(S)_PROXY`` or ``ALL_PROXY`` is set (then
    ``httpx2``'s own transports, which read them)."""
    transport = httpx2_transport(max_connections=MAX_CONNECTIONS) if lean_transport() else None
    return Client(
        timeout=openai.DEFAULT_TIMEOUT,
        limits=openai.DEFAULT_CONNECTION_LIMITS,
        follow_redirects=True,
        transport=transport,
    )
