"""The workstation pipeline, run for real: training, hls4ml conversion, g++ C-simulation, package."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import REPO, Build, run_buildmodel
from iris_fpga.fileio import sha256_file

BOARD_FILES = {
    "X_test.npy", "y_test.npy", "classes.npy", "scaler.json", "y_keras.npy", "y_hls.npy",
    "axi_stream_driver.py", "on_target.py",
}


def test_package_holds_what_the_board_needs(built: Build):
    manifest = built.manifest
    present = {p.relative_to(built.package_dir).as_posix() for p in built.package_dir.rglob("*") if p.is_file()}
    assert BOARD_FILES <= present
    assert set(manifest["files"]) == present - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert sha256_file(built.package_dir / name) == digest, name
    assert manifest["bitstream_built"] is False
    assert not (built.package_dir / "hls4ml_nn.bit").exists()
    assert len(manifest["build_id"]) == 16
    assert manifest["settings"]["recipe"] == "default" and manifest["settings"]["seed"] == 0
    assert manifest["versions"]["hls4ml"] == "1.3.0"
    assert (built.package_dir / "axi_stream_driver.py").read_text() == (built.output_dir / "axi_stream_driver.py").read_text()


def test_test_vectors_have_the_board_format(built: Build):
    X = np.load(built.package_dir / "X_test.npy", allow_pickle=False)
    y = np.load(built.package_dir / "y_test.npy", allow_pickle=False)
    classes = np.load(built.package_dir / "classes.npy", allow_pickle=False)
    assert X.shape == (30, 4) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (30, 3) and set(np.unique(y)) == {0.0, 1.0} and np.all(y.sum(1) == 1)
    assert classes.dtype.kind == "U" and list(classes) == ["setosa", "versicolor", "virginica"]
    scaler = json.loads((built.package_dir / "scaler.json").read_text())
    assert len(scaler["mean"]) == len(scaler["scale"]) == 4


def test_default_recipe_prunes_and_reaches_the_article_accuracy(built: Build):
    manifest = built.manifest
    for layer, fraction in manifest["sparsity"]["per_layer"].items():
        assert abs(fraction - 0.75) <= 0.01, layer
    assert abs(manifest["sparsity"]["overall"] - 0.75) <= 0.01
    assert manifest["accuracy"]["keras"] >= 0.9667
    assert manifest["accuracy"]["csim"] >= 0.9667


def test_csimulation_agrees_with_keras_on_every_class(built: Build):
    y_keras = np.load(built.package_dir / "y_keras.npy")
    y_hls = np.load(built.package_dir / "y_hls.npy")
    assert y_keras.shape == y_hls.shape == (30, 3)
    np.testing.assert_array_equal(y_keras.argmax(1), y_hls.argmax(1))
    assert built.manifest["accuracy"]["agreement"] == 1.0
    # probabilities differ (ap_fixed inputs, table softmax) but stay close
    assert np.max(np.abs(y_keras - y_hls)) < 0.25


def test_run_says_what_it_did_and_skipped(built: Build):
    out = built.stdout
    for step in ("data", "train", "convert", "csim", "bitstream", "package"):
        assert f"] {step}" in out and "done in" in out
    assert "bitstream    skipped: Vivado not found" in out
    assert "--from bitstream" in out
    assert "Keras 100.00%" in out or "Keras 96.67%" in out


def _copy_build(built: Build, tmp_path: Path) -> Build:
    root = tmp_path / "copy"
    shutil.copytree(built.root, root, symlinks=True)
    return Build(root, root / "hls4ml_prj_pynq", root / "package", "")


def _package_digests(package: Path) -> dict[str, str]:
    return {p.relative_to(package).as_posix(): sha256_file(p) for p in sorted(package.rglob("*")) if p.is_file()}


def test_unchanged_rerun_reuses_every_step(built: Build, tmp_path):
    build = _copy_build(built, tmp_path)
    before = build.manifest["build_id"]
    result = run_buildmodel("--to", "package", cwd=build.root)
    assert result.returncode == 0, result.stderr
    for step in ("data", "train", "convert", "csim"):
        assert f"{step:<9} reused" in result.stdout, step
    assert "Epoch" not in result.stdout
    assert build.manifest["build_id"] == before


def test_changed_setting_redoes_exactly_what_depends_on_it(built: Build, tmp_path):
    build = _copy_build(built, tmp_path)
    old_id = build.manifest["build_id"]
    (build.package_dir / "y_hw.npy").write_bytes((build.package_dir / "y_hls.npy").read_bytes())
    (build.package_dir / "y_hw.json").write_text(json.dumps({"build_id": old_id}))
    # ap_fixed<16,2> holds [-2, 2): some standardized test samples lie outside; the run completes
    result = run_buildmodel("--to", "package", "--reuse-factor", "256", "--default-precision", "ap_fixed<16,2>",
                            cwd=build.root)
    assert result.returncode == 0, result.stderr
    assert "data      reused" in result.stdout and "train     reused" in result.stdout
    assert "convert   done" in result.stdout and "csim      done" in result.stdout
    manifest = build.manifest
    assert manifest["build_id"] != old_id and manifest["settings"]["reuse_factor"] == 256
    assert manifest["input_type"] == "ap_fixed<16,2>"
    X = np.load(build.package_dir / "X_test.npy")
    outside = [int(i) for i in np.flatnonzero(((X < -2) | (X >= 2)).any(axis=1))]
    assert outside, "the test set no longer reaches beyond [-2, 2): choose a narrower type"
    named = ", ".join(map(str, outside))
    assert f"{len(outside)} of {len(X)} test inputs hold values outside ap_fixed<16,2>'s range [-2, 2): " \
        f"samples {named}; the IP wraps them" in result.stdout
    assert "ReuseFactor 256" in (build.output_dir / "hls4ml_config.yml").read_text().replace(":", "")
    # the other build's hardware result is kept, but never looks current
    assert not (build.package_dir / "y_hw.npy").exists()
    moved = build.package_dir / "previous" / old_id
    assert (moved / "y_hw.npy").is_file() and (moved / "y_hw.json").is_file()
    assert f"previous/{old_id}" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "-3"], "--epochs must be 1 to 100000"),
        (["--epochs", "100001"], "--epochs must be 1 to 100000"),
        (["--rtl-random", "-1"], "--rtl-random must be 0 to 100000"),
        (["--rtl-random", "1000000000"], "--rtl-random must be 0 to 100000"),
        (["--sparsity", "1.0"], "--sparsity must be in [0, 1)"),
        (["--sparsity", "-0.5"], "--sparsity must be in [0, 1)"),
        (["--lr", "0"], "--lr must be positive"),
        (["--reuse-factor", "0"], "--reuse-factor must be at least 1"),
        (["--board", "pynq-z3"], "unknown board 'pynq-z3'"),
        (["--recipe", "fast"], "invalid choice: 'fast'"),
        (["--epochs", "ten"], "invalid int value: 'ten'"),
        (["--from", "package", "--to", "train"], "--from package comes after --to train"),
        (["--from", "convert"], "--from convert needs the outputs of step 'data'"),
        (["--from", "deploy"], "runs no step (deploy: no board named (add --host))"),
        (["--lr", "inf"], "--lr must be positive and finite"),
        (["--lr", "nan"], "--lr must be positive and finite"),
        (["--lr", "1e39"], "--lr must be positive and finite"),
        (["--epochs", "inf"], "invalid int value: 'inf'"),
        (["--sparsity", "nan"], "--sparsity must be in [0, 1)"),
        (["--sparsity", "inf"], "--sparsity must be in [0, 1)"),
        (["--reuse-factor", "65537"], "at most 65536"),
        (["--reuse-factor", "1000000000000000000000"], "at most 65536"),
        (["--seed", "4294967296"], "--seed must be an integer from 0 to 4294967295"),
        (["--default-precision", "ap_fixed<>"], "--default-precision must be a fixed-point type"),
        (["--default-precision", "ap_fixed<16,6"], "--default-precision must be a fixed-point type"),
        (["--default-precision", "ap_fixed<0,0>"], "--default-precision must be a fixed-point type"),
        (["--default-precision", "ap_fixed<16,6,AP_RND,AP_SAT,17>"], "--default-precision must be"),
        (["--exp-table-t", "ap_fixed<18>"], "--exp-table-t must be a fixed-point type"),
        (["--inv-table-t", "float"], "--inv-table-t must be a fixed-point type"),
        (["--board", "zcu102"], "unknown board 'zcu102' for this tool: it builds end to end only for pynq-z2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    import BuildModel as buildmodel

    monkeypatch.chdir(tmp_path)
    assert buildmodel.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "package").exists()
    assert not (tmp_path / "hls4ml_prj_pynq" / "pipeline").exists()  # refused before any work


def test_bad_input_from_the_command_line(tmp_path):
    for args, message in ((["--lr", "inf"], "--lr must be positive and finite"),
                          (["--default-precision", "ap_fixed<>"], "--default-precision must be a fixed-point type")):
        result = run_buildmodel(*args, cwd=tmp_path)
        assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_buildmodel("--output-dir", str(blocker / "prj"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot write to") and len(result.stderr.strip().splitlines()) == 1


def test_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    foreign = tmp_path / "package"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    result = run_buildmodel("--to", "package", cwd=tmp_path)
    assert result.returncode == 2 and "not a package of this tool" in result.stderr
    assert (foreign / "thesis.tex").read_text() == "precious"
    assert not (tmp_path / "hls4ml_prj_pynq" / "pipeline" / "weights.npz").exists()  # refused before training


def _stand_in_vivado(folder: Path, succeed: bool) -> Path:
    """Both commands hls4ml calls; the 'vivado' one makes the files a real build makes, or fails."""
    folder.mkdir()
    (folder / "vivado_hls").write_text("#!/bin/sh\necho 'stand-in vivado_hls' > vivado_hls.log\n")
    make_files = (
        "mkdir -p myproject_vivado_accelerator/project_1.runs/impl_1 "
        "myproject_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/hw_handoff\n"
        "printf 'BIT' > myproject_vivado_accelerator/project_1.runs/impl_1/design_1_wrapper.bit\n"
        "printf '<HWH/>' > myproject_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/hw_handoff/design_1.hwh\n"
    )
    fail = "echo 'ERROR: [Place 30-640] Place Check: not enough LUTs' > vivado.log\nexit 1\n"
    (folder / "vivado").write_text("#!/bin/sh\n" + (make_files if succeed else fail))
    for tool in ("vivado_hls", "vivado"):
        (folder / tool).chmod(stat.S_IRWXU)
    return folder


def test_bitstream_with_a_successful_vivado(built: Build, tmp_path):
    build = _copy_build(built, tmp_path)
    tools = _stand_in_vivado(tmp_path / "vivado-ok", succeed=True)
    env = {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    result = run_buildmodel("--from", "bitstream", "--to", "package", cwd=build.root, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    manifest = build.manifest
    assert manifest["bitstream_built"] is True
    assert (build.package_dir / "hls4ml_nn.bit").read_bytes() == b"BIT"
    assert (build.package_dir / "hls4ml_nn.hwh").read_bytes() == b"<HWH/>"
    assert {"hls4ml_nn.bit", "hls4ml_nn.hwh"} <= set(manifest["files"])
    assert "bitstream    built by Vivado" in result.stdout


def test_bitstream_with_a_failing_vivado_names_the_log(built: Build, tmp_path):
    build = _copy_build(built, tmp_path)
    before = _package_digests(build.package_dir)
    tools = _stand_in_vivado(tmp_path / "vivado-bad", succeed=False)
    env = {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    result = run_buildmodel("--from", "bitstream", cwd=build.root, env=env)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "Vivado finished without design_1_wrapper.bit" in line and "vivado.log" in line
    assert _package_digests(build.package_dir) == before  # the previous package is untouched


def test_default_build_keeps_its_id(built: Build):
    """README's promise: the default build (recipe default, seed 0) has the id it always had."""
    assert built.manifest["build_id"] == "4a2fdc9db9370b02", built.manifest["build_id_parts"]


def test_settings_round_trip_through_the_manifest(built: Build):
    from iris_fpga.config import BuildConfig

    settings = built.manifest["settings"]
    assert BuildConfig.from_dict(settings).to_dict() == settings


def test_on_target_in_package_is_the_repositorys(built: Build):
    assert (built.package_dir / "on_target.py").read_bytes() == (REPO / "on_target.py").read_bytes()


def test_package_describes_itself(built: Build):
    from iris_fpga.hls import board_part

    manifest = built.manifest
    X = np.load(built.package_dir / "X_test.npy", allow_pickle=False)
    y = np.load(built.package_dir / "y_test.npy", allow_pickle=False)
    assert manifest["accelerator"] == manifest["settings"]["accelerator"] == "hls"
    assert manifest["part"] == board_part(manifest["settings"]["board"]) and "7z020" in manifest["part"]
    assert (manifest["n_in"], manifest["n_out"]) == (X.shape[1], y.shape[1])
    # the hls4ml input layer's type is the model's default precision, written as the C++ type
    assert manifest["input_type"] == manifest["settings"]["default_precision"]
    emulated = json.loads((built.package_dir / "emulation" / "accelerator.json").read_text())
    assert (emulated["n_in"], emulated["n_out"]) == (manifest["n_in"], manifest["n_out"])  # from the IP's header


def test_build_id_parts_recombine_into_the_build_id(built: Build):
    from iris_fpga.flow.records import BUILD_ID_PARTS, build_id

    manifest = built.manifest
    parts = manifest["build_id_parts"]
    assert set(parts) == set(BUILD_ID_PARTS)
    assert parts["weights_sha256"] == sha256_file(built.output_dir / "pipeline" / "weights.npz")
    assert parts["hls_config_sha256"] == sha256_file(built.output_dir / "pipeline" / "hls_config.json")
    assert {**parts["versions"], "g++": parts["compiler"]} == manifest["versions"]
    assert build_id(parts) == manifest["build_id"]
    assert build_id({**parts, "compiler": "g++ 0.0"}) != manifest["build_id"]


def test_inputs_of_the_test_set_fit_the_input_type(built: Build):
    state = json.loads((built.output_dir / "pipeline" / "state.json").read_text())
    assert state["csim"]["result"]["inputs_out_of_range"] == []
    assert "outside" not in built.stdout


def test_input_range_of_ap_fixed_16_6():
    from iris_fpga.flow.checks import input_range, out_of_range
    from iris_fpga.datapath.fixedpoint import FixedType

    t = FixedType(signed=True, width=16, integer=6)  # ap_fixed<16,6>: truncates, wraps
    assert input_range(t) == (-32.0, 32.0, True, False) and str(input_range(t)) == "[-32, 32)"
    x = np.array([[0, 1, -1, 3], [-32, 31.999, 0, 0], [32, 0, 0, 0], [0, -32.001, 0, 0],
                  [np.nan, 0, 0, 0], [0, 0, 0, -np.inf]])
    assert out_of_range(x, t) == [2, 3, 4, 5]
    assert out_of_range(x[:2].astype(np.float32), t) == []


@settings(max_examples=300, deadline=None)
@given(signed=st.booleans(), width=st.integers(2, 24), integer=st.integers(-4, 30),
       saturation=st.sampled_from(["WRAP", "SAT"]), rounding=st.sampled_from(["TRN", "RND", "RND_CONV", "RND_MIN_INF"]),
       edge=st.sampled_from([None, "low", "high"]),
       quarter_steps=st.one_of(st.integers(-8, 8), st.integers(-(1 << 46), 1 << 46)))
def test_out_of_range_means_the_cast_changes_the_value(signed, width, integer, saturation, rounding, edge,
                                                       quarter_steps):
    """Counted exactly when ap_fixed's cast (FixedType, bit-exact with the C-simulation, in the rounding
    modes the rtl datapath takes) wraps or saturates; every mode: tests/test_input_range.py."""
    from iris_fpga.flow.checks import out_of_range
    from iris_fpga.datapath.fixedpoint import FixedType

    t = FixedType(signed=signed, width=width, integer=integer, rounding=rounding, saturation=saturation)
    start = {None: 0, "low": t.code_min, "high": t.code_max + 1}[edge] * 2.0 ** -t.frac
    value = start + quarter_steps * 2.0 ** -(t.frac + 2)  # quarter steps from an edge
    wide = FixedType(signed=True, width=width + 24, integer=integer + 24, rounding=rounding)  # far wider range
    assume(abs(value) < 2.0 ** (integer + 20))
    held = t.values(t.quantize_float(value)) == wide.values(wide.quantize_float(value))
    assert (out_of_range(np.array([[value]]), t) == []) == bool(held)


def _parses(*argv: str) -> bool:
    """True when BuildModel accepts the options; a refusal must be one line with exit code 2."""
    from iris_fpga.flow.cli import parse_args
    from iris_fpga.errors import ExitCode, ToolError

    try:
        parse_args(list(argv))
    except ToolError as exc:
        assert exc.code == ExitCode.USAGE and "\n" not in str(exc)
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(lr=st.floats(allow_nan=True, allow_infinity=True), sparsity=st.floats(allow_nan=True, allow_infinity=True))
def test_lr_and_sparsity_accepted_exactly_when_sensible(lr, sparsity):
    assert _parses("--lr", repr(lr)) == (0 < lr <= float(np.finfo(np.float32).max))
    assert _parses("--sparsity", repr(sparsity)) == (0 <= sparsity < 1)


@settings(max_examples=200, deadline=None)
@given(reuse=st.one_of(st.integers(-10, 70000), st.integers(-(10**30), 10**30)))
def test_reuse_factor_accepted_exactly_from_1_to_65536(reuse):
    assert _parses("--reuse-factor", str(reuse)) == (1 <= reuse <= 65536)


FIXED_NAMES = ("ap_fixed", "ap_ufixed", "fixed", "ufixed")
ROUNDING = ("AP_TRN", "TRN_ZERO", "AP_RND", "RND_CONV", "AP_RND_MIN_INF")
SATURATION = ("AP_WRAP", "AP_SAT", "SAT_SYM")


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(FIXED_NAMES + ("ap_int", "ac_fixed", "float", "ap_fixed_")),
       width=st.integers(-3, 1100), integer=st.integers(-1100, 1100),
       rounding=st.sampled_from(ROUNDING + ("AP_FOO", "rnd", "")), saturation=st.sampled_from(SATURATION + ("AP_WRAP_SM", "7")),
       sat_bits=st.integers(0, 1100), extra=st.integers(0, 3), closed=st.booleans())
def test_fixed_point_types_accepted_exactly_when_well_formed(name, width, integer, rounding, saturation, sat_bits,
                                                             extra, closed):
    """Accepted exactly when the type is well formed, and then hls4ml's own parser reads the same type."""
    from hls4ml.backends.fpga.fpga_backend import FPGABackend
    from hls4ml.model.types import FixedPrecisionType

    fields = [str(width), str(integer), rounding, saturation, str(sat_bits)][: 2 + extra]
    text = f"{name}<{','.join(fields)}" + (">" if closed else "")
    well_formed = (name in FIXED_NAMES and closed and 1 <= width <= 1024 and abs(integer) <= 1024
                   and (extra < 1 or rounding in ROUNDING) and (extra < 2 or saturation in SATURATION)
                   and (extra < 3 or sat_bits <= width))
    assert _parses("--default-precision", text) == well_formed, text
    if well_formed:
        parsed = FPGABackend.convert_precision_string(text)
        assert isinstance(parsed, FixedPrecisionType)
        assert (parsed.width, parsed.integer, parsed.signed) == (width, integer, "u" not in name)


def test_help_states_the_limits(capsys):
    from iris_fpga.flow.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "1 to 65536" in text and "only pynq-z2 works end to end" in text


@pytest.mark.slow  # trains a network
def test_training_that_diverges_is_never_cached(tmp_path):
    """Non-finite weights (injected into the real training's result) stop the run before anything is kept."""
    inject = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "import numpy as np; import iris_fpga.model as m; real = m.train\n"
        "def train(*args):\n"
        "    model, history = real(*args)\n"
        "    w = model.get_layer('fc2').get_weights(); w[0][0, 0] = np.nan; model.get_layer('fc2').set_weights(w)\n"
        "    return model, history\n"
        "m.train = train\n"
        "import BuildModel; sys.exit(BuildModel.main(sys.argv[1:]))\n"
    )
    result = subprocess.run([sys.executable, "-c", inject, "--to", "train", "--epochs", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged: layer fc2 has non-finite weights") and "--lr" in line
    work = tmp_path / "hls4ml_prj_pynq" / "pipeline"
    assert "train" not in json.loads((work / "state.json").read_text()) and not (work / "weights.npz").exists()


# Settings that choose values or places but are not themselves inputs of any step's result.
NOT_AN_INPUT = {"recipe", "rtl", "output_dir", "package_dir", "csv"}  # csv: a path; its contents (csv_sha256) key the build


def _changed(config, name):
    value = getattr(config, name)
    if value is None:  # --cv-fold: off unless given
        return {"cv_fold": (1, 3), "csv": "other.csv", "target": "label", "csv_sha256": "0" * 64}[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return value[:-1]
    if isinstance(value, str):
        return {"board": "zcu102", "recipe": "article"}.get(name, value.replace("<1", "<2") if "<1" in value else value + "x")
    if isinstance(value, float):
        return value / 2
    return value + 1


def _dependents(*first: str) -> set[str]:
    """The cached steps whose key must change when the inputs of the steps ``first`` change."""
    from iris_fpga.flow.steps import STEPS

    out = set(first)
    for step in STEPS:  # the table's order puts every step after its upstream steps
        if out & set(step.upstream):
            out.add(step.name)
    return {step.name for step in STEPS if step.cached and step.name in out}


def test_the_table_declares_the_known_dataflow():
    assert _dependents("data") == {"data", "train", "convert", "profile", "csim", "rtl", "ip", "emulator", "bitstream"}
    assert _dependents("convert") == {"convert", "profile", "csim", "rtl", "ip", "emulator", "bitstream"}
    assert _dependents("csim") == {"csim", "rtl", "ip", "emulator", "bitstream"}  # the rtl bitstream: from the IP
    assert _dependents("rtl") == {"rtl", "ip", "emulator", "bitstream"}
    assert _dependents("ip") == {"ip", "emulator", "bitstream"}  # the emulated board runs the IP's Verilog
    assert _dependents("package") == set()


def test_every_setting_invalidates_exactly_the_steps_that_depend_on_it():
    import dataclasses

    from iris_fpga.flow.runner import BuildModel
    from iris_fpga.flow.steps import STEPS
    from iris_fpga.config import BuildConfig

    declared: dict[str, set[str]] = {}
    for step in STEPS:
        for name in step.settings:
            declared.setdefault(name, set()).add(step.name)
    fields = {f.name for f in dataclasses.fields(BuildConfig)}
    assert set(declared) | NOT_AN_INPUT == fields and not set(declared) & NOT_AN_INPUT
    base = BuildConfig()
    base_keys = BuildModel(base).keys()
    for name, steps in declared.items():
        keys = BuildModel(dataclasses.replace(base, **{name: _changed(base, name)})).keys()
        assert {step for step in keys if keys[step] != base_keys[step]} == _dependents(*steps), name
    for name in NOT_AN_INPUT:
        keys = BuildModel(dataclasses.replace(base, **{name: _changed(base, name)})).keys()
        assert keys == base_keys, name


def test_a_new_package_version_invalidates_its_steps():
    from iris_fpga.flow.steps import STEPS
    from iris_fpga.cache import cache_keys
    from iris_fpga.config import BuildConfig
    from iris_fpga.versions import versions_of

    names = {name for step in STEPS for name in step.versions}
    versions = versions_of(tuple(sorted(names)))
    base_keys = cache_keys(STEPS, BuildConfig(), versions)
    for name in names:
        keys = cache_keys(STEPS, BuildConfig(), {**versions, name: "9.9.9"})
        users = {step.name for step in STEPS if name in step.versions}
        assert {s for s in keys if keys[s] != base_keys[s]} == _dependents(*users), name
    keys = cache_keys(STEPS, BuildConfig(), {**versions, "hls4ml": "9.9.9"})
    assert {s for s in keys if keys[s] != base_keys[s]} == {"convert", "profile", "csim", "rtl", "ip", "emulator",
                                                            "bitstream"}


def test_cache_keys_need_no_tensorflow():
    code = ("import sys; from iris_fpga.flow.runner import BuildModel; from iris_fpga.config import BuildConfig; "
            "BuildModel(BuildConfig()).keys(); "
            "heavy = [m for m in ('tensorflow', 'tf_keras', 'hls4ml', 'qkeras') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


KEYS_OF_AN_RTL_BUILD = ("import json; from iris_fpga.config import BuildConfig; from iris_fpga.flow.runner import "
                        "BuildModel; print(json.dumps(BuildModel(BuildConfig(accelerator='rtl')).keys()))")


@pytest.mark.parametrize("edited, remade", [
    ("ip/casts.py", {"ip", "emulator", "bitstream"}),
    ("emulation/verilated_ip_harness.cpp", {"ip", "emulator", "bitstream"}),
    ("datapath/stages.py", {"rtl", "ip", "emulator", "bitstream"}),
])
def test_a_new_generator_remakes_what_it_generates_and_nothing_else(tmp_path, edited, remade):
    """Verilog made by an older version of this tool (before a `git pull`) is not reused by the new one."""
    shutil.copytree(REPO / "iris_fpga", tmp_path / "iris_fpga", ignore=shutil.ignore_patterns("__pycache__"))

    def keys() -> dict:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", KEYS_OF_AN_RTL_BUILD], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    before = keys()
    with open(tmp_path / "iris_fpga" / edited, "a") as source:
        source.write("\n// a later version\n" if edited.endswith(".cpp") else "\n# a later version\n")
    after = keys()
    assert {step for step in after if after[step] != before[step]} == remade


def test_another_vivado_rebuilds_the_bitstream_and_nothing_else(tmp_path, monkeypatch):
    """A bitstream made by one Vivado is not reused under another (a second install, an upgrade)."""
    from iris_fpga.config import BuildConfig
    from iris_fpga.flow.runner import BuildModel

    standin = Path(__file__).resolve().parent / "vivado_standin"
    installs = [tmp_path / "Xilinx" / "Vivado" / version / "bin" for version in ("2023.2", "2024.1")]
    for folder in installs:  # two installations side by side, each in its version's folder
        shutil.copytree(standin, folder)
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    keys = []
    for folder in (None, *installs, installs[0]):
        monkeypatch.setenv("PATH", os.pathsep.join(([str(folder)] if folder else []) + ["/usr/bin", "/bin"]))
        keys.append(BuildModel(BuildConfig(accelerator="rtl")).keys())
    for before, after in zip(keys, keys[1:3]):
        assert {step for step in after if after[step] != before[step]} == {"bitstream"}
    assert keys[3] == keys[1]  # the same Vivado again: the bitstream is reused
