"""What every PSA's test module of quirks shares: a running fake with its secrets in the environment
(``serving``), one HTTP client, ``make_adapter`` (the module's ``ADAPTER`` class on its ``fake``,
for tenant "acme", with connection overrides), ``adapter``, and ``in_parallel``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from psatriage.http import make_client
from tests.fakes.base import FakePSA, FakeServer
from tests.fakes.openai import FakeOpenAI
from tests.harness import to_toml

F = TypeVar("F", bound=FakeServer)


def serving(fake: F, monkeypatch: pytest.MonkeyPatch) -> Iterator[F]:
    """Start ``fake``, export the variables its ``connection_config()`` refers to, stop it after."""
    fake.start()
    for name, value in getattr(fake, "secret_env", dict)().items():
        monkeypatch.setenv(name, value)
    try:
        yield fake
    finally:  # stop() waits up to one poll interval; let that happen beside the next test
        threading.Thread(target=fake.stop, daemon=True).start()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client per module (building one loads the CA bundle, ~50 ms)."""
    with make_client(timeout=5.0, connect_timeout=2.0) as client:
        yield client


@pytest.fixture
def make_adapter(request: pytest.FixtureRequest, fake: FakePSA, http: httpx.Client) -> Any:
    cls = request.module.ADAPTER

    def build(client: httpx.Client | None = None, **overrides: Any) -> Any:
        config = cls.Config.model_validate(fake.connection_config(**overrides))
        return cls("acme", config, client or http)

    return build


@pytest.fixture
def adapter(make_adapter: Callable[[], Any]) -> Any:
    return make_adapter()


OPENAI_KEY_ENV = "PSATRIAGE_TEST_OPENAI_KEY"


def write_tenants(
    path: Path, name: str, psa: str, connection: dict[str, Any], llm: FakeOpenAI, **settings: Any
) -> Path:
    """A tenants file at ``path`` with tenant ``name`` on a PSA's fake (``connection``) and the
    fake OpenAI, whose key the tenant reads from ``OPENAI_KEY_ENV`` (set it to the fake's key);
    ``settings`` are more keys of the tenant (``trigger``, ``policy``...)."""
    tenant = {
        "psa": psa,
        **settings,
        "connection": connection,
        "classifier": {
            "api_key": f"env:{OPENAI_KEY_ENV}",
            "base_url": f"{llm.url}/v1",
            "inner_retries": 0,
        },
    }
    path.write_text(to_toml({"tenants": {name: tenant}}), encoding="utf-8")
    return path


def in_parallel(work: Callable[[Any], object], items: list[Any]) -> list[BaseException]:
    """Run ``work(item)`` for every item on its own thread at once; return what they raised."""
    errors: list[BaseException] = []

    def run(item: Any) -> None:
        try:
            work(item)
        except Exception as exc:  # noqa: BLE001 - collected for the caller to assert on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
