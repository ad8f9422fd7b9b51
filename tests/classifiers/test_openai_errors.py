"""Bad answers from a server: transient or permanent by what they say, the server always named."""

from __future__ import annotations

import socket

import pytest

from psatriage.classifiers.openai_compat import OpenAICompatClassifier, OpenAIConfig
from psatriage.domain import ModelCall
from psatriage.errors import InvalidAnswer, PermanentError, PsatriageError, TransientError
from tests.classifiers.kit import Build, request
from tests.fakes.openai import FakeOpenAI


@pytest.mark.parametrize(
    ("behaviour", "expected", "words"),
    [
        ("html", PermanentError, "not a chat completion"),
        ("no_choices", TransientError, "without any choice"),
        (
            ("status", 500, {}, "1 validation error for CreateChatCompletionRequest messages"),
            PermanentError,
            "cannot handle the request (HTTP 500)",
        ),
        (("status", 500, {}, "llama_decode returned -3"), TransientError, "HTTP 500"),
        (
            ("status", 400, {}, "Requested tokens (5000) exceed context window of 4096"),
            PermanentError,
            "does not fit the context",
        ),
        (
            ("status", 404, {}, 'model "llama9" not found, try pulling it first'),
            PermanentError,
            "does not serve model 'gpt-4o-mini'",
        ),
    ],
    ids=["200 html", "no choices", "500 validation", "500 other", "context", "no such model"],
)
def test_bad_answers_are_classified_by_what_they_say(
    build: Build,
    fake: FakeOpenAI,
    behaviour: str | tuple[object, ...],
    expected: type[PsatriageError],
    words: str,
) -> None:
    build().classify(request([]))  # probed while the server was well
    fake.script(behaviour)
    rows: list[ModelCall] = []
    with pytest.raises(expected) as caught:
        build(inner_retries=0).classify(request(rows))

    message = str(caught.value)
    assert words in message
    assert f"{fake.url}/v1" in message  # the server is named
    assert not isinstance(caught.value, InvalidAnswer)  # never the hybrid's local fallback
    assert len(rows) == 1 and rows[0].error and rows[0].latency_ms > 0


def test_a_truncated_answer_twice_names_the_setting(
    build: Build, fake: FakeOpenAI, rows: list[ModelCall]
) -> None:
    fake.script("length", "length")
    with pytest.raises(InvalidAnswer, match=r"raise max_tokens \(now 200\)") as caught:
        build().classify(request(rows))
    assert f"gpt-4o-mini at {fake.url}/v1" in str(caught.value)
    assert len(rows) == 2 and all(r.tokens_out > 0 for r in rows)


def test_an_unreachable_server_is_named_with_its_base_url() -> None:
    """Finding 6: "cannot reach the model server" said nowhere which one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    config = OpenAIConfig(
        provider="compatible",
        base_url=f"http://user:secret@127.0.0.1:{port}/v1",
        inner_retries=0,
        timeout_seconds=5,
    )
    classifier = OpenAICompatClassifier("acme", config)
    with pytest.raises(TransientError) as caught:
        classifier.classify(request([]))
    classifier.close()
    message = str(caught.value)
    assert f"cannot reach the model server at http://127.0.0.1:{port}/v1" in message
    assert "secret" not in message
