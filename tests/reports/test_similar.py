"""How alike a category's tickets are, by the words of their titles."""

from __future__ import annotations

import pytest

from psatriage.reports.similar import similarity, words


def test_words_leave_out_common_words_numbers_and_short_ones() -> None:
    assert words("Please help: printer on floor 3 has a paper JAM") == {
        "printer", "floor", "paper", "jam"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("titles", "low", "high"),
    [
        (["Reset password for Ann", "Reset password for Bob", "Password reset for Cy"], 0.5, 1.0),
        (["Printer jam", "VPN drops", "New laptop for Dan"], 0.0, 0.05),
        (["Printer jam"], 0.0, 0.0),
    ],
)
def test_similarity(titles: list[str], low: float, high: float) -> None:
    assert low <= similarity(titles) <= high
