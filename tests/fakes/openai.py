"""A fake of the OpenAI Chat Completions API (and of Azure OpenAI's paths), for the real SDK.

Routes::

    POST /v1/chat/completions                                  OpenAI and compatible servers
    POST /openai/v1/chat/completions                           Azure, v1 API
    POST /openai/deployments/{deployment}/chat/completions     Azure (needs ?api-version=, api-key)
    GET  /v1/models, /v1/models/{id}                           (also under /openai)

Auth is ``Authorization: Bearer <api_key>`` (or the ``api-key`` header for Azure); with
``api_key=None`` the fake is a compatible server without auth. Answers pick a candidate key with
``chooser(keys, ticket_text)`` (default: the first key whose leaf label words all appear in the
ticket, else the first key) and carry token log-probs when asked for them.

What the server does with the optional parameters is set per server (``like`` sets a real
server's whole set)::

    json_schema     "follow" | "ignore" (accepted, answer does not follow it) | "refuse"
    json_object     "follow" | "follow_schema" (also enforces a "schema" given with it, as
                    llama.cpp does) | "refuse"
    logprobs        "always" | "with_top_logprobs" (none unless top_logprobs >= 1, as
                    llama.cpp) | "never" (accepted, none returned) | "refuse"
    refusal_status  the HTTP status of a refusal (llama-cpp-python answers 500)
    answer_model    the model named in answers (None: the one asked for)

The classifier's capability probes (system message starting with ``PROBE_MARKER``) are answered
by these rules too but kept apart, in ``probes``: ``calls`` and the script see ticket calls only.

``script(*behaviours)`` queues what the next chat calls do; after the queue, the default answer::

    "invalid_key"          a key that is not a candidate
    "garbage"              content that is not JSON
    "refusal"              message.refusal set, content null
    "length"               finish_reason "length", content cut in half
    "no_json_schema"       400: response_format json_schema is not supported (vLLM, old servers)
    "no_logprobs"          400: logprobs are not supported
    "html"                 200 with an HTML page (a wrong base_url behind a web server)
    "no_choices"           200 with an empty choice list
    ("status", 429, {"Retry-After": "2"}[, message])     any status, optional headers and message
    ("delay", seconds)     sleep, then the default answer
    ("answer", key, confidence[, reasoning])
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from tests.fakes.base import FakeServer, Request, Response

Chooser = Callable[[list[str], str], str]
Behaviour = str | tuple[Any, ...]

DEFAULT_API_KEY = "sk-fake-0123456789abcdef"
DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "llama3.1:8b",
)
_SIMPLE = frozenset(
    {
        "invalid_key",
        "garbage",
        "refusal",
        "length",
        "no_json_schema",
        "no_logprobs",
        "html",
        "no_choices",
    }
)
PROBE_MARKER = "psatriage capability probe"
# llama-cpp-python's server: FastAPI's validation error of response_format.type, answered as 500
LLAMA_CPP_JSON_SCHEMA_REFUSAL = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  POST /v1/chat/completions"
)
_KEY_LIST = re.compile(r"one of these keys: (\[[^\n]*\])")
_VALUE_LIST = re.compile(r'"(\w+)" must be exactly one of these values: (\[[^\n]*\])')
_FLAG = re.compile(r'"(\w+)" is true or false\.')
_TEXT = re.compile(r'"(\w+)" is one short sentence\.')
_ANSWER_KEYS = frozenset({"category", "confidence", "reasoning"})
_TOKEN = re.compile(r"\w{1,4}|\s+|[^\w\s]")
_WORD = re.compile(r"[a-z0-9]{3,}")


def _error(
    status: int, message: str, type_: str, code: str | None = None, **extra: Any
) -> Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code, **extra}}
    return Response(status, body)


class FakeOpenAI(FakeServer):
    """The Chat Completions API on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        models: Iterable[str] = DEFAULT_MODELS,
        chooser: Chooser | None = None,
        category_probability: float = 0.92,
        latency: float = 0.0,
    ) -> None:
        super().__init__()
        self._defaults = (api_key, tuple(models), chooser, category_probability, latency)
        self._script: deque[Behaviour] = deque()
        self._script_lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []  # parsed JSON bodies of the chat calls
        self.reset()
        self.route("POST", r"/v1/chat/completions", self._chat)
        self.route("POST", r"/openai/v1/chat/completions", self._chat)
        self.route(
            "POST", r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions", self._chat
        )
        self.route("GET", r"(?:/openai)?/v1/models", self._list_models)
        self.route("GET", r"(?:/openai)?/v1/models/(?P<model>.+)", self._get_model)

    def reset(self) -> None:
        """Back to the constructor's settings, with empty logs: one server can serve many tests."""
        api_key, models, chooser, category_probability, latency = self._defaults
        self.api_key = api_key
        self.models = list(models)  # empty: any model is served
        self.chooser = chooser
        self.category_probability = category_probability
        self.latency = latency  # seconds added to every chat answer
        self.json_schema = "follow"
        self.json_object = "follow"
        self.logprobs = "always"
        self.refusal_status = 400
        self.token_bytes = True  # False: log-prob tokens carry "bytes": null (llama.cpp)
        self.answer_model: str | None = None
        self.any_model = False  # True: unknown models are answered too (listed or not)
        self.probes: list[dict[str, Any]] = []
        self.facet_answers: dict[str, Any] = {}  # facet field -> value to answer (else the first)
        self.field_probabilities: dict[str, float] = {}  # field -> log-prob share of its value
        self.delay = 0.0
        self.clear_failures()
        with self._script_lock:
            self._script.clear()
            self.calls.clear()
            self.probes.clear()
        with self._lock:
            self.requests.clear()
            self.writes.clear()

    def like(self, server: str) -> None:
        """Answer as a real server does: ``"llama.cpp"`` (llama-cpp-python's server: json_schema
        refused with a 500, a schema given with json_object enforced, log-probs only with
        top_logprobs and without token bytes, one model listed but any name answered, no key)
        or ``"lm-studio"``
        (json_schema only: json_object refused with a 400)."""
        if server == "llama.cpp":
            self.json_schema, self.json_object = "refuse", "follow_schema"
            self.logprobs, self.refusal_status, self.token_bytes = "with_top_logprobs", 500, False
            self.models, self.any_model, self.api_key = ["smollm2"], True, None
        elif server == "lm-studio":
            self.json_object, self.logprobs = "refuse", "never"
        else:
            raise ValueError(f"unknown server {server!r}")

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat calls (see the module docstring)."""
        for behaviour in behaviours:
            name = behaviour if isinstance(behaviour, str) else behaviour[0]
            if name not in _SIMPLE | {"status", "delay", "answer"}:
                raise ValueError(f"unknown behaviour {behaviour!r}")
        with self._script_lock:
            self._script.extend(behaviours)

    # -- auth ---------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        azure = request.path.startswith("/openai/")
        bearer = request.headers.get("authorization", "")
        presented = request.headers.get("api-key") if azure else None
        if presented is None and not request.path.startswith("/openai/deployments/"):
            presented = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        if presented == self.api_key:
            return None
        if not presented:
            return _error(401, "You didn't provide an API key.", "invalid_request_error")
        # Echoes the key in full, as some proxies do: the client must scrub its messages.
        return _error(
            401,
            f"Incorrect API key provided: {presented}.",
            "invalid_request_error",
            "invalid_api_key",
        )

    # -- models -------------------------------------------------------------------------------

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}

    def _list_models(self, request: Request) -> Response:
        return Response(200, {"object": "list", "data": [self._model(m) for m in self.models]})

    def _get_model(self, request: Request) -> Response:
        model_id = request.params["model"]
        if self.models and model_id not in self.models:
            return self._no_model(model_id)
        return Response(200, self._model(model_id))

    def _no_model(self, model_id: str) -> Response:
        return _error(
            404,
            f"The model `{model_id}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    # -- chat ---------------------------------------------------------------------------------

    def _chat(self, request: Request) -> Response:
        body: dict[str, Any] = request.json()
        probe = is_probe(body)
        with self._script_lock:
            (self.probes if probe else self.calls).append(body)
            behaviour: Behaviour | None = None
            if self._script and not probe:
                behaviour = self._script.popleft()
        if self.latency:
            time.sleep(self.latency)
        deployment = request.params.get("deployment")
        if deployment is not None and not request.arg("api-version"):
            return Response(404, {"error": {"code": "404", "message": "Resource not found"}})
        model = str(body.get("model", ""))
        if deployment is None and self.models and model not in self.models and not self.any_model:
            return self._no_model(model)
        if isinstance(behaviour, tuple) and behaviour[0] == "status":
            return self._status(*behaviour[1:])
        if isinstance(behaviour, tuple) and behaviour[0] == "delay":
            time.sleep(behaviour[1])
        if behaviour == "html":
            page = b"<!doctype html><html><body>Welcome</body></html>"
            return Response(200, raw=page, headers={"Content-Type": "text/html"})
        response_format = body.get("response_format") or {}
        refused = self._refusal(body, response_format, behaviour)
        if refused is not None:
            return refused
        answered_as = self.answer_model or model or str(deployment)
        if probe:
            return self._probe_answer(body, answered_as, response_format)
        return self._answer(body, answered_as, response_format, behaviour)

    def _refusal(
        self, body: dict[str, Any], response_format: dict[str, Any], behaviour: Behaviour | None
    ) -> Response | None:
        kind = response_format.get("type")
        if behaviour == "no_json_schema" or (
            kind == "json_schema" and self.json_schema == "refuse"
        ):
            if self.refusal_status == 500:
                return _error(500, LLAMA_CPP_JSON_SCHEMA_REFUSAL, "internal_server_error")
            return _error(
                self.refusal_status,
                "response_format of type 'json_schema' is not supported by this server",
                "invalid_request_error",
                param="response_format",
            )
        if kind == "json_object" and self.json_object == "refuse":
            message = "'response_format.type' must be 'json_schema' or 'text'"
            return _error(self.refusal_status, message, "invalid_request_error")
        if behaviour == "no_logprobs" or (body.get("logprobs") and self.logprobs == "refuse"):
            return _error(
                self.refusal_status, "logprobs are not supported", "invalid_request_error"
            )
        return None

    def _follows_schema(self, response_format: dict[str, Any]) -> bool:
        kind = response_format.get("type")
        if kind == "json_schema":
            return self.json_schema == "follow"
        return (
            kind == "json_object"
            and "schema" in response_format
            and (self.json_object == "follow_schema")
        )

    def _schema(self, response_format: dict[str, Any]) -> dict[str, Any]:
        if not self._follows_schema(response_format):
            return {}
        if response_format.get("type") == "json_schema":
            schema: dict[str, Any] = response_format.get("json_schema", {}).get("schema", {})
            return schema
        return dict(response_format.get("schema") or {})

    def _probe_answer(
        self, body: dict[str, Any], model: str, response_format: dict[str, Any]
    ) -> Response:
        schema = self._schema(response_format)
        if schema:
            enum = schema.get("properties", {}).get("answer", {}).get("enum", ["?"])
            content = json.dumps({"answer": enum[0]})
        else:
            content = json.dumps({"reply": "OK"}) if response_format else "OK"
        return self._completion(body, model, content, None, "stop")

    def _status(
        self, status: int, headers: dict[str, str] | None = None, message: str | None = None
    ) -> Response:
        if message is not None:
            response = _error(status, message, "server_error" if status >= 500 else "error")
        elif status == 429:
            response = _error(429, "Rate limit reached for requests.", "requests", "rate_limit")
        elif status >= 500:
            message = "The server had an error while processing your request."
            response = _error(status, message, "server_error")
        else:
            response = _error(status, f"Scripted error {status}.", "invalid_request_error")
        response.headers.update(headers or {})
        return response

    def _answer(
        self,
        body: dict[str, Any],
        model: str,
        response_format: dict[str, Any],
        behaviour: Behaviour | None,
    ) -> Response:
        messages: list[dict[str, Any]] = body.get("messages", [])
        texts = [m["content"] for m in messages if isinstance(m.get("content"), str)]
        ticket = next((m["content"] for m in messages if m.get("role") == "user"), "")
        content: str | None
        refusal: str | None = None
        finish = "stop"
        system = [m["content"] for m in messages if m.get("role") == "system"]
        keys, labels = self._candidates(response_format, system, texts)
        if not response_format and not keys:
            content = "OK"
        else:
            confidence = 0.9
            reasoning = None
            if isinstance(behaviour, tuple) and behaviour[0] == "answer":
                key, confidence = behaviour[1], behaviour[2]
                reasoning = behaviour[3] if len(behaviour) > 3 else None
            elif behaviour == "invalid_key":
                key = "not-a-category"
            else:
                key = self._choose(keys, labels, str(ticket))
            label = labels.get(key, key)
            answer = {"category": key}
            answer |= self._facet_answers(response_format, texts)
            reasoning = reasoning or f"The ticket best matches {label}."
            answer |= {"confidence": confidence, "reasoning": reasoning}
            content = json.dumps(answer, ensure_ascii=False)
            if behaviour == "garbage":
                content = "I think this is about a printer, but I am not sure."
            elif behaviour == "refusal":
                content, refusal = None, "I'm sorry, but I can't help with that request."
            elif behaviour == "length":
                content, finish = content[: len(content) // 2], "length"
        response = self._completion(body, model, content, refusal, finish)
        if behaviour == "no_choices":
            response.body["choices"] = []
        return response

    def _completion(
        self,
        body: dict[str, Any],
        model: str,
        content: str | None,
        refusal: str | None,
        finish: str,
    ) -> Response:
        messages: list[dict[str, Any]] = body.get("messages", [])
        texts = [m["content"] for m in messages if isinstance(m.get("content"), str)]
        logprobs = None
        wanted = bool(body.get("logprobs"))
        if self.logprobs == "with_top_logprobs":
            wanted = wanted and int(body.get("top_logprobs") or 0) >= 1
        if wanted and self.logprobs != "never" and content is not None:
            logprobs = {"content": self._logprobs(content), "refusal": None}
        prompt_tokens = max(1, sum(len(t) for t in texts) // 4)
        completion_tokens = max(1, len(content or refusal or "") // 4)
        return Response(
            200,
            {
                "id": f"chatcmpl-fake{len(self.calls)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _candidates(
        self, response_format: dict[str, Any], system: list[str], texts: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """The allowed keys (schema enum, else the key list of JSON mode) and their labels."""
        schema = self._schema(response_format)
        keys = schema.get("properties", {}).get("category", {}).get("enum")
        if keys is None:
            listed = [m for t in texts for m in _KEY_LIST.findall(t)]
            keys = json.loads(listed[-1]) if listed else []
        keys = [str(k) for k in keys]
        return keys, _labels(keys, "\n".join(system))

    def _facet_answers(self, response_format: dict[str, Any], texts: list[str]) -> dict[str, Any]:
        """Every other field of the schema (or listed in JSON mode): ``facet_answers``, else the
        first allowed value of an enum, false for a boolean, a sentence for a string."""
        schema = self._schema(response_format)
        properties: dict[str, Any] = schema.get("properties", {})
        allowed = {
            name: spec["enum"]
            for name, spec in properties.items()
            if name not in _ANSWER_KEYS and "enum" in spec
        }
        flags = {n for n, spec in properties.items() if spec.get("type") == "boolean"}
        sentences = {
            n
            for n, spec in properties.items()
            if n not in _ANSWER_KEYS and spec == {"type": "string"}
        }
        for text in texts if not schema else ():
            allowed |= {name: json.loads(values) for name, values in _VALUE_LIST.findall(text)}
            flags |= set(_FLAG.findall(text))
            sentences |= set(_TEXT.findall(text))
        answers: dict[str, Any] = {
            name: self.facet_answers.get(name, values[0] if values else "")
            for name, values in allowed.items()
        }
        answers |= {name: self.facet_answers.get(name, False) for name in flags}
        answers |= {name: self.facet_answers.get(name, "A short summary.") for name in sentences}
        return answers

    def _choose(self, keys: list[str], labels: dict[str, str], ticket: str) -> str:
        if not keys:
            return "no-candidates"
        if self.chooser is not None:
            return self.chooser(keys, ticket)
        text = ticket.lower()
        for key in keys:
            leaf = re.split(r"›|/", labels.get(key, key))[-1].lower()
            words = _WORD.findall(leaf)
            if words and all(word in text for word in words):
                return key
        return keys[0]

    def _logprobs(self, content: str) -> list[dict[str, Any]]:
        """Small tokens; those spelling the category value share ln(category_probability), those
        of a field in ``field_probabilities`` its value's."""
        spans: list[tuple[int, int, float]] = []
        wanted = {"category": self.category_probability, **self.field_probabilities}
        for name, probability in wanted.items():
            pattern = rf'"{re.escape(name)}"\s*:\s*"((?:[^"\\]|\\.)*)"'
            if match := re.search(pattern, content):
                spans.append((*match.span(1), probability))
        tokens = [(m.start(), m.group()) for m in _TOKEN.finditer(content)]
        owner = [next((s for s in spans if s[0] <= pos < s[1]), None) for pos, _ in tokens]
        sizes = {s: sum(1 for o in owner if o == s) for s in spans}
        out = []
        for (_, token), span in zip(tokens, owner, strict=True):
            logprob = math.log(span[2]) / sizes[span] if span else -0.0001
            raw = list(token.encode()) if self.token_bytes else None
            top = [{"token": token, "logprob": logprob, "bytes": raw}]
            out.append({"token": token, "logprob": logprob, "bytes": raw, "top_logprobs": top})
        return out


def _labels(keys: list[str], prompt: str) -> dict[str, str]:
    """Each key's label from the prompt's "key: label - description" entries (or "key label -
    description" lines, as the default prompt's outline writes them).

    An entry ends at a line break or where the next key's entry starts, so a template that
    forgets the line breaks between entries still reads.
    """
    starts: list[tuple[int, str, int]] = []  # where the entry starts, its key, where its label
    for key in keys:
        lines = [
            (line + 1, key, line + len(mark))
            for mark in (f"\n{key}: ", f"\n{key} ")
            if (line := prompt.find(mark)) >= 0
        ]
        if lines:  # the first line of either form (other lists, of fields, may follow)
            starts.append(min(lines))
        elif (anywhere := prompt.find(f"{key}: ")) >= 0:
            starts.append((anywhere, key, anywhere + len(key) + 2))
    starts.sort()
    labels: dict[str, str] = {}
    for index, (_, key, label) in enumerate(starts):
        stop = starts[index + 1][0] if index + 1 < len(starts) else len(prompt)
        entry = prompt[label:stop].split("\n", 1)[0]
        labels[key] = entry.split(" - ", 1)[0].strip()
    return labels


def is_probe(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or [{}]
    first = messages[0].get("content")
    return isinstance(first, str) and first.startswith(PROBE_MARKER)
