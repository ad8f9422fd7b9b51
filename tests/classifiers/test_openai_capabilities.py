"""The capability probe: what a server accepts, found once per model and server, and used."""

from __future__ import annotations

import pytest

from psatriage.classifiers import _openai_capabilities
from psatriage.domain import ModelCall
from psatriage.errors import PermanentError, TransientError
from tests.classifiers.kit import SHOWN, Build, request
from tests.fakes.openai import FakeOpenAI


def test_openai_takes_the_best_shape_in_one_probe(build: Build, fake: FakeOpenAI) -> None:
    classifier = build()
    assert classifier.capabilities() == {
        "server": f"{fake.url}/v1",
        "model": "gpt-4o-mini",
        "status": "not probed yet: on the first ticket or config check",
    }
    classifier.classify(request([]))

    assert len(fake.probes) == 1
    assert fake.probes[0]["response_format"]["json_schema"]["name"] == "capability_probe"
    assert classifier.capabilities() == {
        "server": f"{fake.url}/v1",
        "model": "gpt-4o-mini",
        "structured_output": "json_schema",
        "logprobs": "yes",
    }


def test_llama_cpp_refusing_json_schema_with_a_500_gets_its_schema_in_json_object(
    build: Build, fake: FakeOpenAI
) -> None:
    """Finding 1: llama-cpp-python answers json_schema with HTTP 500; that is a refusal, not an
    outage. Finding 4: its log-probs come only with top_logprobs."""
    fake.like("llama.cpp")
    rows: list[ModelCall] = []
    classifier = build(provider="compatible", model="smollm2", api_key=None)
    result = classifier.classify(request(rows, model="smollm2"))

    assert result.key == "12/34/56"
    assert (result.confidence_source, result.confidence) == ("logprobs", pytest.approx(0.92))
    sent = fake.calls[0]
    assert sent["response_format"]["type"] == "json_object"
    schema = sent["response_format"]["schema"]
    assert schema["properties"]["category"]["enum"] == SHOWN
    assert schema["properties"]["reasoning"]["maxLength"] == 133  # fits max_tokens = 200
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 1)
    assert [r.error for r in rows] == [None] and len(fake.calls) == 1
    assert [p["response_format"]["type"] for p in fake.probes] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    found = classifier.capabilities()
    assert found is not None
    assert found["structured_output"] == "json_object_schema"
    assert found["logprobs"] == "yes, with top_logprobs"
    assert "json_schema refused (HTTP 500)" in found["notes"]


def test_a_server_ignoring_the_schema_steps_down_to_json_mode(
    build: Build, fake: FakeOpenAI
) -> None:
    fake.json_schema = "ignore"  # accepted, but the answer does not follow it
    classifier = build()
    assert classifier.classify(request([])).key == "12/34/56"

    found = classifier.capabilities()
    assert found is not None and found["structured_output"] == "json_object"
    assert "json_schema ignored" in found["notes"]
    assert "with a schema ignored" in found["notes"]
    assert fake.calls[0]["response_format"] == {"type": "json_object"}
    assert '"category" must be exactly one of these keys' in fake.calls[0]["messages"][0]["content"]


def test_lm_studio_keeps_json_schema_and_has_no_log_probs(build: Build, fake: FakeOpenAI) -> None:
    fake.like("lm-studio")
    classifier = build()
    result = classifier.classify(request([]))

    assert result.confidence_source == "self_reported"
    found = classifier.capabilities()
    assert found is not None and found["structured_output"] == "json_schema"
    assert found["logprobs"].startswith("no")
    assert "log-probs asked for, none returned" in found["notes"]
    assert "logprobs" not in fake.calls[0]


def test_a_server_without_any_json_mode_is_asked_in_the_prompt(
    build: Build, fake: FakeOpenAI
) -> None:
    fake.json_schema = fake.json_object = "refuse"
    classifier = build()
    assert classifier.classify(request([])).key == "12/34/56"

    assert "response_format" not in fake.calls[0]
    system = fake.calls[0]["messages"][0]["content"]
    assert "Reply with one JSON object" in system
    found = classifier.capabilities()
    assert found is not None and found["structured_output"].startswith("none")


def test_one_probe_per_model_and_server(build: Build, fake: FakeOpenAI) -> None:
    build().classify(request([]))
    build().classify(request([]))  # another tenant on the same server and model
    assert len(fake.probes) == 1
    build().classify(request([], model="gpt-4o"))
    assert len(fake.probes) == 2


def test_a_refusal_after_the_probe_steps_down_and_is_remembered(
    build: Build, fake: FakeOpenAI
) -> None:
    classifier = build()
    classifier.classify(request([]))
    fake.script("no_json_schema")  # the server changed under us
    classifier.classify(request([]))
    classifier.classify(request([]))

    kinds = [(c["response_format"]["type"], "schema" in c["response_format"]) for c in fake.calls]
    assert kinds == [
        ("json_schema", False),
        ("json_schema", False),
        ("json_object", True),
        ("json_object", True),
    ]
    found = classifier.capabilities()
    assert found is not None and found["structured_output"] == "json_object_schema"
    assert len(fake.probes) == 1


def test_a_probe_that_cannot_reach_the_server_is_not_cached(build: Build, fake: FakeOpenAI) -> None:
    fake.fail("POST", r"/chat/completions", 503)
    classifier = build(inner_retries=0)
    with pytest.raises(TransientError, match="HTTP 503"):
        classifier.classify(request([]))
    assert "status" in (classifier.capabilities() or {})
    classifier.classify(request([]))
    assert "structured_output" in (classifier.capabilities() or {})


def test_forget_probes_again(build: Build, fake: FakeOpenAI) -> None:
    build().classify(request([]))
    _openai_capabilities.forget()
    build().classify(request([]))
    assert len(fake.probes) == 2


def test_a_compatible_server_must_list_the_model_it_is_asked_for(
    build: Build, fake: FakeOpenAI
) -> None:
    """llama-cpp-python answers any model name with the model it has: a wrong name must not
    silently become another model."""
    fake.like("llama.cpp")
    classifier = build(provider="compatible", model="llama3.1:8b", api_key=None)
    with pytest.raises(
        PermanentError, match=r"does not serve model 'llama3\.1:8b': it lists 'smollm2'"
    ):
        classifier.classify(request([], model="llama3.1:8b"))
    assert fake.calls == [] and fake.probes == []
