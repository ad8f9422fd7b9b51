"""What the OpenAI-compatible classifier's tests share: three candidates, a ticket, a request."""

from __future__ import annotations

from collections.abc import Callable

from psatriage.classifiers.base import ClassificationRequest
from psatriage.classifiers.openai_compat import OpenAICompatClassifier
from psatriage.domain import Category, LevelValue, ModelCall, Ticket
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt

PROMPT = compile_prompt(DEFAULT_PROMPT)
Build = Callable[..., OpenAICompatClassifier]  # keyword arguments override the config


def leaf(key: str, *names: str) -> Category:
    ids = key.split("/")
    levels = ("type", "subtype", "item")
    return Category(
        key,
        tuple(
            LevelValue(lv, i, n) for lv, i, n in zip(levels[: len(ids)], ids, names, strict=True)
        ),
    )


CANDIDATES = (
    leaf("12/34/56", "Hardware", "Printer", "Paper jam"),
    leaf("12/35", "Hardware", "Laptop"),
    leaf("20/41", "Software", "Email"),
)
KEYS = [c.key for c in CANDIDATES]
SHOWN = ["1", "2", "3"]  # what the model is offered for KEYS: short aliases in listing order
TICKET = Ticket(
    id="4711",
    title="Printer jams",
    description="The printer on the 2nd floor has a paper jam again.",
    scope="1",
    scope_name="Help Desk",
)


def request(
    rows: list[ModelCall], *, model: str = "gpt-4o-mini", candidates: tuple[Category, ...] = ()
) -> ClassificationRequest:
    return ClassificationRequest(
        tenant="acme",
        ticket=TICKET,
        candidates=candidates or CANDIDATES,
        prompt=PROMPT,
        model=model,
        max_tokens=200,
        taxonomy_hash="tax123",
        event_id=7,
        record=rows.append,
    )
