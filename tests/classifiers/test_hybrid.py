"""The hybrid classifier: local first, the LLM (FakeOpenAI through the real SDK) when unsure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from psatriage.classifiers.base import ClassificationRequest
from psatriage.classifiers.hybrid import HybridClassifier, HybridConfig
from psatriage.domain import ModelCall, Ticket
from psatriage.errors import TransientError
from psatriage.local_engine.data import read_taxonomy
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "local"
LEAVES = read_taxonomy(FIXTURES / "taxonomy.toml").leaves


def _hybrid(llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, **values: Any) -> HybridClassifier:
    monkeypatch.setenv("HYBRID_TEST_KEY", DEFAULT_API_KEY)
    config = HybridConfig.model_validate(
        {
            "model": "zero-shot",
            "llm": {
                "model": "gpt-4o-mini",
                "api_key": "env:HYBRID_TEST_KEY",
                "base_url": f"{llm.url}/v1",
                "inner_retries": 0,
                "timeout_seconds": 5,
            },
            **values,
        }
    )
    return HybridClassifier("acme", config)


def _request(title: str, calls: list[ModelCall]) -> ClassificationRequest:
    return ClassificationRequest(
        tenant="acme",
        ticket=Ticket(id="9", title=title, description="", scope="1"),
        candidates=LEAVES,
        prompt=compile_prompt(DEFAULT_PROMPT),
        model="gpt-4o-mini",
        max_tokens=300,
        record=calls.append,
    )


def test_a_confident_local_answer_stands(llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[ModelCall] = []
    hybrid = _hybrid(llm, monkeypatch, min_local_confidence=0.01)
    result = hybrid.classify(_request("Printer on the third floor keeps jamming", calls))
    assert result.engine == "local" and result.key == "Hardware > Printer"
    assert "the LLM was not asked" in result.reasoning
    assert llm.calls == []
    assert [c.engine for c in calls] == ["local"]


def test_an_unsure_local_answer_goes_to_the_llm_with_the_top_candidates(
    llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[ModelCall] = []
    hybrid = _hybrid(llm, monkeypatch, min_local_confidence=1.0, llm_candidates=2)
    result = hybrid.classify(_request("I forgot my password", calls))
    assert result.engine == "openai" and result.key == "Accounts > Password"
    assert "asked the LLM with the top 2" in result.reasoning
    assert result.usage.tokens_in > 0
    schema = llm.calls[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["category"]["enum"] == ["1", "2"]  # short aliases of the two
    assert "Password" in llm.calls[0]["messages"][0]["content"]
    assert [c.engine for c in calls] == ["local", "openai"]


def test_an_unusable_llm_answer_leaves_the_local_choice(
    llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[ModelCall] = []
    hybrid = _hybrid(llm, monkeypatch, min_local_confidence=1.0)
    llm.script("garbage", "garbage")
    result = hybrid.classify(_request("VPN keeps dropping from home", calls))
    assert result.engine == "local" and result.key == "Network > VPN"
    assert "the local choice stands" in result.reasoning


def test_a_failed_llm_counts_in_latency_tokens_and_cost(
    llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 5: when the LLM failed, the latency was the local engine's alone."""
    calls: list[ModelCall] = []
    hybrid = _hybrid(llm, monkeypatch, min_local_confidence=1.0)
    llm.latency = 0.05
    llm.script("garbage", "garbage")
    result = hybrid.classify(_request("VPN keeps dropping from home", calls))

    assert result.engine == "local"
    spent = [c for c in calls if c.engine == "openai"]
    assert len(spent) == 2
    assert result.latency_ms >= sum(c.latency_ms for c in calls)
    assert result.usage.tokens_in == sum(c.tokens_in for c in spent) > 0
    assert result.usage.cost_usd == pytest.approx(sum(c.cost_usd for c in spent))
    assert result.usage.cost_usd > 0


def test_an_answered_llm_counts_both_stages(
    llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[ModelCall] = []
    hybrid = _hybrid(llm, monkeypatch, min_local_confidence=1.0)
    result = hybrid.classify(_request("Outlook crashes", calls))
    assert [c.engine for c in calls] == ["local", "openai"]
    assert result.latency_ms >= sum(c.latency_ms for c in calls)


def test_a_transient_llm_failure_is_raised(
    llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    hybrid = _hybrid(llm, monkeypatch, min_local_confidence=1.0)
    llm.script(("status", 503, {}))
    with pytest.raises(TransientError):
        hybrid.classify(_request("Outlook crashes", []))


def test_starts_zero_shot_and_checks_both_engines(
    llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    hybrid = _hybrid(llm, monkeypatch)
    assert hybrid.ranker().model is None
    assert "LLM: " in hybrid.check_connection()
    hybrid.close()


def test_config_needs_an_llm_table() -> None:
    with pytest.raises(ValidationError, match="llm"):
        HybridConfig.model_validate({"model": "zero-shot"})
