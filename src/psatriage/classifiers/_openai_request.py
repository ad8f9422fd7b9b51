"""The Chat Completions request as one server accepts it, and the words that ask for an answer.

A ``Shape`` says which optional parameters a request carries: how the answer's JSON is enforced
(strict ``json_schema``; llama.cpp's ``json_object`` with a ``schema``; plain ``json_object``;
or nothing but the prompt), whether log-probs are asked for (and with ``top_logprobs``, which
llama.cpp needs before it returns any), and the names of the token limit and temperature. The
capability probe and the classification send requests through the same ``send``, so what the
probe found is what the classifier sends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Literal

from psatriage.classifiers._openai_config import StructuredOutput
from psatriage.classifiers.base import ClassificationRequest
from psatriage.domain import Category, Facet, FieldSpec, LevelValue, Ticket
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

LogprobsMode = Literal["plain", "top"]
# In llama.cpp's grammar mode the reasoning is bounded so that a whole answer fits its token
# budget even at one token per character: at most two thirds of it, and 40 to 400 characters.
_REASONING_CHARS: Final = (40, 400)


@dataclass(frozen=True, slots=True)
class Shape:
    """The optional parts of a request; ``structured=None`` asks for JSON in the prompt only."""

    structured: StructuredOutput | None = "json_schema"
    logprobs: LogprobsMode | None = "plain"
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    temperature: bool = True

    def without(self, feature: str) -> Shape:
        """This shape less one refused feature (``structured`` falls back one mode at a time)."""
        if feature == "structured":
            fallback: dict[StructuredOutput | None, StructuredOutput | None] = {
                "json_schema": "json_object_schema",
                "json_object_schema": "json_object",
                "json_object": None,
                None: None,
            }
            return replace(self, structured=fallback[self.structured])
        if feature == "logprobs":
            return replace(self, logprobs=None)
        if feature == "max_tokens":
            return replace(self, max_tokens_param="max_completion_tokens")
        if feature == "temperature":
            return replace(self, temperature=False)
        raise ValueError(f"unknown feature {feature!r}")


def send(
    client: openai.OpenAI,
    shape: Shape,
    *,
    model: str,
    messages: list[ChatCompletionMessageParam],
    max_tokens: int,
    temperature: float,
    schema: dict[str, object],
    schema_name: str,
) -> ChatCompletion | str:
    """One Chat Completions call in ``shape``: the completion, or the body as text when it is
    not one (a server that is not a compatible API); the SDK's errors propagate.

    The body goes through the client's plain ``post`` (its auth, retries and errors as
    ``chat.completions.create`` has them), not through ``create``: that one first walks every
    value of the request against the parameter types (``maybe_transform``), which for our plain
    JSON changes nothing and cost more CPU than the rest of the call (the schema's ``enum`` lists
    every candidate's key). The answer comes back as bytes and is read by ``completion_of``."""
    body: dict[str, object] = {"model": model, "messages": messages}
    if shape.structured == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "strict": True, "schema": schema},
        }
    elif shape.structured == "json_object_schema":
        # llama.cpp's extension: JSON mode with a schema turned into a grammar
        body["response_format"] = {"type": "json_object", "schema": schema}
    elif shape.structured == "json_object":
        body["response_format"] = {"type": "json_object"}
    body[shape.max_tokens_param] = max_tokens
    if shape.temperature:
        body["temperature"] = temperature
    if shape.logprobs:
        body["logprobs"] = True
    if shape.logprobs == "top":
        body["top_logprobs"] = 1
    content = client.post(
        "/chat/completions",
        cast_to=bytes,
        body=body,
        options={"security": {"bearer_auth": True}},
    )
    return completion_of(content)


def completion_of(content: bytes) -> ChatCompletion | str:
    """The completion in a 200's body, or the body as text when it is not a JSON object.

    Validated by pydantic's compiled core first: the SDK's own reading of an answer
    (``construct``, which never fails) walks every log-prob token in Python and cost three
    times as much. A body that does not validate (a lenient server leaving out a field the
    type requires) is read the SDK's way, as before."""
    import pydantic
    from openai.types.chat import ChatCompletion

    try:
        return ChatCompletion.model_validate_json(content)
    except pydantic.ValidationError:
        pass
    try:
        data = json.loads(content)
    except ValueError:
        return content.decode(errors="replace")
    if not isinstance(data, dict):
        return content.decode(errors="replace")
    return ChatCompletion.construct(**data)


def response_schema(
    keys: Sequence[str],
    facets: Sequence[Facet] = (),
    *,
    fields: Sequence[FieldSpec] = (),
    max_tokens: int | None = None,
) -> dict[str, object]:
    """The JSON schema of an answer: the category is one of ``keys``, each facet and choice
    field one of its option ids, a flag a boolean, a text field a string. With ``max_tokens``
    the reasoning's length is capped to fit that budget (grammar-enforcing servers only: strict
    ``json_schema`` does not take ``maxLength`` everywhere)."""
    properties: dict[str, object] = {"category": {"type": "string", "enum": list(keys)}}
    for facet in facets:
        properties[facet.name] = {"type": "string", "enum": [o.id for o in facet.options]}
    for spec in fields:
        properties[spec.name] = _field_schema(spec)
    properties["confidence"] = {"type": "number"}
    reasoning: dict[str, object] = {"type": "string"}
    if max_tokens is not None:
        low, high = _REASONING_CHARS
        reasoning["maxLength"] = max(low, min(high, max_tokens * 2 // 3))
    properties["reasoning"] = reasoning
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _field_schema(spec: FieldSpec) -> dict[str, object]:
    if spec.kind == "choice":
        return {"type": "string", "enum": [o.id for o in spec.options]}
    if spec.kind == "flag":
        return {"type": "boolean"}
    return {"type": "string"}


def _example(spec: FieldSpec) -> object:
    if spec.kind == "choice":
        return spec.options[0].id if spec.options else ""
    if spec.kind == "flag":
        return False
    return "One short sentence."


def json_mode_instructions(
    keys: Sequence[str], facets: Sequence[Facet], fields: Sequence[FieldSpec] = ()
) -> str:
    """What strict output would have enforced, said in words: the fields, an example answer
    with real values, and the allowed values (a bare type such as "string" gets copied)."""
    example: dict[str, object] = {"category": keys[0]}
    example |= {f.name: f.options[0].id for f in facets if f.options}
    example |= {spec.name: _example(spec) for spec in fields}
    example |= {"confidence": 0.8, "reasoning": "One short sentence for the technician."}
    return (
        "Reply with one JSON object and nothing else, in this form (an example of the form "
        "only: choose what fits the ticket):\n"
        f"{json.dumps(example, ensure_ascii=False)}\n{allowed(keys, facets, fields)}"
    )


def correction(
    problem: str, keys: Sequence[str], facets: Sequence[Facet], fields: Sequence[FieldSpec] = ()
) -> str:
    brevity = " Be brief: one short sentence of reasoning." if "cut off" in problem else ""
    return (
        f"Your answer was invalid: {problem}. Answer again with only the JSON object.{brevity}\n"
        f"{allowed(keys, facets, fields)}"
    )


def allowed(keys: Sequence[str], facets: Sequence[Facet], fields: Sequence[FieldSpec] = ()) -> str:
    listed = json.dumps(list(keys), ensure_ascii=False)
    lines = [f'"category" must be exactly one of these keys: {listed}']
    choices = [(f.name, f.options) for f in facets]
    choices += [(spec.name, spec.options) for spec in fields if spec.kind == "choice"]
    lines += [
        f'"{name}" must be exactly one of these values: {json.dumps([o.id for o in options])}'
        for name, options in choices
    ]
    lines += [f'"{spec.name}" is true or false.' for spec in fields if spec.kind == "flag"]
    lines += [f'"{spec.name}" is one short sentence.' for spec in fields if spec.kind == "text"]
    lines.append('"confidence" is a number from 0 to 1.')
    return "\n".join(lines)


_SAMPLE_CANDIDATES: Final = (
    Category(
        "sample/printer",
        (LevelValue("type", "sample", "Hardware"), LevelValue("item", "printer", "Printer")),
        "Printers and scanners",
    ),
    Category(
        "sample/email",
        (LevelValue("type", "sample", "Software"), LevelValue("item", "email", "Email")),
        "Mail clients and mailboxes",
    ),
)
_SAMPLE_TICKET: Final = Ticket(
    id="config-check",
    title="The printer on the second floor jams",
    description="Every print job stops with a paper jam.",
    scope="",
)


def sample_request(tenant: str, model: str, max_tokens: int) -> ClassificationRequest:
    """A made-up ticket and two categories in the shipped prompt: what ``config check`` sends
    to see that the model answers the real request."""
    return ClassificationRequest(
        tenant=tenant,
        ticket=_SAMPLE_TICKET,
        candidates=_SAMPLE_CANDIDATES,
        prompt=compile_prompt(DEFAULT_PROMPT, name="config check"),
        model=model,
        max_tokens=max_tokens,
    )
