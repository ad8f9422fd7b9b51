"""Local first, the LLM when the local engine is unsure (``kind = "hybrid"``).

The local engine (``kind = "local"``, same keys) ranks every candidate. At or above
``min_local_confidence`` its choice stands and no LLM is called. Below it, the LLM configured
under ``[tenants.NAME.classifier.llm]`` (the keys of ``kind = "openai"``) chooses among the local
engine's ``llm_candidates`` best candidates only, which keeps the prompt short.

``Classification.engine`` says which engine decided (``local`` or ``openai``), and the reasoning
says why the LLM was or was not asked. Both engines record their own ``ModelCall`` rows, and the
classification's latency, tokens and cost cover both stages, failed LLM calls included. If the
LLM answers nothing usable (a refusal, an invalid answer), the local choice is returned with its
low confidence, so the policy suggests rather than writes; a transient or credential failure of
the LLM, or a server that cannot answer at all, is raised as usual (the job is retried, parked
or failed).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import Field

from psatriage.classifiers.base import ClassificationRequest, Classifier
from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.classifiers.openai_compat import OpenAICompatClassifier, OpenAIConfig
from psatriage.domain import Classification, ModelCall, Usage
from psatriage.errors import InvalidAnswer, PermanentError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from psatriage.local_engine.ranker import Ranker


class HybridConfig(LocalConfig):
    """The local engine's keys, plus when and how to ask the LLM."""

    llm: OpenAIConfig = Field(
        description="The LLM asked when the local engine is unsure: a table with the keys of "
        'kind = "openai" (provider, model, api_key, base_url...).',
    )
    min_local_confidence: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="At or above this local confidence the local choice stands; below it the "
        "LLM decides.",
    )
    llm_candidates: int = Field(
        default=10,
        ge=2,
        le=500,
        description="How many of the local engine's best candidates the LLM chooses from.",
    )

    @property
    def default_model(self) -> str:
        return self.llm.default_model

    @property
    def default_max_tokens(self) -> int:
        return self.llm.default_max_tokens


class HybridClassifier(Classifier[HybridConfig]):
    """The local engine, escalating unsure tickets to an LLM; see the module docstring."""

    kind = "hybrid"
    Config = HybridConfig

    def __init__(self, tenant: str, config: HybridConfig) -> None:
        super().__init__(tenant, config)
        local = LocalConfig.model_validate(config.model_dump(include=set(LocalConfig.model_fields)))
        self.local = LocalClassifier(tenant, local)
        self.llm = OpenAICompatClassifier(tenant, config.llm)

    def ranker(self) -> Ranker:
        return self.local.ranker()

    def use_database(self, sessions: sessionmaker[Session]) -> None:
        self.local.use_database(sessions)

    def warm_up(self) -> None:
        self.local.warm_up()
        self.llm.warm_up()

    def close(self) -> None:
        self.llm.close()

    def classify(self, request: ClassificationRequest) -> Classification:
        started = time.perf_counter()
        calls: list[ModelCall] = []
        keep = request.record

        def record(call: ModelCall) -> None:
            calls.append(call)
            keep(call)

        request = replace(request, record=record)
        local, ranked = self.local.decide(request)
        threshold = self.config.min_local_confidence
        if local.confidence >= threshold:
            return replace(
                local,
                reasoning=f"{local.reasoning} (≥ {threshold:.2f}: the LLM was not asked)",
            )
        shortlist = {s.category.key for s in ranked[: self.config.llm_candidates]}
        candidates = tuple(c for c in request.candidates if c.key in shortlist)
        try:
            answer = self.llm.classify(replace(request, candidates=candidates))
        except InvalidAnswer as exc:
            return replace(
                local,
                reasoning=f"{local.reasoning} The LLM gave no usable answer ({exc}); "
                "the local choice stands.",
                usage=_spent(calls),
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        if answer.key not in shortlist:  # the LLM classifier already guarantees it
            raise PermanentError(f"the LLM chose {answer.key!r}, which was not offered")
        return replace(
            answer,
            reasoning=f"{answer.reasoning} (local engine {local.confidence:.2f} < "
            f"{threshold:.2f}: asked the LLM with the top {len(candidates)})",
            usage=_spent(calls),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def capabilities(self) -> dict[str, str] | None:
        return self.llm.capabilities()

    def check_connection(self) -> str:
        return f"{self.local.check_connection()}; LLM: {self.llm.check_connection()}"


def _spent(calls: list[ModelCall]) -> Usage:
    """Tokens and cost of every call made for one ticket, failed ones included."""
    return Usage(
        sum(c.tokens_in for c in calls),
        sum(c.tokens_out for c in calls),
        sum(c.cost_usd for c in calls),
    )
