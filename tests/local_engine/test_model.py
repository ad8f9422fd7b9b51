"""The model's path scoring: sibling groups, the confidence calibration, and older files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.features import prepare
from psatriage.local_engine.model import Levels, TrainedModel, calibrate_top
from psatriage.local_engine.training import train
from tests.local_engine.test_training import _hierarchical


def test_calibration_keeps_the_best_first_and_each_row_summing_to_one() -> None:
    probabilities = np.array([[0.9, 0.06, 0.04], [0.34, 0.33, 0.33], [0.1, 0.2, 0.7]], np.float32)
    calibrated = calibrate_top(probabilities, slope=0.5, bias=-0.3)
    assert np.allclose(calibrated.sum(axis=1), 1, atol=1e-6)
    assert (calibrated.argmax(axis=1) == probabilities.argmax(axis=1)).all()
    assert calibrated[0, 0] < 0.9  # an overconfident best is lowered...
    assert np.isclose(calibrated[0, 1] / calibrated[0, 2], 0.06 / 0.04)  # the rest keep ratios
    assert calibrate_top(probabilities, 1.0, 0.0) is probabilities


def test_too_few_out_of_fold_decisions_leave_the_confidence_uncalibrated() -> None:
    texts, labels = _hierarchical()  # 16 tickets: too few to fit a slope and a bias on
    model = train(texts, labels, shared_embedder(), label="category")
    assert model.calibration == (1.0, 0.0)


def test_siblings_share_their_parents_probability() -> None:
    levels = Levels(
        names=("A", "B", "A/x", "A/y", "B/z"),
        level=np.array([0, 0, 1, 1, 1]),
        temperatures=(1.0, 1.0),
        paths=np.array([[0, 2], [0, 3], [1, 4]]),
        group=np.array([0, 0, 1, 1, 2]),
    )
    logs = levels.log_probabilities(np.array([[0.0, 0.0, 2.0, 0.0, -5.0]], np.float32))
    probabilities = np.exp(logs[0])
    assert np.isclose(probabilities.sum(), 1)
    assert np.isclose(probabilities[2], 0.5)  # B's only child takes all of B, whatever its score
    assert np.isclose(probabilities[0] + probabilities[1], 0.5)


def test_a_model_file_of_the_previous_format_is_still_read(tmp_path: Path) -> None:
    texts, labels = _hierarchical()
    model = train(texts, labels, shared_embedder(), label="category")
    path = tmp_path / "v2.npz"
    model.save(path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files if name != "row_groups"}
    header = json.loads(str(arrays["header"]))
    header["format_version"] = 2
    del header["calibration"]
    arrays["header"] = np.array(json.dumps(header))
    with path.open("wb") as out:
        np.savez(out, **arrays)
    loaded = TrainedModel.load(path)
    assert loaded.calibration == (1.0, 0.0)
    assert loaded.levels.groups.tolist() == loaded.levels.level.tolist()  # one group per level
    tickets = [prepare("Printer\nthe toner cartridge is empty")]
    vectors = shared_embedder().embed([t.text for t in tickets])
    probabilities = loaded.probabilities(tickets, vectors)
    assert np.isclose(probabilities.sum(), 1)
