"""The numerical profile (iris_fpga/profile.py) on the session's real trained model and hls4ml types."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iris_fpga.profile import FixedRange, profile_model


@pytest.fixture(scope="module")
def models(built, tmp_path_factory):
    """The built model's Keras network (its saved weights) and its hls4ml model (converted, not compiled)."""
    from iris_fpga import data, hls
    from iris_fpga import model as iris_model
    from iris_fpga.config import BuildConfig

    split = data.load_saved(built.output_dir / "pipeline" / "staging")
    config = BuildConfig()
    keras_model = iris_model.load_model(built.output_dir / "pipeline" / "weights.npz", config,
                                        split.X_train.shape[1], split.y_train.shape[1])
    hls_model = hls.convert(keras_model, config, tmp_path_factory.mktemp("prj"), hls.hls_config(keras_model, config))
    return keras_model, hls_model, split


def _decoded(png: Path) -> np.ndarray:
    import matplotlib.image

    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    return matplotlib.image.imread(png)


def test_profile_of_the_trained_model(models, tmp_path):
    keras_model, hls_model, split = models
    png = tmp_path / "profile.png"
    doc = profile_model(keras_model, hls_model, split.X_train, split.X_test, png)
    # every weight array of every Dense layer, all of its values, against a 6-bit type that holds them
    for layer in ("fc1", "fc2", "fc3", "output"):
        kernel, bias = keras_model.get_layer(layer).get_weights()
        for suffix, array in (("w", kernel), ("b", bias)):
            row = doc["weights"][f"{layer}/{suffix}"]
            assert row["weights"]["values"] == array.size and row["type"].startswith("fixed<6,1")
            assert row["weights"]["wrap"] == row["weights"]["saturate"] == 0
    # every layer of the hls4ml model, with the values of both data sets
    assert list(doc["activations"]) == [layer.name for layer in hls_model.get_layers()]
    fc1 = doc["activations"]["fc1"]
    assert fc1["train"]["values"] == len(split.X_train) * 64 and fc1["test"]["values"] == len(split.X_test) * 64
    assert "accumulator" in fc1["type"] and fc1["high"] == 32 - 2 ** -10  # the model's default fixed<16,6>
    assert doc["activations"]["relu1"]["mode"] == "saturate"  # hls4ml's ReLU result type saturates
    assert doc["totals"] == {k: {"wrap": 0, "saturate": 0} for k in ("weights", "train", "test")}
    image = _decoded(png)
    assert image.shape[0] > 400 and image.shape[1] > 400 and image[..., :3].std() > 0.05


def test_values_beyond_the_input_type_are_counted_as_wrapping(models, tmp_path):
    """Inputs scaled beyond ap_fixed<16,6> wrap on the FPGA: the profile must count each one, and
    count the edges of the type as held."""
    keras_model, hls_model, split = models
    X = split.X_test.copy()
    X[:3, 0] = 40.0           # beyond the largest value, 32 - 2^-10: wraps
    X[3, 1] = -32.5           # below the smallest, -32: wraps
    X[4, 2] = -32.0           # the smallest value itself: held
    X[5, 3] = 32 - 2 ** -10   # the largest value itself: held
    doc = profile_model(keras_model, hls_model, split.X_train, X, tmp_path / "profile.png")
    inputs = doc["activations"]["fc1_input"]
    assert inputs["mode"] == "wrap" and inputs["test"]["wrap"] == 4 and inputs["train"]["wrap"] == 0
    assert inputs["test"]["max_abs"] == 40.0
    # the first layer's sums of those samples leave its accumulator too, and are counted there
    assert doc["activations"]["fc1"]["test"]["wrap"] > 0
    assert doc["totals"]["test"]["wrap"] == sum(a["test"]["wrap"] for a in doc["activations"].values())
    assert doc["totals"]["train"]["wrap"] == 0
    assert _decoded(tmp_path / "profile.png").shape[1] > 400


def test_a_held_out_fold_is_counted_under_its_own_name(models, tmp_path):
    """A --cv-fold build profiles its held-out fold, not the test set, and says so."""
    keras_model, hls_model, split = models
    doc = profile_model(keras_model, hls_model, split.X_train, split.X_test[:7], tmp_path / "profile.png",
                        "held-out fold 1/3")
    assert set(doc["totals"]) == {"weights", "train", "held-out fold 1/3"}
    assert doc["activations"]["fc1"]["held-out fold 1/3"]["values"] == 7 * 64
    assert _decoded(tmp_path / "profile.png").shape[1] > 400


def test_saturating_and_unsigned_types_from_hls4ml():
    from hls4ml.model.types import FixedPrecisionType

    relu = FixedRange.of(FixedPrecisionType(6, 0, False, saturation_mode="SAT"))
    assert (relu.low, relu.high, relu.step, relu.mode) == (0.0, 63 / 64, 1 / 64, "saturate")
    counted = relu.count(np.array([0.0, 0.5, 63 / 64, 1.0, -0.25, 1 / 128]))
    assert counted == {"values": 6, "wrap": 0, "saturate": 2, "below_step": 1, "max_abs": 1.0}
    assert FixedRange.of(object()) is None  # not fixed point (e.g. a float type): no range to check


def test_the_build_ships_the_profile_and_its_counts(built):
    from iris_fpga import contract

    manifest = built.manifest
    assert contract.PROFILE in manifest["files"]
    assert not contract.verify(built.package_dir, manifest, [contract.PROFILE])
    assert _decoded(built.package_dir / contract.PROFILE).shape[0] > 200
    totals = manifest["numerical_profile"]["totals"]
    assert set(totals) == {"weights", "train", "test"}
    assert totals["test"]["wrap"] == 0  # the default network's test data fits its types
    assert "profile" in built.stdout
