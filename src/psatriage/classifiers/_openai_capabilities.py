"""What an OpenAI-compatible server accepts, found by a short probe and kept per model and server.

Servers that speak the Chat Completions format differ in what they do with the optional
parameters: OpenAI and Azure take strict ``json_schema`` output and return log-probs; llama.cpp's
llama-cpp-python server refuses ``json_schema`` (with an HTTP 500), enforces a ``schema`` given
with ``json_object`` instead, and returns log-probs only when ``top_logprobs`` is set; others
refuse log-probs or ``max_tokens``. ``probe`` sends tiny requests in the best shape first and
steps down one refused or ignored feature at a time:

1. a refusal that names the feature (``response_format``, ``json_schema``, ``logprobs``...),
   whatever its status code, drops it;
2. an accepted schema whose answer does not follow it (the server ignored it) drops it too;
3. log-probs asked for but not returned are asked for again with ``top_logprobs``, then dropped.

The result is cached per (provider, server, deployment, model) for the life of the process and
shown by ``psatriage config check`` and ``/readyz``. A compatible server that lists its models
must list the one asked for (``check_served``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from psatriage.classifiers._openai_request import Shape
from psatriage.classifiers.base import clip
from psatriage.errors import PermanentError

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

PROBE_MARKER: Final = "psatriage capability probe"
PROBE_VALUE: Final = "psatriage-probe"
PROBE_SCHEMA: Final[dict[str, object]] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": [PROBE_VALUE]}},
    "required": ["answer"],
    "additionalProperties": False,
}
PROBE_MESSAGES: Final[list[ChatCompletionMessageParam]] = [
    {"role": "system", "content": f"{PROBE_MARKER}. Reply with a JSON object."},
    {"role": "user", "content": 'Reply with a JSON object that has one field, "answer".'},
]
_MAX_PROBES: Final = 8
_NAMES: Final = {
    "json_schema": "response_format json_schema",
    "json_object_schema": "response_format json_object with a schema",
    "json_object": "response_format json_object",
}
_STRUCTURED = re.compile(r"response_format|json_schema|json_object")
_NOT_A_REFUSAL: Final = frozenset({401, 403, 404, 408, 409, 429})


class Refused(Exception):
    """The server refused an optional part of the request; ``feature`` names it."""

    def __init__(self, feature: str, status: int, message: str) -> None:
        super().__init__(f"{feature} refused (HTTP {status}): {message}")
        self.feature = feature
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The best request shape a server accepts, and what the probe saw on the way."""

    shape: Shape
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        """For ``config check`` and ``/readyz``: each capability in words."""
        structured = self.shape.structured
        logprobs = {
            "plain": "yes",
            "top": "yes, with top_logprobs",
            None: "no (the model's own confidence is used)",
        }[self.shape.logprobs]
        described = {
            "structured_output": structured or "none (the prompt asks for JSON)",
            "logprobs": logprobs,
        }
        if self.shape.max_tokens_param != "max_tokens":
            described["token_limit"] = self.shape.max_tokens_param
        if not self.shape.temperature:
            described["temperature"] = "the server's default"
        if self.notes:
            described["notes"] = "; ".join(self.notes)
        return described

    def without(self, refused: Refused) -> Capabilities:
        """After a refusal seen outside the probe (a server changed under us)."""
        note = f"{_feature_name(refused.feature, self.shape)} refused (HTTP {refused.status})"
        return Capabilities(self.shape.without(refused.feature), (*self.notes, note))


def refused_feature(exc: openai.OpenAIError, shape: Shape) -> Refused | None:
    import openai

    """The optional part of ``shape`` that an error names, whatever its status code."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code in _NOT_A_REFUSAL:
        return None
    message = server_message(exc)
    text = f"{getattr(exc, 'param', None) or ''} {message}".lower()
    feature = None
    if shape.structured is not None and _STRUCTURED.search(text):
        feature = "structured"
    elif shape.logprobs is not None and "logprobs" in text:
        feature = "logprobs"
    elif (
        shape.max_tokens_param == "max_tokens"
        and "max_tokens" in text
        and "max_completion_tokens" in text
    ):
        feature = "max_tokens"
    elif shape.temperature and "temperature" in text:
        feature = "temperature"
    return Refused(feature, exc.status_code, message) if feature else None


def server_message(exc: openai.APIError) -> str:
    """The server's own words: ``error.message`` of the body, else the SDK's message."""
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else None
    return clip(message if isinstance(message, str) and message else exc.message)


def probe(send: Callable[[Shape], ChatCompletion], wanted: Shape, *, auto: bool) -> Capabilities:
    """Step down from ``wanted`` until the server accepts and follows the request (see the
    module docstring). ``auto=False``: the structured mode is the tenant's choice and a refusal
    of it is raised as ``Refused``. Other errors of ``send`` propagate."""
    shape, notes = wanted, []
    structured_known = False
    logprobs_known = wanted.logprobs is None
    for _ in range(_MAX_PROBES):
        try:
            completion = send(shape)
        except Refused as refused:
            if refused.feature == "structured" and not auto:
                raise
            notes.append(f"{_feature_name(refused.feature, shape)} refused (HTTP {refused.status})")
            logprobs_known |= refused.feature == "logprobs"
            shape = shape.without(refused.feature)
            continue
        choice = completion.choices[0]
        if not structured_known:
            if _follows(choice.message.content, choice.finish_reason, shape) or not auto:
                structured_known = True
            else:
                notes.append(f"{_feature_name('structured', shape)} ignored")
                shape = shape.without("structured")
                continue
        if not logprobs_known:
            returned = choice.logprobs is not None and bool(choice.logprobs.content)
            if returned:
                logprobs_known = True
            elif shape.logprobs == "plain":
                notes.append("log-probs returned only with top_logprobs")
                shape = replace(shape, logprobs="top")
                continue
            else:
                notes.append("log-probs asked for, none returned")
                shape, logprobs_known = shape.without("logprobs"), True
        if structured_known and logprobs_known:
            break
    return Capabilities(shape, tuple(notes))


def check_served(client: openai.OpenAI, model: str, server: str) -> None:
    """A compatible server that lists its models must list this one: some (llama.cpp's
    llama-cpp-python server) answer any model name with the model they have."""
    import openai

    try:
        served = [m.id for m in client.models.list()]
    except openai.OpenAIError:
        return  # no model list: the chat call says whether it knows the model
    if served and not {model, f"{model}:latest"} & set(served):
        listed = ", ".join(repr(name) for name in served[:10])
        raise PermanentError(
            f"the model server at {server} does not serve model {model!r}: it lists {listed}; "
            "set model to one of them"
        )


def _follows(content: str | None, finish_reason: str, shape: Shape) -> bool:
    """Whether an answer obeys the shape's structured mode (a cut-off answer cannot tell)."""
    if shape.structured is None or finish_reason == "length" or not content:
        return True
    try:
        data = json.loads(content)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    return shape.structured == "json_object" or data.get("answer") == PROBE_VALUE


def _feature_name(feature: str, shape: Shape) -> str:
    if feature == "structured":
        return _NAMES.get(shape.structured or "", "response_format")
    return {"logprobs": "logprobs", "max_tokens": "max_tokens", "temperature": "temperature"}[
        feature
    ]


# -- the cache ---------------------------------------------------------------------------------

_found: dict[Hashable, Capabilities] = {}
_probing: dict[Hashable, threading.Lock] = {}
_guard = threading.Lock()


def detect(key: Hashable, run: Callable[[], Capabilities]) -> Capabilities:
    """The cached capabilities of ``key``, probing once (other threads wait for that probe)."""
    with _guard:
        known = _found.get(key)
        if known is not None:
            return known
        lock = _probing.setdefault(key, threading.Lock())
    with lock:
        with _guard:
            known = _found.get(key)
        if known is None:
            known = run()
            remember(key, known)
        return known


def cached(key: Hashable) -> Capabilities | None:
    with _guard:
        return _found.get(key)


def remember(key: Hashable, capabilities: Capabilities) -> None:
    with _guard:
        _found[key] = capabilities


def forget() -> None:
    """Probe every server again on next use (tests; a server upgraded in place)."""
    with _guard:
        _found.clear()
