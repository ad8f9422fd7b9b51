"""psatriage: categorize new PSA tickets into the PSA's own category tree."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("psatriage")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
