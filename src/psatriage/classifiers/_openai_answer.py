"""Reading a Chat Completions answer: the JSON, the chosen key and facets, and the confidence
from token log-probs (or the model's own estimate).

The model answers with one of the values ``Choices`` offered it: the candidate keys, or short
aliases for them (``1``, ``2``... in the order the prompt lists them) where those are shorter. The
prompt, the schema's ``enum`` and the JSON-mode instructions all show the same values, and an
answer is mapped back to a candidate key by exact lookup: anything else is refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from psatriage.classifiers.base import clip
from psatriage.domain import ConfidenceSource, Facet, FieldAnswer, FieldSpec

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion, ChatCompletionTokenLogprob

_MAX_REASONING_CHARS: Final = 500
_MAX_TEXT_FIELD_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Choices:
    """The values the model may answer with, and the candidate key each stands for."""

    shown: tuple[str, ...]
    _keys: Mapping[str, str]

    @classmethod
    def for_keys(cls, keys: Sequence[str]) -> Choices:
        """Aliases ``1``..``n`` for ``keys`` in their order, when they are shorter in all and
        none of them is also a candidate key (so an alias never reads as another category);
        else the keys themselves."""
        aliases = [str(number) for number in range(1, len(keys) + 1)]
        if sum(map(len, aliases)) < sum(map(len, keys)) and not set(aliases) & set(keys):
            return cls(tuple(aliases), dict(zip(aliases, keys, strict=True)))
        return cls(tuple(keys), {key: key for key in keys})

    @property
    def aliased(self) -> dict[str, str]:
        """Each candidate key whose shown value differs, with that value (for the prompt)."""
        return {key: shown for shown, key in self._keys.items() if shown != key}

    def key(self, shown: str) -> str | None:
        """The candidate key ``shown`` stands for; ``None`` for anything not offered."""
        return self._keys.get(shown)


@dataclass(frozen=True, slots=True)
class Answer:
    key: str
    confidence: float
    source: ConfidenceSource
    reasoning: str
    facets: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldAnswer] = field(default_factory=dict)


def read_answer(
    completion: ChatCompletion,
    choices: Choices,
    facets: Sequence[Facet] = (),
    fields: Sequence[FieldSpec] = (),
) -> Answer | str:
    """The answer, its category mapped back to a candidate key, or a short description of what
    is wrong with it. A field answered outside its values is left out of ``Answer.fields``: that
    field is not decided, the rest of the answer stands."""
    if not completion.choices:
        return "the response has no choices"
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        return "the answer was cut off at the token limit"
    content = choice.message.content or ""
    data = _parse_json(content)
    if data is None:
        return "the answer is not a JSON object"
    key, confidence, reasoning = (data.get(f) for f in ("category", "confidence", "reasoning"))
    missing = [
        name
        for name, ok in (
            ("category", isinstance(key, str)),
            (
                "confidence",
                isinstance(confidence, int | float) and not isinstance(confidence, bool),
            ),
            ("reasoning", isinstance(reasoning, str)),
        )
        if not ok
    ]
    if missing:
        return f"missing or mistyped field(s): {', '.join(missing)}"
    assert isinstance(key, str) and isinstance(reasoning, str)
    assert isinstance(confidence, int | float)
    candidate = choices.key(key)
    if candidate is None:
        return f"{clip(key)!r} is not one of the candidate keys"
    chosen: dict[str, str] = {}
    for facet in facets:
        value = data.get(facet.name)
        if not isinstance(value, str | int) or facet.get(str(value)) is None:
            return f'"{facet.name}" is missing or not one of its values'
        chosen[facet.name] = str(value)
    tokens = choice.logprobs.content if choice.logprobs else None
    answered = _fields(data, fields, content, tokens)
    probability = _value_probability(content, tokens, "category", key) if tokens else None
    if probability is not None:
        return Answer(candidate, probability, "logprobs", _reasoning(reasoning), chosen, answered)
    confidence = min(1.0, max(0.0, float(confidence)))
    return Answer(candidate, confidence, "self_reported", _reasoning(reasoning), chosen, answered)


def _fields(
    data: Mapping[str, Any],
    fields: Sequence[FieldSpec],
    content: str,
    tokens: Sequence[ChatCompletionTokenLogprob] | None,
) -> dict[str, FieldAnswer]:
    """The valid field answers; a choice's confidence from the log-probs of its value."""
    found: dict[str, FieldAnswer] = {}
    for spec in fields:
        value = data.get(spec.name)
        if spec.kind == "choice":
            if not isinstance(value, str | int) or isinstance(value, bool):
                continue
            if spec.get(str(value)) is None:
                continue
            likely = _value_probability(content, tokens, spec.name, str(value)) if tokens else None
            found[spec.name] = FieldAnswer(str(value), likely)
        elif spec.kind == "flag":
            if isinstance(value, bool):
                found[spec.name] = FieldAnswer("true" if value else "false")
        elif isinstance(value, str) and value.strip():
            found[spec.name] = FieldAnswer(clip(value, _MAX_TEXT_FIELD_CHARS))
    return found


def _parse_json(content: str) -> dict[str, Any] | None:
    """A JSON object, also when a lenient server wrapped it in prose or a code fence."""
    candidates = [content]
    first, last = content.find("{"), content.rfind("}")
    if 0 <= first < last:
        candidates.append(content[first : last + 1])
    for text in candidates:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _value_probability(
    content: str, tokens: Sequence[ChatCompletionTokenLogprob], name: str, key: str
) -> float | None:
    """exp(sum of the log-probs of the tokens that spell the value of ``name``), if they line up.

    Offsets are in UTF-8 bytes because a token may be part of a character; a token that straddles
    the value's edge (``"hw``) counts, since it decided the value's first or last characters.
    """
    match = re.search(rf'"{re.escape(name)}"\s*:\s*"', content)
    if match is None:
        return None
    spelled = json.dumps(key, ensure_ascii=False)[1:-1]
    start, end = match.end(), match.end() + len(spelled)
    if content[start:end] != spelled:
        return None
    raw = content.encode()
    byte_start, byte_end = len(content[:start].encode()), len(content[:end].encode())
    offset, total, joined = 0, 0.0, bytearray()
    for token in tokens:
        piece = bytes(token.bytes) if token.bytes is not None else token.token.encode()
        if offset < byte_end and offset + len(piece) > byte_start:
            total += token.logprob
        joined += piece
        offset += len(piece)
        if offset >= byte_end:
            break
    if bytes(joined[:byte_end]) != raw[:byte_end]:
        return None  # the tokens do not spell the content: no trustworthy alignment
    return min(1.0, math.exp(total))


def _reasoning(text: str) -> str:
    return clip(text, _MAX_REASONING_CHARS)
