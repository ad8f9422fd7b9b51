from __future__ import annotations

import pytest

from psatriage import policy
from psatriage.config import Policy
from psatriage.domain import Category, Classification, LevelValue, Taxonomy, Ticket

HW = LevelValue("type", "8", "Hardware")
PRINTER = LevelValue("subType", "1", "Printer")
NEW = LevelValue("type", "1", "New (default)")
SECURITY = LevelValue("type", "5", "Security")
TAXONOMY = Taxonomy(
    scope="1",
    scope_name="Help Desk",
    levels=("type", "subType"),
    leaves=(
        Category("8/1", (HW, PRINTER)),
        Category("1", (NEW,)),
        Category("5", (SECURITY,)),
        Category("6", (LevelValue("type", "6", "Retired"),), active=False),
    ),
    defaults=frozenset({("type", "1")}),
)


def _ticket(*current: LevelValue) -> Ticket:
    return Ticket(id="1", title="t", description="d", scope="1", current=current)


def _result(confidence: float) -> Classification:
    return Classification("8/1", confidence, "logprobs", "r", "openai", "m")


@pytest.mark.parametrize(
    ("overwrite", "current", "keep", "replacing"),
    [
        ("never", (), False, False),
        ("never", (HW,), True, False),
        ("never", (NEW,), True, False),
        ("defaults", (NEW,), False, False),
        ("defaults", (HW, PRINTER), True, False),
        ("always", (HW, PRINTER), False, True),
        ("always", (NEW,), False, False),
    ],
)
def test_guard_by_overwrite(
    overwrite: str, current: tuple[LevelValue, ...], keep: bool, replacing: bool
) -> None:
    checked = policy.guard(Policy(overwrite=overwrite), _ticket(*current), TAXONOMY)  # type: ignore[arg-type]
    assert bool(checked.keep) is keep
    assert checked.replacing is replacing


def test_locked_category_is_kept_even_with_always() -> None:
    rules = Policy(overwrite="always", locked=("Security",))  # type: ignore[arg-type]
    checked = policy.guard(rules, _ticket(SECURITY), TAXONOMY)
    assert "locked" in checked.keep


def test_candidates_drop_inactive_and_excluded() -> None:
    rules = Policy(excluded=("New (default)",))
    assert [c.key for c in policy.candidates(rules, TAXONOMY)] == ["8/1", "5"]
    assert [c.key for c in policy.candidates(Policy(excluded=("8/1",)), TAXONOMY)] == ["1", "5"]


@pytest.mark.parametrize(
    ("mode", "confidence", "replacing", "action"),
    [
        ("apply", 0.9, False, "apply"),
        ("apply", 0.49, False, "suggest"),
        ("apply", 0.7, True, "suggest"),  # replacing needs min_confidence_to_change (0.8)
        ("apply", 0.85, True, "apply"),
        ("suggest", 0.99, False, "suggest"),
        ("shadow", 0.99, False, "shadow"),
    ],
)
def test_choose_action(mode: str, confidence: float, replacing: bool, action: str) -> None:
    choice = policy.choose_action(
        Policy(mode=mode),  # type: ignore[arg-type]
        _result(confidence),
        policy.Guard(replacing=replacing),
    )
    assert choice.action.value == action
    assert choice.reason


@pytest.mark.parametrize(
    ("settings", "confidence", "replacing", "expected"),
    [
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.8, False, policy.Band.APPLY),
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.79, False, policy.Band.SUGGEST),
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.4, False, policy.Band.SUGGEST),
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.39, False, policy.Band.RECORD),
        ({"min_confidence": 0.6}, 0.6, False, policy.Band.APPLY),  # the older name, same thing
        ({"fields": {"category": {"apply_at": 0.7}}}, 0.69, False, policy.Band.SUGGEST),
        ({"apply_at": 0.5, "min_confidence_to_change": 0.9}, 0.8, True, policy.Band.SUGGEST),
        ({"apply_at": 0.5, "min_confidence_to_change": 0.9}, 0.9, True, policy.Band.APPLY),
    ],
)
def test_band_of_a_confidence(
    settings: dict[str, object], confidence: float, replacing: bool, expected: policy.Band
) -> None:
    rules = Policy.model_validate(settings)
    assert policy.band("category", confidence, rules, replacing=replacing) is expected


@pytest.mark.parametrize(
    ("settings", "confidence", "action", "review"),
    [
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.9, "apply", False),
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.6, "suggest", True),
        ({"apply_at": 0.8, "suggest_at": 0.4}, 0.3, "record", False),
        ({"mode": "suggest", "apply_at": 0.8, "suggest_at": 0.4}, 0.9, "suggest", True),
        ({"mode": "suggest", "apply_at": 0.8, "suggest_at": 0.4}, 0.3, "record", False),
        ({"mode": "shadow", "suggest_at": 0.4}, 0.9, "shadow", False),
        ({"fields": {"category": {"mode": "shadow"}}}, 0.9, "shadow", False),
    ],
)
def test_choose_action_by_band(
    settings: dict[str, object], confidence: float, action: str, review: bool
) -> None:
    choice = policy.choose_action(
        Policy.model_validate(settings), _result(confidence), policy.Guard()
    )
    assert (choice.action.value, choice.review) == (action, review)
    assert choice.reason


def test_apply_at_and_min_confidence_are_one_setting() -> None:
    assert Policy.model_validate({"apply_at": 0.7}).min_confidence == 0.7
    assert Policy.model_validate({"min_confidence": 0.7}).apply_at == 0.7
    assert Policy.model_validate({"apply_at": 0.9}).min_confidence_to_change == 0.9
    both = Policy.model_validate({"apply_at": 0.7, "min_confidence": 0.7})
    assert both.apply_at == both.min_confidence == 0.7
