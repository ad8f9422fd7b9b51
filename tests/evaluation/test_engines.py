"""A tenant's classifier as a named engine (``backtest --engine``, ``eval --tenant``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from psatriage.classifiers.hybrid import HybridClassifier
from psatriage.classifiers.local import LocalClassifier
from psatriage.classifiers.openai_compat import OpenAICompatClassifier
from psatriage.config import Tenant, load_config
from psatriage.errors import ConfigError
from psatriage.evaluation.engines import classifier_for
from tests.harness import to_toml

LLM = {"kind": "openai", "model": "gpt-4o-mini", "api_key": "env:PSATRIAGE_TEST_ENGINE_KEY"}


def _tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, classifier: dict[str, Any]) -> Tenant:
    monkeypatch.setenv("PSATRIAGE_TEST_ENGINE_KEY", "sk-test")
    table = {
        "psa": "connectwise",
        "connection": {
            "site": "api-na.myconnectwise.net",
            "company_id": "acme",
            "public_key": "env:PSATRIAGE_TEST_ENGINE_KEY",
            "private_key": "env:PSATRIAGE_TEST_ENGINE_KEY",
            "client_id": "00000000-0000-0000-0000-000000000000",
        },
        "classifier": classifier,
    }
    path = tmp_path / "psatriage.toml"
    path.write_text(to_toml({"tenants": {"acme": table}}), encoding="utf-8")
    return load_config(path).tenant("acme")


def _without_kind(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k != "kind"}


def test_an_llm_tenant_as_each_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = _tenant(tmp_path, monkeypatch, LLM)

    local = classifier_for(tenant, "local")
    assert isinstance(local, LocalClassifier) and local.config.model == "auto"
    llm = classifier_for(tenant, "openai")
    assert isinstance(llm, OpenAICompatClassifier) and llm.config == tenant.classifier
    hybrid = classifier_for(tenant, "hybrid", local_model="zero-shot")
    assert isinstance(hybrid, HybridClassifier)
    assert hybrid.config.llm == tenant.classifier and hybrid.config.model == "zero-shot"
    for made in (local, llm, hybrid):
        made.close()


def test_a_hybrid_tenant_keeps_its_local_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hybrid_table = {"kind": "hybrid", "temperature": 0.3, "llm": _without_kind(LLM)}
    tenant = _tenant(tmp_path, monkeypatch, hybrid_table)
    local = classifier_for(tenant, "local")
    assert isinstance(local, LocalClassifier) and local.config.temperature == 0.3
    hybrid = classifier_for(tenant, "hybrid")
    assert isinstance(hybrid, HybridClassifier) and hybrid.config == tenant.classifier
    for made in (local, hybrid):
        made.close()


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("openai", "uses classifier 'local'; --engine openai needs an openai or hybrid"),
        ("hybrid", "uses classifier 'local'; --engine hybrid needs an openai or hybrid"),
        ("gpt", "unknown engine 'gpt': use one of local, openai, hybrid"),
    ],
)
def test_what_a_tenant_lacks_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, message: str
) -> None:
    tenant = _tenant(tmp_path, monkeypatch, {"kind": "local"})
    with pytest.raises(ConfigError, match=message):
        classifier_for(tenant, engine)
