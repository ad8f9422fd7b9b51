"""What psatriage may do with a ticket: pure functions of the policy, the ticket and the answer.

Two questions, asked at two moments:

* ``guard`` — before asking the model: may this ticket's category be touched at all? A category set
  by a person is kept (``overwrite = "never"``), unless it is only the PSA's own placeholder and
  the policy allows replacing those (``"defaults"``); a locked category is never changed.
* ``choose_action`` — after the model answered: write the category (``apply``), only note it
  (``suggest``, or confidence under the threshold), or record it (``shadow``).
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


def choose_action(policy: Policy, result: Classification, checked: Guard) -> Choice:
    if policy.mode is Mode.SHADOW:
        return Choice(Action.SHADOW, "shadow mode: recorded only")
    if policy.mode is Mode.SUGGEST:
        return Choice(Action.SUGGEST, "suggest mode: note only")
    needed = policy.min_confidence_to_change if checked.replacing else policy.min_confidence
    if result.confidence < needed:
        return Choice(
            Action.SUGGEST,
            f"confidence {result.confidence:.2f} is below {needed:.2f}: suggested, not written",
        )
    return Choice(Action.APPLY, f"confidence {result.confidence:.2f} ≥ {needed:.2f}")
