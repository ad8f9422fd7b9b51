"""Fixtures of the classifier tests: a FakeOpenAI per module, reset for each test, and a fresh
capability cache for each test (it is per process, and one fake answers differently from one test
to the next)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stamina
from pydantic import SecretStr

from psatriage.classifiers import _openai_capabilities
from psatriage.classifiers.openai_compat import OpenAICompatClassifier, OpenAIConfig
from psatriage.domain import ModelCall
from tests.classifiers.kit import Build
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI


@pytest.fixture(autouse=True)
def fresh_capabilities() -> Iterator[None]:
    _openai_capabilities.forget()
    yield
    _openai_capabilities.forget()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


@pytest.fixture
def build(fake: FakeOpenAI) -> Iterator[Build]:
    """A classifier talking to ``fake``; keyword arguments override the config."""
    made: list[OpenAICompatClassifier] = []

    def make(**overrides: Any) -> OpenAICompatClassifier:
        settings: dict[str, Any] = {
            "api_key": SecretStr(DEFAULT_API_KEY),
            "base_url": f"{fake.url}/v1",
            "timeout_seconds": 5.0,
            **overrides,
        }
        classifier = OpenAICompatClassifier("acme", OpenAIConfig(**settings))
        made.append(classifier)
        return classifier

    yield make
    for classifier in made:
        classifier.close()


@pytest.fixture
def rows() -> list[ModelCall]:
    return []


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """stamina's test mode: our attempt count, no waiting."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield
