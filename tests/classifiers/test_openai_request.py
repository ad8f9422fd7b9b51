"""Reading a Chat Completions answer: validated when it is whole, read leniently when a server
leaves something out, handed back as text when it is not a completion at all."""

from __future__ import annotations

import json
from typing import Any

from openai.types.chat import ChatCompletion
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

from psatriage.classifiers._openai_request import completion_of


def _answer(**overrides: Any) -> dict[str, Any]:
    token = {"token": "{", "bytes": [123], "logprob": -0.01, "top_logprobs": []}
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": '{"category": "1"}'},
                "logprobs": {"content": [token]},
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129},
    }
    body.update(overrides)
    return body


def test_a_whole_answer_is_a_completion_with_typed_log_probs() -> None:
    completion = completion_of(json.dumps(_answer()).encode())
    assert isinstance(completion, ChatCompletion)
    choice = completion.choices[0]
    assert choice.message.content == '{"category": "1"}'
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert isinstance(choice.logprobs.content[0], ChatCompletionTokenLogprob)
    assert choice.logprobs.content[0].bytes == [123]
    assert completion.usage is not None and completion.usage.prompt_tokens == 120


def test_an_answer_missing_required_parts_is_still_read_as_before() -> None:
    """A lenient server's answer without ``id``, ``created`` or ``object`` (and a choice
    without ``index``) does not validate; it is read as the SDK always read answers."""
    body = _answer()
    for key in ("id", "created", "object"):
        del body[key]
    del body["choices"][0]["index"]
    completion = completion_of(json.dumps(body).encode())
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == '{"category": "1"}'
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"


def test_a_body_that_is_not_a_json_object_comes_back_as_text() -> None:
    assert completion_of(b"<html>Not Found</html>") == "<html>Not Found</html>"
    assert completion_of(b'["a", "list"]') == '["a", "list"]'
    assert completion_of(b"\xff\xfe") == "\ufffd\ufffd"
