"""Short aliases for candidate keys: offered where shorter, mapped back by exact lookup only."""

from __future__ import annotations

import pytest

from psatriage.classifiers._openai_answer import Choices

KEYS = ["12/34/56", "12/35", "20/41"]


def test_long_keys_are_offered_as_numbers_in_their_order() -> None:
    choices = Choices.for_keys(KEYS)
    assert choices.shown == ("1", "2", "3")
    assert [choices.key(shown) for shown in choices.shown] == KEYS
    assert choices.aliased == {"12/34/56": "1", "12/35": "2", "20/41": "3"}


@pytest.mark.parametrize(
    "keys",
    [
        ["7", "8", "9"],  # no shorter
        ["1/2", "2", "3/4"],  # the alias "2" would read as the category whose key is 2
        ["a", "b", "c"],  # letters: no shorter either
    ],
)
def test_keys_stay_themselves_when_aliases_would_not_help_or_would_mislead(
    keys: list[str],
) -> None:
    choices = Choices.for_keys(keys)
    assert choices.shown == tuple(keys) and choices.aliased == {}
    assert [choices.key(key) for key in keys] == keys


@pytest.mark.parametrize(
    "answer", ["0", "4", "-1", "01", "1.0", " 1", "1 ", "", "12/34/56", "one", "1,2"]
)
def test_the_mapping_never_accepts_an_invented_key(answer: str) -> None:
    """Only the exact values offered map back; a real key is not accepted in place of its alias
    either (the schema did not offer it)."""
    assert Choices.for_keys(KEYS).key(answer) is None


def test_without_aliases_only_the_candidate_keys_are_accepted() -> None:
    choices = Choices.for_keys(["a", "b"])
    assert choices.key("a") == "a" and choices.key("c") is None and choices.key("A") is None
