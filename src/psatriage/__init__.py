"""psatriage: categorize new PSA tickets into the PSA's own category tree."""

from __future__ import annotations

from functools import cache

__all__ = ["__version__"]


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - see below

    try:
        return version("psatriage")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed package's metadata when first asked for (reading
    it costs more than the rest of ``psatriage --help``)."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
