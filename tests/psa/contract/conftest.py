"""The contract suite's fixtures: every test runs once per registered PSA, and once per case of the
table it names (a parameter called like a field of ``tests.fakes.kit.Cases``).

``kit`` starts the PSA's fake (``tests/fakes/<name>``, the name of its package under
``psatriage/psa``) with its secrets in the environment; ``build`` makes an adapter on it with
connection overrides; ``adapter`` is one with the kit's own connection.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from psatriage.http import make_client
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter
from tests.fakes.base import FakeServer
from tests.fakes.kit import Cases, ContractKit

TABLES = ("parse", "malformed", "refused", "errors", "bad_config", "concurrency", "rotation")
Build = Callable[..., PSAAdapter[Any]]


def fake_module(kind: str) -> Any:
    """``tests.fakes.<name>``: a PSA's fake carries the name of its package."""
    return importlib.import_module(f"tests.fakes.{adapters()[kind].__module__.split('.')[2]}")


def kit_for(kind: str) -> ContractKit:
    """The started kit of a registered PSA (stop its fake when done)."""
    made: ContractKit = fake_module(kind).kit()
    return made


def cases_of(kind: str) -> Cases:
    cases: Cases = fake_module(kind).CASES
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize(metafunc, sorted(adapters()), cases_of)


def parametrize(metafunc: pytest.Metafunc, kinds: list[str], cases: Callable[[str], Cases]) -> None:
    """Run a test that takes ``kit`` once per PSA of ``kinds``, and once per row of the case
    table it takes (``cases(kind)``'s field of that name), if any."""
    if "kit" not in metafunc.fixturenames:
        return
    table = next((name for name in TABLES if name in metafunc.fixturenames), None)
    if table is None:
        metafunc.parametrize("kit", kinds, indirect=True)
        return
    rows = [(kind, case) for kind in kinds for case in getattr(cases(kind), table)]
    metafunc.parametrize(
        ("kit", table),
        rows,
        indirect=["kit"],
        ids=[f"{kind}-{case.id}" for kind, case in rows],
    )


@pytest.fixture
def kit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractKit]:
    made = kit_for(request.param)
    for key, value in made.env.items():
        monkeypatch.setenv(key, value)
    yield made
    stop_soon(made.fake)


def stop_soon(fake: FakeServer) -> None:
    """Stop ``fake`` beside the next test: ``stop()`` waits up to one poll interval."""
    threading.Thread(target=fake.stop, daemon=True).start()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client per module (building one loads the CA bundle, ~50 ms)."""
    with make_client(timeout=5.0, connect_timeout=2.0) as client:
        yield client


@pytest.fixture
def adapter_class(kit: ContractKit) -> type[PSAAdapter[Any]]:
    return adapters()[kit.psa]


@pytest.fixture
def build(kit: ContractKit, adapter_class: type[PSAAdapter[Any]], http: httpx.Client) -> Build:
    """An adapter for tenant "contract" on the kit's fake; keyword arguments override keys of
    its connection (None removes one), ``client`` replaces the HTTP client."""

    def make(client: httpx.Client | None = None, **overrides: Any) -> PSAAdapter[Any]:
        table = {k: v for k, v in {**kit.connection, **overrides}.items() if v is not None}
        config = adapter_class.Config.model_validate(table)
        return adapter_class("contract", config, client or http)

    return make


@pytest.fixture
def adapter(build: Build) -> PSAAdapter[Any]:
    return build()
