"""What psatriage may do with a ticket: pure functions of the policy, the ticket and the answer.

Two questions, asked at two moments:

* ``guard`` — before asking the model: may this ticket's category be touched at all? A category set
  by a person is kept (``overwrite = "never"``), unless it is only the PSA's own placeholder and
  the policy allows replacing those (``"defaults"``); a locked category is never changed.
* ``choose_action`` — after the model answered: the confidence falls in a band of the field
  (``band``): at or above ``apply_at`` write it (``apply``); from ``suggest_at`` up to
  ``apply_at`` put it in an internal note marked for review (``suggest``, and a review opens);
  below ``suggest_at`` record it only (``record``). Mode ``suggest`` turns a write into a
  suggestion for review, mode ``shadow`` records everything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from psatriage.config.schema import Mode, Overwrite, Policy
from psatriage.config.tenant import category_matches
from psatriage.domain import PATH_SEPARATOR, Category, Classification, Taxonomy, Ticket


class Action(enum.StrEnum):
    APPLY = "apply"
    SUGGEST = "suggest"
    SHADOW = "shadow"
    RECORD = "record"


class Band(enum.StrEnum):
    """Where a field's confidence falls in its policy."""

    APPLY = "apply"  # at or above apply_at: write
    SUGGEST = "suggest"  # suggest_at up to apply_at: note marked for review, review queue
    RECORD = "record"  # below suggest_at: record only


@dataclass(frozen=True, slots=True)
class FieldBand:
    """One field's resolved band settings."""

    mode: Mode
    apply_at: float
    suggest_at: float


def field_band(rules: Policy, field: str) -> FieldBand:
    """The mode and thresholds of ``field`` (a name of ``config.schema.FIELDS``): its entry in
    ``policy.fields`` where set, else the policy's own (the category's)."""
    own = rules.fields.get(field)
    mode, apply_at, suggest_at = rules.mode, rules.apply_at, rules.suggest_at
    if own is not None:
        mode = own.mode or mode
        apply_at = apply_at if own.apply_at is None else own.apply_at
        suggest_at = suggest_at if own.suggest_at is None else own.suggest_at
    return FieldBand(mode, apply_at, suggest_at)


def band(field: str, confidence: float, rules: Policy, *, replacing: bool = False) -> Band:
    """The band of a confidence for ``field`` under the resolved (tenant ⊕ company) policy.
    Replacing a category a person set needs ``min_confidence_to_change`` to be written."""
    settings = field_band(rules, field)
    apply_at = settings.apply_at
    if replacing and field == "category":
        apply_at = max(apply_at, rules.min_confidence_to_change)
    if confidence >= apply_at:
        return Band.APPLY
    if confidence >= settings.suggest_at:
        return Band.SUGGEST
    return Band.RECORD


@dataclass(frozen=True, slots=True)
class Guard:
    """``keep`` is set when the ticket's category must not be touched, with the reason."""

    keep: str = ""
    replacing: bool = False  # the ticket has a (non-placeholder) category we may replace


def guard(policy: Policy, ticket: Ticket, taxonomy: Taxonomy) -> Guard:
    current_values = taxonomy.tree_values(ticket)  # facets (priority, queue...) do not count
    if not current_values:
        return Guard()
    label = PATH_SEPARATOR.join(v.name for v in current_values)
    current = taxonomy.find_by_ids(current_values) or Category(key="", path=current_values)
    for pattern in policy.locked:
        if category_matches(current, pattern):
            return Guard(keep=f"the category {label} is locked ({pattern!r})")
    placeholder = all((v.level, v.id) in taxonomy.defaults for v in current_values)
    if placeholder and policy.overwrite in {Overwrite.DEFAULTS, Overwrite.ALWAYS}:
        return Guard()
    if policy.overwrite is Overwrite.ALWAYS:
        return Guard(replacing=True)
    return Guard(keep=f"a person already set the category {label}")


def candidates(policy: Policy, taxonomy: Taxonomy) -> tuple[Category, ...]:
    """The active leaves the model may choose: excluded categories removed."""
    return tuple(
        leaf
        for leaf in taxonomy.active()
        if not any(category_matches(leaf, pattern) for pattern in policy.excluded)
    )


@dataclass(frozen=True, slots=True)
class Choice:
    action: Action
    reason: str
    band: Band = Band.APPLY

    @property
    def review(self) -> bool:
        """Whether the decision waits in the review queue (a suggestion a person may accept)."""
        return self.action is Action.SUGGEST


def choose_action(policy: Policy, result: Classification, checked: Guard) -> Choice:
    settings = field_band(policy, "category")
    where = band("category", result.confidence, policy, replacing=checked.replacing)
    if settings.mode is Mode.SHADOW:
        return Choice(Action.SHADOW, "shadow mode: recorded only", where)
    if where is Band.RECORD:
        return Choice(
            Action.RECORD,
            f"confidence {result.confidence:.2f} is below suggest_at "
            f"{settings.suggest_at:.2f}: recorded only",
            where,
        )
    if settings.mode is Mode.SUGGEST:
        return Choice(Action.SUGGEST, "suggest mode: note only, marked for review", where)
    needed = settings.apply_at
    if checked.replacing:
        needed = max(needed, policy.min_confidence_to_change)
    if where is Band.SUGGEST:
        return Choice(
            Action.SUGGEST,
            f"confidence {result.confidence:.2f} is below {needed:.2f}: suggested for review, "
            "not written",
            where,
        )
    return Choice(Action.APPLY, f"confidence {result.confidence:.2f} ≥ {needed:.2f}", where)
