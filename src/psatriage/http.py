"""The one factory for outbound HTTP clients (PSA adapters and key fetches)."""

from __future__ import annotations

import httpx

from psatriage import __version__

USER_AGENT = f"psatriage/{__version__}"


def make_client(
    *,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    max_connections: int = 32,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with our timeouts, pool and User-Agent; redirects are not followed."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        transport=transport,
    )
