"""Adding a PSA is one module + its fake + its test file; this checks the convention holds."""

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

ROOT = Path(__file__).resolve().parent.parent


def test_every_adapter_has_its_fake_and_tests() -> None:
    assert "connectwise" in adapters()
    for kind, adapter in adapters().items():
        module = adapter.__module__.split(".")[2]
        assert (ROOT / "tests" / "fakes" / f"{module}.py").is_file(), f"{kind}: no fake"
        assert (ROOT / "tests" / "psa" / f"test_{module}.py").is_file(), f"{kind}: no tests"
        fake = importlib.import_module(f"tests.fakes.{module}")
        assert callable(getattr(fake, "kit", None)), f"{kind}: its fake has no contract kit()"
        assert adapter.Config.model_config.get("extra") == "forbid"


def test_every_classifier_has_tests() -> None:
    assert "openai" in classifiers()
    for kind, classifier in classifiers().items():
        module = classifier.__module__.rsplit(".", 1)[-1]
        assert (ROOT / "tests" / "classifiers" / f"test_{module}.py").is_file(), kind
        assert classifier.Config.model_config.get("extra") == "forbid"


def _package(tmp_path: Path, modules: dict[str, str]) -> types.ModuleType:
    name = f"plugs_{uuid.uuid4().hex}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module_name, source in modules.items():
        (package / f"{module_name}.py").write_text(source)
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
