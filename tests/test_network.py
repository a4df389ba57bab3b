"""The network as settings (issue 16): --hidden, --weight-bits, --activation-bits.

One real build of a network unlike the article's (two hidden layers, 4-bit weights, 3-bit ReLUs)
goes through train, convert, csim, rtl (bit-exact) and package, then the emulated board and the
validation; the article's network stays what it was.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PYTHON, REPO, SMALL_ARGS, Build, _path_without_vivado, run_buildmodel

SMALL = {"hidden": (16, 8), "weight_bits": 4, "activation_bits": 3}
@pytest.fixture(scope="module")
def small(small_build: Build) -> Path:
    """``BuildModel.py --hidden 16,8 --weight-bits 4 --activation-bits 3 --rtl --to package`` (conftest's)."""
    return small_build.root


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "64,,32"], "--hidden takes comma-separated whole numbers"),
        (["--hidden", ""], "--hidden takes comma-separated whole numbers"),
        (["--hidden", "8.5"], "--hidden takes comma-separated whole numbers"),
        (["--hidden", "16 8"], "--hidden takes comma-separated whole numbers"),
        (["--hidden", "0"], "--hidden widths must be 1 to 256 (got 0)"),
        (["--hidden", "16,257"], "--hidden widths must be 1 to 256 (got 16,257)"),
        (["--hidden", "1,2,3,4,5,6,7"], "--hidden takes 1 to 6 widths (got 7"),
        (["--weight-bits", "1"], "--weight-bits must be 2 to 16 (got 1)"),
        (["--weight-bits", "17"], "--weight-bits must be 2 to 16 (got 17)"),
        (["--activation-bits", "1"], "--activation-bits must be 2 to 16 (got 1)"),
        (["--activation-bits", "17"], "--activation-bits must be 2 to 16 (got 17)"),
        (["--weight-bits", "four"], "invalid int value: 'four'"),
    ],
)
def test_out_of_range_or_malformed_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch, capsys):
    from BuildModel import main

    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_the_limits_themselves_are_accepted():
    from BuildModel import parse_args

    _, config = parse_args(["--hidden", "256,1,256,1,256,1", "--weight-bits", "16", "--activation-bits", "2"])
    assert (config.hidden, config.weight_bits, config.activation_bits) == ((256, 1, 256, 1, 256, 1), 16, 2)
    assert config.dense_layers == ("fc1", "fc2", "fc3", "fc4", "fc5", "fc6", "output")
    _, config = parse_args(["--hidden", "1", "--weight-bits", "2", "--activation-bits", "16"])
    assert config.dense_layers == ("fc1", "output")


def test_defaults_are_the_article_network_and_its_cache_keys():
    from BuildModel import BuildModel, parse_args

    _, default = parse_args([])
    _, explicit = parse_args(["--hidden", "64,32,32", "--weight-bits", "6", "--activation-bits", "6"])
    assert (default.hidden, default.weight_bits, default.activation_bits) == ((64, 32, 32), 6, 6)
    assert default == explicit and BuildModel(default).keys() == BuildModel(explicit).keys()


def article_network(n_features: int, n_classes: int):
    """The article's network exactly as model.py built it before it became settings (commit e8246bc)."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from iris_fpga.keras_compat import tf_keras

    keras = tf_keras()

    def qdense(units, name, **extra):
        return QDense(units, name=name, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                      bias_quantizer=quantized_bits(6, 0, alpha=1), kernel_initializer="lecun_uniform",
                      kernel_regularizer=keras.regularizers.l1(1e-4), **extra)

    model = keras.Sequential(name="iris")
    model.add(qdense(64, "fc1", input_shape=(n_features,)))
    model.add(QActivation(activation=quantized_relu(6), name="relu1"))
    for i, units in enumerate((32, 32), start=2):
        model.add(qdense(units, f"fc{i}"))
        model.add(QActivation(activation=quantized_relu(6), name=f"relu{i}"))
    model.add(qdense(n_classes, "output"))
    model.add(keras.layers.Activation(activation="softmax", name="softmax"))
    return model


@pytest.mark.slow  # trains a network
def test_default_network_is_the_articles_layer_for_layer_and_draw_for_draw():
    """Same configuration and same initial weights under the same seed: training (unchanged code,
    deterministic ops) then gives the same weights, hence the same C-simulation."""
    from iris_fpga.config import BuildConfig
    from iris_fpga.keras_compat import tf_keras
    from iris_fpga.model import build_network

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    ours = build_network(BuildConfig(), 4, 3)
    keras.utils.set_random_seed(0)
    article = article_network(4, 3)
    assert ours.get_config() == article.get_config()
    for mine, theirs in zip(ours.get_weights(), article.get_weights(), strict=True):
        assert np.array_equal(mine, theirs)


# --------------------------------------------------------------------------- a smaller network, end to end


def test_settings_and_sparsity_follow_the_network(small: Path):
    manifest = _json(small / "package" / "manifest.json")
    settings = manifest["settings"]
    assert (tuple(settings["hidden"]), settings["weight_bits"], settings["activation_bits"]) == tuple(SMALL.values())
    assert list(manifest["sparsity"]["per_layer"]) == ["fc1", "fc2", "output"]
    for layer, fraction in manifest["sparsity"]["per_layer"].items():
        assert abs(fraction - 0.75) <= 0.05, layer
    with np.load(small / "hls4ml_prj_pynq" / "pipeline" / "weights.npz") as weights:
        shapes = {name: weights[name].shape for name in weights.files}
    assert shapes == {"fc1/0": (4, 16), "fc1/1": (16,), "fc2/0": (16, 8), "fc2/1": (8,),
                      "output/0": (8, 3), "output/1": (3,)}


def test_hls4ml_gets_the_bit_widths_and_every_layer_its_reuse_factor(small: Path):
    layers = _json(small / "hls4ml_prj_pynq" / "pipeline" / "hls_config.json")["LayerName"]
    for name in ("fc1", "fc2", "output"):
        assert layers[name]["ReuseFactor"] == 512
        assert layers[name]["Precision"]["weight"] == layers[name]["Precision"]["bias"] == "fixed<4,1,TRN,WRAP,0>"
    for name in ("relu1", "relu2"):
        assert layers[name]["Precision"]["result"] == "ufixed<3,0,RND_CONV,SAT,0>"
    assert not {"fc3", "relu3"} & set(layers)
    firmware = small / "hls4ml_prj_pynq" / "firmware"
    defines = (firmware / "defines.h").read_text()
    assert "typedef ap_fixed<4,1> weight2_t;" in defines and "ap_ufixed<3,0,AP_RND_CONV,AP_SAT,0>" in defines
    assert "typedef ap_fixed<16,6> input_t;" in defines  # the input keeps --default-precision
    parameters = (firmware / "parameters.h").read_text()
    accumulators = re.findall(r"typedef (\S+) accum_t;", parameters)
    assert len(accumulators) >= 3 and set(accumulators) == {"model_default_t"}  # so do the accumulators


def test_csimulation_is_scored_and_agrees_with_keras(small: Path):
    package = small / "package"
    manifest = _json(package / "manifest.json")
    y_test = np.load(package / "y_test.npy").argmax(1)
    y_keras, y_hls = np.load(package / "y_keras.npy"), np.load(package / "y_hls.npy")
    assert y_hls.shape == y_keras.shape == (30, 3)
    assert manifest["accuracy"]["csim"] == pytest.approx(np.mean(y_hls.argmax(1) == y_test))
    assert manifest["accuracy"]["agreement"] == pytest.approx(np.mean(y_hls.argmax(1) == y_keras.argmax(1)))


def test_rtl_is_bit_exact_for_the_smaller_network(small: Path):
    graph = _json(small / "hls4ml_prj_pynq" / "pipeline" / "rtl_graph.json")
    assert [(layer["name"], layer["kind"]) for layer in graph["layers"]] == [
        ("fc1", "dense"), ("relu1", "relu"), ("fc2", "dense"), ("relu2", "relu"), ("output", "dense")]
    dense = [layer for layer in graph["layers"] if layer["kind"] == "dense"]
    assert [(layer["n_in"], layer["n_out"]) for layer in dense] == [(4, 16), (16, 8), (8, 3)]
    assert {layer["weight_type"]["width"] for layer in dense} == {4}
    assert {layer["result_type"]["width"] for layer in graph["layers"] if layer["kind"] == "relu"} == {3}
    estimate = _json(small / "package" / "hardware_estimate.json")
    assert estimate["bit_exact"]["test"] == {"matched": 30, "total": 30}
    assert estimate["bit_exact"]["random"] == {"matched": 2000, "total": 2000}
    assert estimate["resources"]["LUT"] > 0 and estimate["fits"] is True


def test_emulated_board_and_validation_match_the_csimulation(small: Path, tmp_path):
    package = tmp_path / "package"
    shutil.copytree(small / "package", package)
    run = subprocess.run([PYTHON, "on_target.py", "--emulate"], cwd=package, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    report = subprocess.run([sys.executable, str(REPO / "utilities" / "validate_model.py"), str(package)],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr
    assert "PASS  hardware vs HLS C-sim probabilities: max |diff| 0" in report.stdout


def test_rerun_with_the_same_network_reuses_every_step(small: Path, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(small, root)
    result = run_buildmodel(*SMALL_ARGS, "--rtl", "--to", "package", cwd=root, env={"PATH": _path_without_vivado()})
    assert result.returncode == 0, result.stderr
    for step in ("data", "train", "convert", "csim", "rtl"):
        assert f"{step:<9} reused" in result.stdout, step
