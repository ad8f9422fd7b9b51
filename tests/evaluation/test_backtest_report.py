"""The backtest report's own measures: the recommended bands, accuracy per level, cost."""

from __future__ import annotations

import pytest

from psatriage.evaluation.backtest_report import (
    DAYS_PER_MONTH,
    MIN_SUPPORT,
    cost,
    level_accuracy,
    recommend,
)
from psatriage.evaluation.measures import Failure, Prediction


def _decisions(*groups: tuple[int, int, float]) -> tuple[list[bool], list[float]]:
    """``(right, wrong, confidence)`` groups as parallel lists."""
    correct: list[bool] = []
    confidence: list[float] = []
    for right, wrong, p in groups:
        correct += [True] * right + [False] * wrong
        confidence += [p] * (right + wrong)
    return correct, confidence


def test_apply_at_is_the_lowest_confidence_reaching_the_target_and_suggest_at_the_review_band() -> (
    None
):
    correct, confidence = _decisions((20, 0, 0.97), (9, 1, 0.85), (6, 4, 0.6), (2, 8, 0.3))
    bands = recommend(correct, confidence, target=0.95, suggest_target=0.5)
    # at 0.85: 29 of 30 right (96.7%); at 0.60 the review band 0.60..0.85 is right 6 of 10
    assert (bands.mode, bands.apply_at, bands.suggest_at) == ("apply", 0.61, 0.31)
    assert bands.apply_precision == pytest.approx(29 / 30) and bands.apply_share == 0.6
    assert bands.review_precision == 0.6 and bands.review_share == 0.2
    assert bands.record_share == pytest.approx(0.2)
    assert bands.reason == "at 0.61 and above: 60% of tickets, 96.7% of them right (target 95%)"


def test_a_review_band_needs_enough_tickets_and_precision() -> None:
    correct, confidence = _decisions((20, 0, 0.97), (2, 8, 0.6))
    bands = recommend(correct, confidence, target=0.95, suggest_target=0.5)
    assert bands.apply_at == 0.61 and bands.suggest_at == 0.61  # below it: record only
    assert bands.review_share == 0.0 and bands.record_share == pytest.approx(1 / 3)
    small = recommend(*_decisions((MIN_SUPPORT - 1, 0, 0.99)), target=0.9)
    assert small.mode == "suggest" and small.apply_at is None  # too few to trust


def test_without_an_apply_at_the_mode_is_suggest_and_all_tickets_may_be_reviewed() -> None:
    correct, confidence = _decisions((12, 8, 0.9), (5, 5, 0.4))
    bands = recommend(correct, confidence, target=0.95, suggest_target=0.5)
    assert (bands.mode, bands.apply_at, bands.suggest_at) == ("suggest", None, 0.0)
    assert bands.apply_share == 0.0 and bands.review_share == 1.0
    assert "no confidence reaches 95% precision" in bands.reason
    empty = recommend([], [])
    assert empty.apply_at is None and empty.suggest_at is None and empty.record_share == 1.0


def _answered(truth: list[list[str]], chosen: list[list[str]]) -> dict[str, object]:
    def key(path: list[list[str]]) -> str:
        return "/".join(step[1] for step in path)

    return {
        "truth": {"key": key(truth), "path": truth},
        "predicted": {"key": key(chosen), "path": chosen},
    }


def test_accuracy_per_level_compares_path_prefixes() -> None:
    hardware, printer, jam = (
        ["type", "1", "Hardware"],
        ["sub", "2", "Printer"],
        ["item", "3", "Jam"],
    )
    laptop, network = ["sub", "4", "Laptop"], ["type", "9", "Network"]
    results = [
        _answered([hardware, printer, jam], [hardware, printer, jam]),  # right
        _answered([hardware, printer, jam], [hardware, printer]),  # first two levels right
        _answered([hardware, printer], [hardware, laptop]),  # first level right
        _answered([network], [hardware]),  # wrong
    ]
    assert level_accuracy(results) == {
        "first_level": 0.75,
        "first_two_levels": 0.5,
        "full_path": 0.25,
    }
    assert level_accuracy([]) == {"first_level": 0.0, "first_two_levels": 0.0, "full_path": 0.0}


def test_cost_per_ticket_and_per_month_at_the_measured_volume() -> None:
    predictions = [Prediction("a", "a", 0.9, tokens_in=100, tokens_out=10, cost_usd=0.002)] * 3
    failures = [Failure("9", "invalid answer", "x", tokens_in=50, tokens_out=5, cost_usd=0.001)]
    volume = {"tickets": 600, "days": 60.0, "source": "test"}
    found = cost(predictions, failures, volume)
    assert (found["tokens_in"], found["tokens_out"]) == (350, 35)
    assert found["cost_per_ticket_usd"] == pytest.approx(0.007 / 4)
    assert found["tickets_per_month"] == pytest.approx(10 * DAYS_PER_MONTH)
    assert found["cost_per_month_usd"] == pytest.approx(0.007 / 4 * 10 * DAYS_PER_MONTH)
    assert found["tokens_per_month"] == pytest.approx(385 / 4 * 10 * DAYS_PER_MONTH)
    assert found["volume"] == volume
