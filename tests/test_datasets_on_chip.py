"""Issue 32, done: wine and a table the test writes itself go through ``--accelerator rtl`` with a
small network, the emulated board (the IP's Verilog, Verilated) and validation, which must PASS
with the article's bar of 95%; breast cancer and digits go ``--to csim``.

One real build per data set (module fixture ``dataset_build``): training, hls4ml, the C-simulation,
the rtl datapath, the IP's cocotb verification and its Verilated library, then the package.
"""
from __future__ import annotations

import csv
import html
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, Build, _path_without_vivado, run_buildmodel
from iris_fpga.fileio import sha256_file

PYTHON = sys.executable
RTL = ("--accelerator", "rtl", "--to", "package")
CLASSES = ("Kalte Ente", "sauer", "süß")  # the table's labels: spaces and non-ASCII pass through as written
FEATURES = ("length", "width, mm", "mass", "hue", "noise")
BUILDS = {  # name: (extra BuildModel.py options, features, classes)
    "wine": (("--dataset", "wine", "--hidden", "32,16"), None, ["class_0", "class_1", "class_2"]),
    "table": (("--hidden", "16,8"), list(FEATURES), sorted(CLASSES)),
}


def write_blobs(path: Path) -> Path:
    """150 samples of three well separated classes in five features, one of them noise."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 4, (len(CLASSES), len(FEATURES) - 1))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["kind", *FEATURES])  # the target first
        for i in range(150):
            c = i % len(CLASSES)
            values = [*(centres[c] + rng.normal(0, 0.6, len(FEATURES) - 1)), rng.normal(100, 30)]
            writer.writerow([CLASSES[c], *(f"{v:.3f}" for v in values)])
    return path


@pytest.fixture(scope="module", params=sorted(BUILDS))
def dataset_build(request, tmp_path_factory) -> tuple[str, Build]:
    name = request.param
    root = tmp_path_factory.mktemp(f"data-{name}")
    options = BUILDS[name][0]
    if name == "table":
        options = (*options, "--csv", str(write_blobs(root / "blobs.csv")), "--target", "kind")
    result = run_buildmodel(*options, *RTL, cwd=root, env={"PATH": _path_without_vivado()}, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return name, Build(root, root / "hls4ml_prj_pynq", root / "package", result.stdout)


def test_the_package_describes_its_data(dataset_build):
    name, build = dataset_build
    manifest, (_, features, classes) = build.manifest, BUILDS[name]
    dataset = manifest["dataset"]
    assert dataset["classes"] == classes == list(np.load(build.package_dir / "classes.npy"))
    scaler = json.loads((build.package_dir / "scaler.json").read_text())
    assert scaler["features"] == dataset["features"] and manifest["n_in"] == len(dataset["features"])
    assert manifest["n_out"] == len(classes) and manifest["accelerator"] == "rtl"
    if name == "table":
        assert dataset["name"] == "csv" and dataset["features"] == features and dataset["target"] == "kind"
        assert dataset["sha256"] == sha256_file(build.root / "blobs.csv")
    else:
        assert dataset["name"] == "wine" and len(dataset["features"]) == 13 and "sha256" not in dataset


def test_the_emulated_board_runs_the_ip_and_validation_passes(dataset_build, tmp_path):
    name, build = dataset_build
    classes = BUILDS[name][2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNQ_")}
    board = subprocess.run([PYTHON, "on_target.py", "--emulate"], cwd=build.package_dir, env=env,
                           capture_output=True, text=True, timeout=300)
    assert board.returncode == 0, board.stdout[-2000:] + board.stderr[-2000:]
    hw = json.loads((build.package_dir / "y_hw.json").read_text())
    n_in, samples = build.manifest["n_in"], len(np.load(build.package_dir / "X_test.npy"))
    # the 32-bit stream takes n_in cycles a sample; the IP's latency and the handshakes add a little
    assert n_in <= hw["ip_cycles_per_sample"] < n_in + 40 / samples
    page = tmp_path / "validation.html"
    report = subprocess.run([PYTHON, str(REPO / "utilities" / "validate_model.py"), str(build.package_dir),
                             "--min-accuracy", "0.95", "--html", str(page)], capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr
    assert "Verilated and run clock by clock" in report.stdout and "Verdict: PASS" in report.stdout
    assert "PASS  accuracy hardware" in report.stdout and "PASS  hardware vs HLS C-sim classes" in report.stdout
    header = next(line for line in report.stdout.splitlines() if line.lstrip().startswith("true \\ predicted"))
    assert header.split()[3:] == [word for c in classes for word in c.split()]  # the confusion matrix's columns
    assert all(c in page.read_text(encoding="utf-8") for c in classes)
    named = (f"Data set: a CSV table (labels in column 'kind', sha256 {sha256_file(build.root / 'blobs.csv')[:16]}...)"
             if name == "table" else f"Data set: {name}")
    assert named in report.stdout.splitlines() and f"<p>{html.escape(named)}.</p>" in page.read_text(encoding="utf-8")


CSIM_BUILDS = {"breast_cancer": (30, 2, ("--hidden", "16,8")), "digits": (64, 10, ("--hidden", "32,16"))}


@pytest.fixture(scope="module", params=sorted(CSIM_BUILDS))
def csim_build(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    root = tmp_path_factory.mktemp(f"csim-{name}")
    result = run_buildmodel("--dataset", name, *CSIM_BUILDS[name][2], "--to", "csim", cwd=root, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return name, root / "hls4ml_prj_pynq" / "pipeline"


def test_breast_cancer_and_digits_go_through_the_c_simulation(csim_build):
    """Their networks take their inputs and classes; every test input fits the IP's input type (digits'
    pixels share one scale); the fixed-point model picks the trained one's classes. README's larger
    networks give the 95% figures; these small ones must still classify well above chance."""
    name, pipeline = csim_build
    n_in, n_out, _ = CSIM_BUILDS[name]
    csim = json.loads((pipeline / "state.json").read_text())["csim"]["result"]
    assert (csim["n_in"], csim["n_out"], csim["inputs_out_of_range"]) == (n_in, n_out, [])
    assert csim["accuracy"]["agreement"] >= 0.99 and csim["accuracy"]["csim"] >= 0.9
    assert np.load(pipeline / "staging" / "y_hls.npy").shape == (len(np.load(pipeline / "staging" / "X_test.npy")),
                                                                 n_out)
