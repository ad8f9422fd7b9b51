"""Noise: spam, auto-replies, monitoring alerts and newsletters, and what the tenant does with
each kind (``[fields.noise]``: categorize, skip, or set a configured category and/or routing).

An obvious auto-reply or out-of-office message is recognised by its title before the model is
asked (``by_rules``), so a skipped one costs no model call; the model's ``noise`` answer covers
the rest, and is acted on only when its band is ``applied``.
"""

from __future__ import annotations

import re
from typing import Final

from psatriage.config.fields import FieldsSettings, NoiseAction
from psatriage.config.tenant import category_matches
from psatriage.domain import APPLIED, Category, FieldDecision, Taxonomy, Ticket

_AUTO_REPLY: Final = re.compile(
    r"^\s*(?:(?:re|aw|fw|fwd)\s*:\s*)?(?:"
    r"automatic reply|auto(?:matic)?[- ]?(?:reply|response|answer)|autoreply|auto:|"
    r"out of (?:the )?office|ooo\b|undeliverable:|delivery status notification|"
    r"abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|absence du bureau|"
    r"respuesta autom[áa]tica|risposta automatica|automatisch antwoord|afwezig"
    r")",
    re.IGNORECASE,
)
REQUEST: Final = "request"


def by_rules(settings: FieldsSettings, ticket: Ticket) -> tuple[str, str] | None:
    """``(kind, why)`` when a rule recognises the ticket as noise before any model call."""
    if "noise" not in settings.active() or not settings.noise.rules:
        return None
    if _AUTO_REPLY.search(ticket.title):
        return "auto_reply", "its title says it is an automatic reply"
    return None


def ruled(kind: str, why: str) -> FieldDecision:
    """The noise field's decision made by a rule."""
    labels = {"auto_reply": "an automatic reply or out-of-office message"}
    return FieldDecision("noise", "Noise", labels.get(kind, kind), kind, APPLIED, 1.0)


def acted_on(settings: FieldsSettings, decided: tuple[FieldDecision, ...]) -> NoiseAction | None:
    """The tenant's action for the noise the model found (applied band, not a real request);
    None when the ticket is to be categorized as any other."""
    found = next((d for d in decided if d.name == "noise"), None)
    if found is None or found.outcome != APPLIED or found.value_id == REQUEST:
        return None
    action = settings.noise.action_for(found.value_id)
    return None if action.action == "categorize" else action


def configured_category(taxonomy: Taxonomy, wanted: str) -> Category | None:
    """The active leaf a noise action names (by key, or the first under a path)."""
    return next(
        (leaf for leaf in taxonomy.active() if category_matches(leaf, wanted)),
        None,
    )
