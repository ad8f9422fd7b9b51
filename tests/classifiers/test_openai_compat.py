"""The OpenAI-compatible classifier, driven through the real ``openai`` SDK against FakeOpenAI."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import stamina
from pydantic import SecretStr, ValidationError

from psatriage.classifiers.base import ClassificationRequest
from psatriage.classifiers.openai_compat import (
    DEFAULT_PRICES,
    OpenAICompatClassifier,
    OpenAIConfig,
)
from psatriage.domain import Category, Facet, FieldAnswer, FieldSpec, LevelValue, ModelCall
from psatriage.errors import (
    AuthFailed,
    InvalidAnswer,
    PermanentError,
    PsatriageError,
    TransientError,
)
from tests.classifiers.kit import CANDIDATES, PROMPT, SHOWN, Build, leaf, request
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI

# -- answers and confidence --------------------------------------------------------------------


@pytest.mark.parametrize(
    "candidates",
    [CANDIDATES, (leaf("7/8", "Drucker", "Störung"), leaf("7/9", "Netzwerk", "WLAN"))],
    ids=["ascii", "non-ascii labels"],
)
def test_valid_answer_takes_confidence_from_logprobs(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall], candidates: tuple[Category, ...]
) -> None:
    fake.chooser = lambda keys, text: keys[-1]
    result = build().classify(request(rows, candidates=candidates))

    assert result.key == candidates[-1].key
    assert result.confidence == pytest.approx(0.92)
    assert result.confidence_source == "logprobs"
    assert (result.engine, result.model) == ("openai", "gpt-4o-mini")
    assert result.reasoning and len(result.reasoning) <= 500
    assert result.usage.tokens_in > 0 and result.usage.tokens_out > 0
    assert fake.calls[0]["logprobs"] is True


def test_default_chooser_matches_the_label_in_the_ticket(
    build: Build, rows: list[ModelCall]
) -> None:
    assert build().classify(request(rows)).key == "12/34/56"


def test_probability_follows_the_servers_logprobs(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.category_probability = 0.35
    result = build().classify(request(rows))
    assert result.confidence == pytest.approx(0.35)


def test_without_logprobs_the_models_own_confidence_is_used(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script(("answer", "3", 1.7))  # the alias of 20/41
    result = build(logprobs=False).classify(request(rows))

    assert (result.key, result.confidence, result.confidence_source) == (
        "20/41",
        1.0,
        "self_reported",
    )
    assert "logprobs" not in fake.calls[0]


def test_a_server_refusing_logprobs_is_found_by_the_probe(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.logprobs = "refuse"
    classifier = build()
    first = classifier.classify(request(rows))
    second = classifier.classify(request(rows))

    assert first.confidence_source == second.confidence_source == "self_reported"
    assert first.confidence == pytest.approx(0.9)
    assert [call.get("logprobs") for call in fake.calls] == [None, None]
    assert [probe.get("logprobs") for probe in fake.probes] == [True, None]
    assert [r.error for r in rows] == [None, None]
    assert first.key == "12/34/56"
    assert classifier.capabilities() == {
        "server": f"{fake.url}/v1",
        "model": "gpt-4o-mini",
        "structured_output": "json_schema",
        "logprobs": "no (the model's own confidence is used)",
        "notes": "logprobs refused (HTTP 400)",
    }


def test_log_probs_that_need_top_logprobs_are_asked_for_with_it(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.logprobs = "with_top_logprobs"  # llama.cpp returns "logprobs": null without it
    result = build().classify(request(rows))

    assert (result.confidence_source, result.confidence) == ("logprobs", pytest.approx(0.92))
    assert fake.calls[0]["logprobs"] is True and fake.calls[0]["top_logprobs"] == 1


def test_scripted_no_logprobs_falls_back_once(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("no_logprobs")
    result = build().classify(request(rows))
    assert result.confidence_source == "self_reported"
    assert len(fake.calls) == 2


# -- the request -------------------------------------------------------------------------------


def test_request_asks_for_strict_json_schema_with_the_candidate_keys(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    build(temperature=0.2).classify(request(rows))
    body = fake.calls[0]

    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 200
    assert "max_completion_tokens" not in body
    assert body["temperature"] == 0.2
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Paper jam" in body["messages"][0]["content"]
    assert "<ticket>" in body["messages"][1]["content"]
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "ticket_category"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["properties"]["category"] == {"type": "string", "enum": SHOWN}
    assert schema["required"] == ["category", "confidence", "reasoning"]
    assert schema["additionalProperties"] is False


def test_refused_json_schema_falls_back_to_json_object_and_remembers(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("no_json_schema")
    classifier = build()
    first = classifier.classify(request(rows))
    second = classifier.classify(request(rows))

    assert first.key == second.key == "12/34/56"
    formats = [call["response_format"]["type"] for call in fake.calls]
    assert formats == ["json_schema", "json_object", "json_object"]
    system = fake.calls[1]["messages"][0]["content"]
    assert '"category" must be exactly one of these keys: ["1", "2", "3"]' in system
    assert "JSON" in system
    assert len(rows) == 3 and rows[0].error and "json_schema" in rows[0].error
    assert rows[0].chosen_key is None and rows[1].chosen_key == "12/34/56"


def test_json_object_mode_still_validates_the_key(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("invalid_key", "invalid_key")
    with pytest.raises(InvalidAnswer, match="not-a-category"):
        build(structured_output="json_object").classify(request(rows))
    assert {call["response_format"]["type"] for call in fake.calls} == {"json_object"}


def test_an_explicit_mode_the_server_refuses_names_the_setting(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.json_schema = "refuse"
    with pytest.raises(PermanentError, match='set structured_output = "auto"') as caught:
        build(structured_output="json_schema").classify(request(rows))
    assert not isinstance(caught.value, InvalidAnswer)
    assert f"{fake.url}/v1" in str(caught.value) and "HTTP 400" in str(caught.value)
    assert fake.calls == [] and len(fake.probes) == 1


def test_json_mode_shows_an_example_with_real_values_not_types(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    """Finding 7: the hint {"category": "string", ...} made a model answer "string"."""
    build(structured_output="json_object").classify(request(rows))
    system = fake.calls[0]["messages"][0]["content"]
    assert '"string"' not in system
    example = '{"category": "1", "confidence": 0.8, "reasoning": "One short sentence'
    assert example in system
    assert '"category" must be exactly one of these keys: ["1", "2", "3"]' in system
    assert "\n1 Paper jam\n" in system  # the prompt lists the same values


def test_an_explicit_mode_is_honoured(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    build(structured_output="json_object").classify(request(rows))
    assert [p["response_format"] for p in fake.probes] == [{"type": "json_object"}]
    assert fake.calls[0]["response_format"] == {"type": "json_object"}


def test_max_completion_tokens_when_the_model_refuses_max_tokens(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    message = (
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead."
    )
    error = {"message": message, "type": "invalid_request_error", "param": "max_tokens"}
    fake.fail("POST", r"/chat/completions", 400, body={"error": error})
    classifier = build()
    classifier.classify(request(rows))
    classifier.classify(request(rows))

    # the probe met the refusal (fake.probes holds what reached the chat handler)
    assert [("max_tokens" in c, c.get("max_completion_tokens")) for c in fake.calls] == [
        (False, 200),
        (False, 200),
    ]
    assert "max_tokens" not in fake.probes[0] and fake.probes[0]["max_completion_tokens"] == 40
    assert len(rows) == 2 and not any(r.error for r in rows)


# -- invalid answers ---------------------------------------------------------------------------


def test_invalid_key_gets_one_corrective_retry(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("invalid_key")
    result = build().classify(request(rows))

    assert result.key == "12/34/56"
    retry = fake.calls[1]["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert "not-a-category" in retry[2]["content"]
    assert "invalid" in retry[3]["content"]
    assert '["1", "2", "3"]' in retry[3]["content"]
    assert [r.chosen_key for r in rows] == [None, "12/34/56"]
    assert rows[0].error and "not one of the candidate keys" in rows[0].error
    assert result.usage.tokens_in == rows[0].tokens_in + rows[1].tokens_in
    assert result.usage.cost_usd == pytest.approx(rows[0].cost_usd + rows[1].cost_usd)


@pytest.mark.parametrize("invented", ["4", "0", "12/34/56"])
def test_an_answer_outside_the_offered_aliases_is_never_mapped_to_a_category(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall], invented: str
) -> None:
    """Only "1".."3" were offered: a number past them, or the real key behind one, is refused."""
    fake.script(("answer", invented, 0.9), ("answer", invented, 0.9))
    with pytest.raises(InvalidAnswer, match="not one of the candidate keys"):
        build(structured_output="json_object").classify(request(rows))
    assert [r.chosen_key for r in rows] == [None, None]


def test_the_alias_answered_is_mapped_back_to_its_key(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script(("answer", "2", 0.9))
    result = build().classify(request(rows))
    assert result.key == "12/35" and [r.chosen_key for r in rows] == ["12/35"]


def test_invalid_twice_raises_invalid_answer_with_two_rows(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("invalid_key", "invalid_key")
    with pytest.raises(InvalidAnswer, match="not-a-category"):
        build().classify(request(rows))
    assert len(fake.calls) == 2
    assert len(rows) == 2 and all(r.chosen_key is None and r.error for r in rows)


def test_garbage_then_valid(build: Build, fake: FakeOpenAI, rows: list[ModelCall]) -> None:
    fake.script("garbage")
    assert build().classify(request(rows)).key == "12/34/56"
    assert rows[0].error and "not a JSON object" in rows[0].error


def test_garbage_twice_quotes_what_came_back(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("garbage", "garbage")
    with pytest.raises(InvalidAnswer, match="about a printer") as caught:
        build().classify(request(rows))
    assert len(str(caught.value)) < 400


def test_refusal_is_an_invalid_answer_without_retry(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("refusal")
    with pytest.raises(InvalidAnswer, match="the model refused: I'm sorry"):
        build().classify(request(rows))
    assert len(fake.calls) == 1
    assert len(rows) == 1 and rows[0].error and "refused" in rows[0].error


def test_length_cut_off_retries_asking_for_brevity(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("length")
    assert build().classify(request(rows)).key == "12/34/56"
    assert "brief" in fake.calls[1]["messages"][-1]["content"]
    assert rows[0].error and "cut off" in rows[0].error


def test_length_twice_is_an_invalid_answer(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("length", "length")
    with pytest.raises(InvalidAnswer, match="cut off"):
        build().classify(request(rows))


# -- transient errors and inner retries --------------------------------------------------------


def test_short_retry_after_is_waited_out_inside_the_call(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script(("status", 429, {"retry-after-ms": "300"}))
    started = time.monotonic()
    result = build(max_inner_wait_seconds=1.0).classify(request(rows))

    assert result.key == "12/34/56"
    assert time.monotonic() - started >= 0.3
    assert len(fake.calls) == 2
    assert rows[0].error and rows[0].error.startswith("TransientError")
    assert rows[1].chosen_key == "12/34/56"


def test_long_retry_after_is_raised_for_the_job_to_reschedule(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script(("status", 429, {"Retry-After": "2"}))
    with pytest.raises(TransientError) as caught:
        build(max_inner_wait_seconds=1.0).classify(request(rows))
    assert caught.value.retry_after == 2.0
    assert len(fake.calls) == 1 and len(rows) == 1


@pytest.mark.usefixtures("no_backoff")
def test_server_errors_are_retried_then_raised(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script(("status", 500), ("status", 502), ("status", 503))
    with pytest.raises(TransientError, match="HTTP 503"):
        build(inner_retries=2).classify(request(rows))
    assert len(fake.calls) == 3
    assert [r.error is not None for r in rows] == [True, True, True]


@pytest.mark.usefixtures("no_backoff")
def test_a_server_error_then_success(build: Build, fake: FakeOpenAI, rows: list[ModelCall]) -> None:
    fake.script(("status", 500))
    assert build().classify(request(rows)).key == "12/34/56"
    assert len(rows) == 2


def test_timeout_is_transient(build: Build, fake: FakeOpenAI, rows: list[ModelCall]) -> None:
    fake.script(("delay", 1.0))
    with pytest.raises(TransientError, match="in time"):
        build(timeout_seconds=0.2, inner_retries=0).classify(request(rows))
    assert len(rows) == 1 and rows[0].latency_ms >= 200


def test_unknown_model_is_permanent(build: Build, rows: list[ModelCall]) -> None:
    with pytest.raises(PermanentError, match="gpt-9") as caught:
        build().classify(request(rows, model="gpt-9"))
    assert not isinstance(caught.value, InvalidAnswer)


# -- credentials and vendors -------------------------------------------------------------------


def test_wrong_api_key_is_auth_failed_and_never_shown(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    secret = "sk-wrong-but-still-secret-123"
    classifier = build(api_key=SecretStr(secret))
    with pytest.raises(AuthFailed) as caught:
        classifier.classify(request(rows))

    assert fake.requests[0].headers["authorization"] == f"Bearer {secret}"
    shown = [str(caught.value), repr(caught.value), str(caught.value.__cause__)]
    shown += [repr(classifier), repr(classifier.config), str(rows)]
    assert not any(secret in text for text in shown)
    assert "Incorrect API key" in str(caught.value)
    with pytest.raises(AuthFailed) as again:
        classifier.check_connection()
    assert secret not in str(again.value)


def test_azure_deployment_path(fake: FakeOpenAI, build: Build, rows: list[ModelCall]) -> None:
    classifier = build(
        provider="azure",
        base_url=None,
        azure_endpoint=fake.url,
        azure_deployment="triage-mini",
        api_version="2024-10-21",
    )
    result = classifier.classify(request(rows))

    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/triage-mini/chat/completions"
    assert sent.arg("api-version") == "2024-10-21"
    assert sent.headers["api-key"] == DEFAULT_API_KEY
    assert "authorization" not in sent.headers
    assert result.model == rows[0].model == "gpt-4o-mini"
    assert "azure: gpt-4o-mini answered" in classifier.check_connection()


def test_azure_v1_path(fake: FakeOpenAI, build: Build, rows: list[ModelCall]) -> None:
    classifier = build(provider="azure", base_url=None, azure_endpoint=f"{fake.url}/")
    assert classifier.classify(request(rows)).key == "12/34/56"

    sent = fake.requests[-1]
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"


def test_compatible_server_without_a_key(
    monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-must-not-travel")
    fake.api_key = None
    config = OpenAIConfig(provider="compatible", base_url=f"{fake.url}/v1", model="llama3.1:8b")
    classifier = OpenAICompatClassifier("acme", config)
    result = classifier.classify(request(rows, model="llama3.1:8b"))
    classifier.close()

    assert result.key == "12/34/56"
    assert "sk-env-must-not-travel" not in fake.requests[0].headers.get("authorization", "")
    assert result.usage.cost_usd == 0.0  # no price for a local model
    assert rows[0].model == "llama3.1:8b"


# -- the audit trail and cost ------------------------------------------------------------------


def test_one_row_per_http_call(build: Build, fake: FakeOpenAI, rows: list[ModelCall]) -> None:
    with stamina.set_testing(True, attempts=100, cap=True):
        fake.script(("status", 500), "invalid_key")
        result = build().classify(request(rows))

    assert len(rows) == len(fake.calls) == 3
    assert [r.chosen_key for r in rows] == [None, None, "12/34/56"]
    assert rows[-1].confidence == pytest.approx(0.92)
    for row in rows:
        assert (row.tenant, row.ticket_id, row.event_id) == ("acme", "4711", 7)
        assert (row.engine, row.model) == ("openai", "gpt-4o-mini")
        assert (row.template_hash, row.taxonomy_hash) == (PROMPT.hash, "tax123")
        assert row.latency_ms > 0
    assert rows[0].tokens_in == 0 and rows[0].error
    assert rows[2].tokens_in > 0 and rows[2].tokens_out > 0 and rows[2].error is None
    assert result.usage.tokens_out == rows[1].tokens_out + rows[2].tokens_out
    assert result.latency_ms >= sum(r.latency_ms for r in rows) * 0.9


def test_cost_from_the_price_table(build: Build, rows: list[ModelCall]) -> None:
    result = build().classify(request(rows))
    price = DEFAULT_PRICES["gpt-4o-mini"]
    expected = (rows[0].tokens_in * price.input + rows[0].tokens_out * price.output) / 1e6
    assert rows[0].cost_usd == pytest.approx(expected) and expected > 0
    assert result.usage.cost_usd == pytest.approx(expected)


def test_prices_can_be_overridden_and_snapshots_take_their_familys(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.models.append("gpt-4o-mini-2024-07-18")
    classifier = build(prices={"gpt-4o-mini": {"input": 1000, "output": 2000}})
    classifier.classify(request(rows, model="gpt-4o-mini-2024-07-18"))
    row = rows[0]
    assert row.cost_usd == pytest.approx((row.tokens_in * 1000 + row.tokens_out * 2000) / 1e6)


# -- configuration, connection check, secrets --------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "needs api_key"),
        ({"provider": "azure", "api_key": "env:PSATRIAGE_TEST_KEY"}, "needs azure_endpoint"),
        ({"provider": "compatible"}, "needs base_url"),
        ({"api_key": "env:PSATRIAGE_TEST_KEY", "api_version": "2024-10-21"}, "only apply"),
        ({"api_key": "sk-plain-text"}, "never written in the file"),
        ({"api_key": "env:PSATRIAGE_TEST_KEY", "temprature": 0.5}, "temprature"),
    ],
)
def test_config_errors_say_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], message: str
) -> None:
    monkeypatch.setenv("PSATRIAGE_TEST_KEY", "sk-from-env")
    with pytest.raises(ValidationError, match=message) as caught:
        OpenAIConfig(**settings)
    assert "sk-from-env" not in str(caught.value)


def test_secret_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_TEST_KEY", "sk-from-env-0000")
    config = OpenAIConfig(api_key="env:PSATRIAGE_TEST_KEY")
    classifier = OpenAICompatClassifier("acme", config)
    assert config.api_key is not None and config.api_key.get_secret_value() == "sk-from-env-0000"
    for text in (repr(config), str(config), repr(classifier), str(config.model_dump())):
        assert "sk-from-env-0000" not in text
    classifier.close()


def test_check_connection(build: Build) -> None:
    classifier = build()
    assert classifier.check_connection().startswith("openai: gpt-4o-mini answered")


@pytest.mark.usefixtures("no_backoff")
def test_check_connection_maps_errors(fake: FakeOpenAI, build: Build) -> None:
    fake.fail("POST", r"/chat/completions", 503, times=3)
    with pytest.raises(TransientError, match="HTTP 503"):
        build().check_connection()


@pytest.mark.usefixtures("no_backoff")
@pytest.mark.parametrize(
    ("status", "expected", "calls"),
    [
        (400, PermanentError, 1),
        (403, AuthFailed, 1),
        (404, PermanentError, 1),
        (409, TransientError, 3),
        (422, PermanentError, 1),
    ],
)
def test_status_codes_map_to_the_error_tree(
    build: Build,
    fake: FakeOpenAI,
    rows: list[ModelCall],
    status: int,
    expected: type[PsatriageError],
    calls: int,
) -> None:
    fake.script(*[("status", status)] * calls)
    with pytest.raises(expected) as caught:
        build().classify(request(rows))
    assert not isinstance(caught.value, InvalidAnswer)
    assert f"HTTP {status}" in str(caught.value)
    assert len(fake.calls) == len(rows) == calls


# -- facets ------------------------------------------------------------------------------------

QUEUE = Facet(
    "queueID", "Queue", (LevelValue("queueID", "5", "Tier 1"), LevelValue("queueID", "6", "Tier 2"))
)


def _with_facets(rows: list[ModelCall]) -> ClassificationRequest:
    return dataclasses.replace(request(rows), facets=(QUEUE,))


def test_facets_are_enums_in_the_schema_and_listed_in_the_prompt(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.facet_answers = {"queueID": "6"}
    result = build().classify(_with_facets(rows))
    assert result.key == "12/34/56" and result.facets == {"queueID": "6"}
    schema = fake.calls[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["queueID"] == {"type": "string", "enum": ["5", "6"]}
    assert schema["required"] == ["category", "queueID", "confidence", "reasoning"]
    system = fake.calls[0]["messages"][0]["content"]
    assert 'Queue (answer field "queueID"' in system and "6: Tier 2" in system


def test_an_invalid_facet_value_gets_the_corrective_retry(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.facet_answers = {"queueID": "99"}
    with pytest.raises(InvalidAnswer, match="queueID"):
        build().classify(_with_facets(rows))
    assert len(fake.calls) == 2
    assert '"queueID" must be exactly one of these values: ["5", "6"]' in str(
        fake.calls[1]["messages"][-1]["content"]
    )


def test_facets_in_json_mode(build: Build, fake: FakeOpenAI, rows: list[ModelCall]) -> None:
    result = build(structured_output="json_object").classify(_with_facets(rows))
    assert result.facets == {"queueID": "5"}
    assert (
        '"queueID" must be exactly one of these values' in fake.calls[0]["messages"][0]["content"]
    )


# -- ticket fields -----------------------------------------------------------------------------

PRIORITY = FieldSpec(
    "priority",
    "Priority",
    "choice",
    "The ticket's priority.",
    (LevelValue("priority", "1", "High"), LevelValue("priority", "3", "Low")),
)
FIELDS = (
    PRIORITY,
    FieldSpec("frustrated", "Frustrated", "flag", "Whether the requester is frustrated."),
    FieldSpec("summary", "Summary", "text", "One sentence."),
)


def _with_fields(rows: list[ModelCall]) -> ClassificationRequest:
    return dataclasses.replace(request(rows), fields=FIELDS)


def test_fields_share_the_schema_and_each_choice_gets_its_log_prob_confidence(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.facet_answers = {"priority": "3", "frustrated": True, "summary": "Paper jam."}
    fake.field_probabilities = {"priority": 0.7}
    result = build().classify(_with_fields(rows))
    schema = fake.calls[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["priority"] == {"type": "string", "enum": ["1", "3"]}
    assert schema["properties"]["frustrated"] == {"type": "boolean"}
    assert schema["properties"]["summary"] == {"type": "string"}
    assert schema["required"] == [
        "category",
        "priority",
        "frustrated",
        "summary",
        "confidence",
        "reasoning",
    ]
    system = fake.calls[0]["messages"][0]["content"]
    assert 'Priority (answer field "priority"): The ticket\'s priority.' in system
    assert result.key == "12/34/56" and result.confidence == pytest.approx(0.92)
    assert result.fields["priority"].value == "3"
    assert result.fields["priority"].confidence == pytest.approx(0.7)
    assert result.fields["frustrated"] == FieldAnswer("true")
    assert result.fields["summary"] == FieldAnswer("Paper jam.")
    assert len(fake.calls) == 1


def test_a_field_outside_its_values_is_dropped_and_the_category_stands(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.facet_answers = {"priority": "99", "frustrated": "perhaps"}
    result = build(structured_output="json_object").classify(_with_fields(rows))
    assert result.key == "12/34/56"
    assert set(result.fields) == {"summary"}  # no corrective retry for a field
    assert len(fake.calls) == 1
    system = fake.calls[0]["messages"][0]["content"]
    assert '"priority" must be exactly one of these values: ["1", "3"]' in system
    assert '"frustrated" is true or false.' in system
