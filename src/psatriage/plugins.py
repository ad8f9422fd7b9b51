"""Discovery by convention: each plugin of a plugin package is one module, or one package, that
defines exactly one plugin class.

Classifiers are modules (``classifiers/<name>.py``); PSA adapters are packages
(``psa/<name>/``, whose ``__init__`` exposes the adapter class defined in one of its modules), and
the plain modules beside them are the code they share. Adding a PSA is adding ``psa/<name>/``;
nothing else needs to be edited. Two plugins that claim the same ``kind``, or a plugin that
defines none or several, stop the process at start-up.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any


def discover(
    package: ModuleType, base: type[Any], *, skip: frozenset[str], packages: bool = False
) -> dict[str, Any]:
    """Import every plugin of ``package`` and map each plugin class's ``kind``.

    A plugin is a module, or with ``packages`` a subpackage (the plain modules then being shared
    code); names in ``skip`` and names starting with ``_`` are passed over.
    """
    found: dict[str, type[Any]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in skip or info.name.startswith("_") or info.ispkg != packages:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        plugin = _the_plugin(module, base)
        kind: str = getattr(plugin, "kind", "")
        if not kind:
            raise RuntimeError(f"{plugin.__qualname__} has no kind")
        if kind in found:
            raise RuntimeError(
                f"kind {kind!r} is claimed by {found[kind].__module__} and {plugin.__module__}"
            )
        found[kind] = plugin
    return found


def _the_plugin(module: ModuleType, base: type[Any]) -> type[Any]:
    """The one concrete ``base`` subclass ``module`` defines (in it, or in a module of it)."""
    inside = f"{module.__name__}."
    own = {
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, base)
        and (obj.__module__ == module.__name__ or obj.__module__.startswith(inside))
        and not inspect.isabstract(obj)
    }
    if len(own) != 1:
        raise RuntimeError(
            f"{module.__name__} must define exactly one {base.__name__}, found {len(own)}"
        )
    return own.pop()
