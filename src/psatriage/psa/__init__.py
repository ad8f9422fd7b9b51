"""PSA adapters, one package each (``psa/<name>/``), found by convention (``psatriage.plugins``).

::

    base.py      PSAAdapter, the interface; AdapterConfig and the config mixins
    client.py    PSAClient: sending under the call limits, the error ladder, 429 retries
    paging.py    next-link and page-number paging
    tokens.py    TokenCache: one access token per API login, shared by threads and processes
    wire.py      small readers: ids, timestamps, webhook bodies, body hashes
    <name>/      one PSA: adapter.py, client.py, config.py and what is its own
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from psatriage.plugins import discover
from psatriage.psa.base import PSAAdapter


@cache
def adapters() -> dict[str, type[PSAAdapter[Any]]]:
    """Every registered adapter class by ``kind`` (``connectwise``, ...)."""
    return discover(sys.modules[__name__], PSAAdapter, skip=frozenset(), packages=True)


__all__ = ["PSAAdapter", "adapters"]
