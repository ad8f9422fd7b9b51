"""Discovery by convention: every module of a plugin package defines exactly one plugin class.

Adding a PSA is adding ``psa/<name>.py``; nothing else needs to be edited. Two modules that claim
the same ``kind``, or a module that defines none, stop the process at start-up.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any


def discover(package: ModuleType, base: type[Any], *, skip: frozenset[str]) -> dict[str, Any]:
    """Import every module of ``package`` (except ``skip``) and map each plugin's ``kind``."""
    found: dict[str, type[Any]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in skip or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        own = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, base)
            and obj.__module__ == module.__name__
            and not inspect.isabstract(obj)
        ]
        if len(own) != 1:
            raise RuntimeError(
                f"{module.__name__} must define exactly one {base.__name__}, found {len(own)}"
            )
        kind: str = getattr(own[0], "kind", "")
        if not kind:
            raise RuntimeError(f"{own[0].__qualname__} has no kind")
        if kind in found:
            raise RuntimeError(
                f"kind {kind!r} is claimed by {found[kind].__module__} and {module.__name__}"
            )
        found[kind] = own[0]
    return found
