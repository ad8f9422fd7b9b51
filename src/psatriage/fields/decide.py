"""What the model is asked about the enabled fields, and what is decided from its answer.

``specs`` turns the tenant's enabled fields and the PSA's live values into the ``FieldSpec``s of
the one model call (an ``enum`` per choice); ``decide`` turns the answer into one
``FieldDecision`` per field that got a valid answer, each with its own band (``band``). A field
answered outside its values, or whose value the PSA does not have, is simply not decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from psatriage import policy
from psatriage.config.fields import (
    FIELD_NAMES,
    LEVELS,
    FieldName,
    FieldsSettings,
    PriorityField,
)
from psatriage.config.schema import Mode, Policy
from psatriage.domain import (
    APPLIED,
    RECORDED,
    SUGGESTED,
    Classification,
    Facet,
    FieldAnswer,
    FieldDecision,
    FieldSpec,
    LevelValue,
)
from psatriage.psa.base import TITLE_LEVEL

Options = Mapping[str, Facet]
"""The live values of the stored fields (``priority``, ``routing``) for one ticket."""


LABELS: Final[Mapping[str, str]] = {
    "priority": "Priority",
    "routing": "Routing",
    "noise": "Noise",
    "language": "Language",
    "sentiment": "Sentiment",
    "summary": "Summary",
}
NOISE: Final = (
    LevelValue("noise", "request", "a real request"),
    LevelValue("noise", "spam", "spam"),
    LevelValue("noise", "auto_reply", "an automatic reply or out-of-office message"),
    LevelValue("noise", "alert", "a monitoring alert"),
    LevelValue("noise", "newsletter", "a newsletter or marketing mail"),
)
_GRADES: Final = tuple(LevelValue("grade", level, level) for level in LEVELS)
_SENTIMENTS: Final = tuple(
    LevelValue("sentiment", s, s) for s in ("negative", "neutral", "positive")
)


def band(name: str, confidence: float | None, rules: Policy) -> str:
    """The outcome of one field's decision under the resolved policy (``policy.band`` with the
    field's ``policy.fields`` entry): ``applied``, ``suggested`` or ``recorded``. A value with no
    confidence (a text field) is taken as certain."""
    settings = policy.field_band(rules, name)
    if settings.mode is Mode.SHADOW:
        return RECORDED
    where = policy.band(name, 1.0 if confidence is None else confidence, rules)
    if where is policy.Band.RECORD:
        return RECORDED
    if where is policy.Band.SUGGEST or settings.mode is Mode.SUGGEST:
        return SUGGESTED
    return APPLIED


def specs(settings: FieldsSettings, options: Options) -> tuple[FieldSpec, ...]:
    """The fields the model answers for the enabled fields (language is detected offline)."""
    asked: list[FieldSpec] = []
    for name in settings.active():
        if name == "priority" and settings.priority.matrix:
            asked += [
                FieldSpec("urgency", "Urgency", "choice", "How soon must this be fixed?", _GRADES),
                FieldSpec(
                    "impact",
                    "Impact",
                    "choice",
                    "How many people or how much work does it stop?",
                    _GRADES,
                ),
            ]
        elif name == "priority" and "priority" in options:
            values = options["priority"]
            asked.append(
                FieldSpec(
                    "priority", values.label, "choice", "The ticket's priority.", values.options
                )
            )
        elif name == "routing" and "routing" in options:
            values = options["routing"]
            allowed = routing_targets(values, settings.routing.targets)
            if allowed:
                guide = f"The {values.label.lower()} that should handle the ticket."
                asked.append(FieldSpec("routing", values.label, "choice", guide, allowed))
        elif name == "noise":
            asked.append(
                FieldSpec("noise", "Noise", "choice", "What kind of message this is.", NOISE)
            )
        elif name == "sentiment":
            asked += [
                FieldSpec("sentiment", "Sentiment", "choice", "The requester's tone.", _SENTIMENTS),
                FieldSpec(
                    "frustrated", "Frustrated", "flag", "Whether the requester is frustrated."
                ),
            ]
        elif name == "summary":
            asked.append(
                FieldSpec(
                    "summary",
                    "Summary",
                    "text",
                    "One sentence that sums the ticket up for a technician.",
                )
            )
    return tuple(asked)


def in_order(decided: tuple[FieldDecision, ...]) -> tuple[FieldDecision, ...]:
    """Decisions in the order of the fields (routing decided first comes back to its place)."""
    rank: dict[str, int] = {name: n for n, name in enumerate(FIELD_NAMES)}
    return tuple(sorted(decided, key=lambda d: rank.get(d.name, len(rank))))


def routing_targets(values: Facet, targets: tuple[str, ...]) -> tuple[LevelValue, ...]:
    """The routing values the model may choose: the tenant's targets, else every active one."""
    if not targets:
        return values.options
    wanted = {t.casefold() for t in targets}
    return tuple(o for o in values.options if o.name.casefold() in wanted or o.id in targets)


def decide(
    settings: FieldsSettings,
    answer: Classification,
    options: Options,
    rules: Policy,
    *,
    language: tuple[str, float] | None = None,
    title: str = "",
) -> tuple[FieldDecision, ...]:
    """One decision per enabled field that has a valid answer, in ``FIELD_NAMES`` order."""
    answered = answer.fields
    decided: list[FieldDecision] = []
    for name in settings.active():
        found = _value(name, settings, answered, options, language, title)
        if found is None:
            continue
        value, value_id, confidence, write = found
        if confidence is None and write is not None and name not in ("language", "summary"):
            confidence = answer.confidence  # a choice read without log-probs
        outcome = band(name, confidence, rules)
        decided.append(
            FieldDecision(name, _label(name, options), value, value_id, outcome, confidence, write)
        )
    return tuple(decided)


def _label(name: FieldName, options: Options) -> str:
    if name in options:
        return options[name].label
    return LABELS[name]


_Found = tuple[str, str, float | None, LevelValue | None]


def _value(
    name: FieldName,
    settings: FieldsSettings,
    answered: Mapping[str, FieldAnswer],
    options: Options,
    language: tuple[str, float] | None,
    title: str,
) -> _Found | None:
    if name == "priority":
        return _priority(settings.priority, answered, options.get("priority"))
    if name == "routing":
        return _choice(answered.get("routing"), options.get("routing"))
    if name == "noise":
        return _choice(answered.get("noise"), Facet("noise", "Noise", NOISE), stored=False)
    if name == "sentiment":
        found = _choice(
            answered.get("sentiment"), Facet("sentiment", "", _SENTIMENTS), stored=False
        )
        if found is None:
            return None
        frustrated = answered.get("frustrated")
        if frustrated is not None and frustrated.value == "true":
            return (f"{found[0]}, frustrated", f"{found[1]},frustrated", found[2], None)
        return found
    if name == "summary":
        text = answered.get("summary")
        if text is None:
            return None
        rewrite = settings.summary.rewrite_generic_titles and settings.summary.is_generic(title)
        return (
            text.value,
            "",
            None,
            LevelValue(TITLE_LEVEL, text.value, text.value) if rewrite else None,
        )
    return (language[0], language[0], language[1], None) if language else None


def _choice(
    given: FieldAnswer | None, values: Facet | None, *, stored: bool = True
) -> _Found | None:
    if given is None or values is None:
        return None
    option = values.get(given.value)
    if option is None:
        return None
    return (option.name, option.id, given.confidence, option if stored else None)


def _priority(
    rules: PriorityField, answered: Mapping[str, FieldAnswer], values: Facet | None
) -> _Found | None:
    if values is None:
        return None
    urgency, impact = answered.get("urgency"), answered.get("impact")
    if rules.matrix and (urgency is not None or impact is not None):
        if urgency is None or impact is None:
            return None
        option = _by_name(values, rules.matrix[urgency.value][impact.value])
        known = [c for c in (urgency.confidence, impact.confidence) if c is not None]
        confidence = min(known) if known else None
    else:  # chosen among the PSA's priorities (the local engine's answer, with a matrix too)
        given = answered.get("priority")
        option = values.get(given.value) if given else None
        confidence = given.confidence if given else None
    if option is None:
        return None
    raised = _raised(rules, option, values, answered.get("frustrated"))
    return (raised.name, raised.id, confidence, raised)


def _raised(
    rules: PriorityField, option: LevelValue, values: Facet, frustrated: FieldAnswer | None
) -> LevelValue:
    """The priority after the rules: one step up when frustrated, never below ``at_least``."""
    order = [n.casefold() for n in rules.order]
    if option.name.casefold() not in order:
        return option
    rank = order.index(option.name.casefold())
    if rules.frustrated_raises and frustrated is not None and frustrated.value == "true":
        rank = max(0, rank - 1)
    if rules.at_least is not None:
        rank = min(rank, order.index(rules.at_least.casefold()))
    return _by_name(values, rules.order[rank]) or option


def _by_name(values: Facet, name: str) -> LevelValue | None:
    return next((o for o in values.options if o.name.casefold() == name.casefold()), None)
