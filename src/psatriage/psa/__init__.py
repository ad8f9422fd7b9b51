"""PSA adapters, one module each, found by convention (see ``psatriage.plugins``)."""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from psatriage.plugins import discover
from psatriage.psa.base import PSAAdapter


@cache
def adapters() -> dict[str, type[PSAAdapter[Any]]]:
    """Every registered adapter class by ``kind`` (``connectwise``, ...)."""
    return discover(sys.modules[__name__], PSAAdapter, skip=frozenset({"base"}))


__all__ = ["PSAAdapter", "adapters"]
