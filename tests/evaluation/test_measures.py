"""Accuracy measures (``evaluation.measures``) and the engine's data and taxonomy files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from psatriage.evaluation.measures import (
    Failure,
    Prediction,
    accuracy,
    at_thresholds,
    confused_pairs,
    expected_calibration_error,
    macro_f1,
    per_class,
    percentile,
    report,
    threshold_for_precision,
)
from psatriage.local_engine import DataError
from psatriage.local_engine.data import (
    Example,
    labeled,
    read_examples,
    read_taxonomy,
    select,
    split_path,
    taxonomy_from_labels,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "local"
TRUTH = ["a", "a", "a", "b", "b", "c"]
PREDICTED = ["a", "a", "b", "b", "c", "c"]


def test_accuracy_and_macro_f1() -> None:
    assert accuracy(TRUTH, PREDICTED) == pytest.approx(4 / 6)
    # a: p=1 r=2/3 f=0.8; b: p=1/2 r=1/2 f=0.5; c: p=1/2 r=1 f=2/3
    assert macro_f1(TRUTH, PREDICTED) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert accuracy([], []) == 0.0


def test_per_class_rows_and_confusions() -> None:
    rows = {r.label: r for r in per_class(TRUTH, PREDICTED)}
    assert (rows["a"].support, rows["a"].predicted) == (3, 2)
    assert rows["a"].precision == 1.0 and rows["a"].recall == pytest.approx(2 / 3)
    assert confused_pairs(TRUTH, PREDICTED) == [("a", "b", 1), ("b", "c", 1)]


def test_thresholds_and_the_one_that_reaches_a_precision() -> None:
    correct = [True, True, True, False, True, False]
    confidence = [0.95, 0.9, 0.8, 0.7, 0.6, 0.2]
    rows = {r.threshold: r for r in at_thresholds(correct, confidence, (0.0, 0.75))}
    assert rows[0.0].coverage == 1.0 and rows[0.0].precision == pytest.approx(4 / 6)
    assert rows[0.75].coverage == pytest.approx(0.5) and rows[0.75].precision == 1.0
    assert threshold_for_precision(correct, confidence, 1.0, min_support=1) == 0.8
    assert threshold_for_precision(correct, confidence, 0.8, min_support=1) == 0.6
    assert threshold_for_precision(correct, confidence, 1.0, min_support=5) is None


def test_calibration_error() -> None:
    assert expected_calibration_error([True, False], [1.0, 0.0]) == 0.0
    assert expected_calibration_error([False, False], [0.9, 0.9]) == pytest.approx(0.9)
    assert expected_calibration_error([], []) == 0.0


def test_percentiles_and_the_full_report() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([], 99) == 0.0
    predictions = [
        Prediction(t, p, 0.9, latency_ms=float(i), engine="local", tokens_in=10, cost_usd=0.5)
        for i, (t, p) in enumerate(zip(TRUTH, PREDICTED, strict=True))
    ]
    result = report(predictions)
    assert result.examples == 6 and result.tokens_in == 60 and result.cost_usd == 3.0
    assert result.engines == {"local": 6}
    data = result.to_dict()
    assert data["confused"][0] == {"truth": "a", "predicted": "b", "count": 1}


def test_reading_examples_and_the_split_rule() -> None:
    examples = read_examples(FIXTURES / "tickets.jsonl")
    assert len(examples) == 66
    train, held = select(examples, "train"), select(examples, "eval")
    assert len(train) + len(held) == 66 and held
    # the data README's rule: sha1 of the lower-cased, whitespace-normalized title + description
    example = Example("x", "Printer  JAM", "paper\nstuck")
    assert example.in_eval_split == (
        int(hashlib.sha1(b"printer jam paper stuck").hexdigest(), 16) % 5 == 0  # noqa: S324 - the rule
    )
    pairs = labeled(examples, "category", FIXTURES)
    assert len(pairs) == 65  # one ticket has no value for the level


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no tickets"),
        ("{not json}\n", r"line 1: not valid JSON"),
        ('["a"]\n', "line 1: each line must be a JSON object"),
        ('{"title": "", "description": ""}\n', "neither title nor description"),
        ('{"title": "x", "labels": []}\n', "'labels' must be an object"),
    ],
)
def test_bad_data_files_say_which_file_and_what(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as raised:
        read_examples(path)
    assert "bad.jsonl" in str(raised.value)


def test_missing_file_and_unknown_level(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing\.jsonl does not exist"):
        read_examples(tmp_path / "nothing.jsonl")
    examples = read_examples(FIXTURES / "tickets.jsonl")
    with pytest.raises(DataError, match=r"no ticket has the label level 'product'.*category, team"):
        labeled(examples, "product", FIXTURES / "tickets.jsonl")


def test_taxonomy_files() -> None:
    taxonomy = read_taxonomy(FIXTURES / "taxonomy.toml")
    assert taxonomy.levels == ("type", "subtype")
    printer = taxonomy.leaves[0]
    assert printer.key == "Hardware > Printer" and printer.label == "Hardware › Printer"
    assert printer.path[0].level == "type" and "toner" in printer.description
    with pytest.raises(DataError, match=r"duplicate\.toml: the key 'Hardware > Printer' is used"):
        read_taxonomy(FIXTURES / "duplicate.toml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("levels = 3\n[[category]]\npath = 'A'\n", "'levels' must be a list"),
        ("x = 1\n", "lists no categories"),
        ("[[category]]\npath = 3\n", "'path' must be a string"),
        ("[[category]]\npath = 'A'\ncolour = 'red'\n", "unknown key"),
        ("[[category]\n", "not valid TOML"),
    ],
)
def test_bad_taxonomy_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tax.toml"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_taxonomy(path)


def test_taxonomy_from_label_values() -> None:
    assert split_path("4/2/21") == ("4", "2", "21")
    assert split_path("Hardware > Printer") == ("Hardware", "Printer")
    assert split_path("Taking/threatening an illegal action") == (
        "Taking",
        "threatening an illegal action",
    )
    taxonomy = taxonomy_from_labels(["4/2/21", "4/2/21", "4/3"], "category_path")
    assert [leaf.key for leaf in taxonomy.leaves] == ["4/2/21", "4/3"]
    assert taxonomy.levels == ("category_path", "category_path.2", "category_path.3")
    named = read_taxonomy(FIXTURES / "taxonomy.toml")
    renamed = taxonomy_from_labels(["Hardware > Printer", "Other"], "category", named)
    assert renamed.get("Hardware > Printer") is not None
    assert renamed.leaves[0].description.startswith("printer jams")


def test_failures_are_counted_by_kind_and_their_cost_counts() -> None:
    answered = [Prediction("a", "a", 0.9, latency_ms=10, tokens_in=100, tokens_out=10)]
    failed = [
        Failure("t1", "invalid answer", "cut off", latency_ms=30, tokens_in=200, tokens_out=40),
        Failure("t2", "invalid answer", "not a key", tokens_in=50, cost_usd=0.5),
        Failure("t3", "server unavailable", "HTTP 503"),
    ]
    result = report(answered, failures=failed, examples_per_kind=1)
    assert (result.examples, result.accuracy, result.failed) == (1, 1.0, 3)
    assert result.failures == {"invalid answer": 2, "server unavailable": 1}
    assert [f.ticket_id for f in result.failure_examples] == ["t1", "t3"]
    assert (result.tokens_in, result.tokens_out, result.cost_usd) == (350, 50, 0.5)
    assert result.latency_p99_ms > 10  # failed tickets took time too
    assert result.to_dict()["failure_examples"][0]["message"] == "cut off"
