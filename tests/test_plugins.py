"""Adding a PSA is one package + its fake + its test file of quirks; a classifier one module + its
tests. This checks the conventions hold and that discovery finds plugins, and refuses nonsense."""

from __future__ import annotations

import importlib
import types
import uuid
from pathlib import Path

import pytest

from psatriage.classifiers import classifiers
from psatriage.plugins import discover
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter
from tests.fakes.kit import Cases

ROOT = Path(__file__).resolve().parent.parent


def test_every_adapter_is_a_package_with_its_fake_and_tests() -> None:
    assert set(adapters()) == {"autotask", "connectwise", "halopsa", "kaseya_bms"}
    for kind, adapter in adapters().items():
        package = adapter.__module__.split(".")[2]
        assert (ROOT / "src" / "psatriage" / "psa" / package / "__init__.py").is_file(), kind
        fake = ROOT / "tests" / "fakes" / package
        assert fake.is_dir() or fake.with_suffix(".py").is_file(), f"{kind}: no fake"
        assert (ROOT / "tests" / "psa" / f"test_{package}.py").is_file(), f"{kind}: no tests"
        module = importlib.import_module(f"tests.fakes.{package}")
        assert callable(getattr(module, "kit", None)), f"{kind}: its fake has no contract kit()"
        assert isinstance(getattr(module, "CASES", None), Cases), f"{kind}: no case tables"
        assert adapter.Config.model_config.get("extra") == "forbid"


def test_every_classifier_has_tests() -> None:
    assert "openai" in classifiers()
    for kind, classifier in classifiers().items():
        module = classifier.__module__.rsplit(".", 1)[-1]
        assert (ROOT / "tests" / "classifiers" / f"test_{module}.py").is_file(), kind
        assert classifier.Config.model_config.get("extra") == "forbid"


def _package(tmp_path: Path, modules: dict[str, str]) -> types.ModuleType:
    """A plugin package of ``modules``; a name with a "/" is a module inside a subpackage."""
    name = f"plugs_{uuid.uuid4().hex}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module_name, source in modules.items():
        path = package / f"{module_name}.py"
        path.parent.mkdir(exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    return importlib.import_module(name)


PLUGIN = """
from psatriage.psa.base import PSAAdapter
class P(PSAAdapter):
    kind = "{kind}"
    def verify(self, h, b): ...
    def parse(self, b): ...
    def get_ticket(self, i): ...
    def get_taxonomy(self, t): ...
    def set_category(self, t, c): ...
    def add_note(self, t, x): ...
    def find_note(self, t, m): ...
    def register_webhook(self, u): ...
    def check_connection(self): ...
"""


def test_duplicate_kinds_fail_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(tmp_path, {"a": PLUGIN.format(kind="x"), "b": PLUGIN.format(kind="x")})
    with pytest.raises(RuntimeError, match="claimed by"):
        discover(package, PSAAdapter, skip=frozenset())


def test_a_module_without_a_plugin_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(tmp_path, {"empty": "X = 1\n"})
    with pytest.raises(RuntimeError, match="exactly one"):
        discover(package, PSAAdapter, skip=frozenset())


def test_a_package_plugin_is_found_through_its_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(
        tmp_path,
        {
            "shared": "HELPERS = 1\n",  # a plain module beside the plugins: their shared code
            "acme/adapter": PLUGIN.format(kind="acme"),
            "acme/client": "from psatriage.psa.base import PSAAdapter\n",
        },
    )
    (tmp_path / package.__name__ / "acme" / "__init__.py").write_text("from .adapter import P\n")
    found = discover(package, PSAAdapter, skip=frozenset(), packages=True)
    assert list(found) == ["acme"]
    assert found["acme"].__module__ == f"{package.__name__}.acme.adapter"
    assert discover(package, PSAAdapter, skip=frozenset({"acme"}), packages=True) == {}


def test_a_package_without_its_adapter_or_with_two_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    empty = _package(tmp_path, {"acme/adapter": "X = 1\n"})
    with pytest.raises(RuntimeError, match="exactly one PSAAdapter, found 0"):
        discover(empty, PSAAdapter, skip=frozenset(), packages=True)
    two = _package(
        tmp_path,
        {"acme/a": PLUGIN.format(kind="a"), "acme/b": PLUGIN.format(kind="b")},
    )
    (tmp_path / two.__name__ / "acme" / "__init__.py").write_text(
        "from .a import P as A\nfrom .b import P as B\n"
    )
    with pytest.raises(RuntimeError, match="exactly one PSAAdapter, found 2"):
        discover(two, PSAAdapter, skip=frozenset(), packages=True)
