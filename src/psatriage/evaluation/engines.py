"""A tenant's classifier as a named engine, for measuring one engine on the tenant's settings
(``psatriage eval --tenant``, ``psatriage backtest --engine``)."""

from __future__ import annotations

from typing import Any

from psatriage.classifiers.base import Classifier
from psatriage.classifiers.hybrid import HybridClassifier, HybridConfig
from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.classifiers.openai_compat import OpenAICompatClassifier, OpenAIConfig
from psatriage.config import Tenant
from psatriage.errors import ConfigError

ENGINES = ("local", "openai", "hybrid")


def classifier_for(
    tenant: Tenant, engine: str, *, local_model: str | None = None
) -> Classifier[Any]:
    """``local``: the tenant's local settings (its newest trained model, else zero-shot);
    ``openai``: its LLM; ``hybrid``: the local engine first and its LLM when unsure.
    ``local_model`` replaces the local engine's model (a file, ``auto`` or ``zero-shot``)."""
    configured = tenant.classifier
    llm: OpenAIConfig | None = None
    if isinstance(configured, HybridConfig):
        llm = configured.llm
    elif isinstance(configured, OpenAIConfig):
        llm = configured
    if engine == "local":
        local = LocalConfig()
        if isinstance(configured, LocalConfig):  # a hybrid's local half, too
            local = LocalConfig.model_validate(
                configured.model_dump(include=set(LocalConfig.model_fields))
            )
        if local_model is not None:
            local = local.model_copy(update={"model": local_model})
        return LocalClassifier(tenant.name, local)
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if llm is None:
        raise ConfigError(
            f"tenant {tenant.name!r} uses classifier {tenant.classifier_kind!r}; --engine "
            f"{engine} needs an openai or hybrid classifier"
        )
    if engine == "openai":
        return OpenAICompatClassifier(tenant.name, llm)
    hybrid = configured if isinstance(configured, HybridConfig) else HybridConfig(llm=llm)
    if local_model is not None:
        hybrid = hybrid.model_copy(update={"model": local_model})
    return HybridClassifier(tenant.name, hybrid)
