"""``BuildModel.py --cv-fold I/K`` (issue 30): a build that trains on the training part less one
stratified fold and scores the C-simulation on that fold, never on the 30 test samples."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from conftest import _path_without_vivado, run_buildmodel


def raw_rows(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> Counter:
    """The samples in centimetres (rounded), as a multiset: Iris holds a few identical rows."""
    return Counter(map(tuple, np.round(X.astype(np.float64) * scale + mean, 3)))


def test_the_folds_partition_the_training_part_stratified_and_leave_the_test_set_out():
    from iris_fpga.config import BuildConfig
    from iris_fpga.data import fold_split, load_split

    split = load_split(BuildConfig())
    training = raw_rows(split.X_train, split.scaler_mean, split.scaler_scale)
    held_out = Counter()
    for fold in (1, 2, 3):
        part = fold_split(split, fold, 3)
        fitted, scored = (raw_rows(X, part.scaler_mean, part.scaler_scale) for X in (part.X_train, part.X_test))
        assert fitted + scored == training
        assert len(part.X_test) == 40 and len(part.X_train) == 80
        per_class = part.y_test.sum(0)
        assert np.all(np.abs(per_class - split.y_train.sum(0) / 3) < 1), per_class  # stratified
        assert np.allclose(part.X_train.mean(0), 0, atol=1e-5)  # the scaler is the fold's training part's
        held_out += scored
    assert held_out == training  # every training sample is held out exactly once
    again = fold_split(split, 2, 3)
    assert np.array_equal(again.X_test, fold_split(split, 2, 3).X_test)  # fixed folds


def test_more_folds_than_a_class_has_samples_is_one_usage_error():
    from iris_fpga.data import Split, fold_split
    from iris_fpga.errors import ToolError

    y = np.eye(3, dtype=np.float32)[[0, 0, 0, 1, 1, 1, 2, 2]]
    split = Split(np.zeros((8, 4), np.float32), y, np.zeros((0, 4)), np.zeros((0, 3)), np.array(["a", "b", "c"]),
                  np.zeros(4), np.ones(4), ["w", "x", "y", "z"])
    with pytest.raises(ToolError, match="only 2 samples of one class.*choose K <= 2") as info:
        fold_split(split, 1, 3)
    assert info.value.code == 2


@pytest.mark.parametrize("value, message", [
    ("0/3", "I from 1 to K"), ("4/3", "(got 4/3)"), ("1/1", "K from 2 to 20"), ("1/21", "K from 2 to 20"),
    ("1", "takes I/K"), ("a/b", "takes I/K"), ("1/3/3", "takes I/K"), ("\x1b[2J1/3", "\\x1b[2J1/3"),
])
def test_a_bad_fold_is_one_line_and_exit_2(tmp_path, value, message):
    result = run_buildmodel("--cv-fold", value, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: --cv-fold") and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_fold_build_scores_its_fold_and_never_the_test_set(tmp_path):
    from iris_fpga.config import BuildConfig
    from iris_fpga.data import load_split

    result = run_buildmodel("--hidden", "8", "--cv-fold", "2/3", "--to", "package", cwd=tmp_path,
                            env={"PATH": _path_without_vivado()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    package = tmp_path / "package"
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["settings"]["cv_fold"] == [2, 3]
    assert manifest["cv"] == {"fold": 2, "folds": 3, "accuracy": manifest["accuracy"]["csim"]}
    assert "on 40 held-out fold 2/3 samples" in result.stdout
    assert set(manifest["numerical_profile"]["totals"]) == {"weights", "train", "held-out fold 2/3"}  # not "test"
    scaler = json.loads((package / "scaler.json").read_text())
    scored = raw_rows(np.load(package / "X_test.npy"), np.asarray(scaler["mean"]), np.asarray(scaler["scale"]))
    split = load_split(BuildConfig())
    training = raw_rows(split.X_train, split.scaler_mean, split.scaler_scale)
    assert sum(scored.values()) == 40 and scored <= training  # training samples only, none of the test set's
    y_hls = np.load(package / "y_hls.npy")
    truth = np.load(package / "y_test.npy").argmax(1)
    assert manifest["cv"]["accuracy"] == float(np.mean(y_hls.argmax(1) == truth))  # scored on the fold itself
    assert len(y_hls) == 40
