"""The workstation pipeline, run for real: training, hls4ml conversion, g++ C-simulation, package."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

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
    result = run_buildmodel("--to", "package", "--reuse-factor", "256", cwd=build.root)
    assert result.returncode == 0, result.stderr
    assert "data      reused" in result.stdout and "train     reused" in result.stdout
    assert "convert   done" in result.stdout and "csim      done" in result.stdout
    manifest = build.manifest
    assert manifest["build_id"] != old_id and manifest["settings"]["reuse_factor"] == 256
    assert "ReuseFactor 256" in (build.output_dir / "hls4ml_config.yml").read_text().replace(":", "")
    # the other build's hardware result is kept, but never looks current
    assert not (build.package_dir / "y_hw.npy").exists()
    moved = build.package_dir / "previous" / old_id
    assert (moved / "y_hw.npy").is_file() and (moved / "y_hw.json").is_file()
    assert f"previous/{old_id}" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "-3"], "--epochs must be at least 1"),
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
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = run_buildmodel(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "package").exists()


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


def test_settings_round_trip_through_the_manifest(built: Build):
    from iris_fpga.config import BuildConfig

    settings = built.manifest["settings"]
    assert BuildConfig.from_dict(settings).to_dict() == settings


def test_on_target_in_package_is_the_repositorys(built: Build):
    assert (built.package_dir / "on_target.py").read_bytes() == (REPO / "on_target.py").read_bytes()


# Which step each setting feeds first; every later step in the chain depends on it too.
FIRST_STEP = {
    "test_size": "data", "split_random_state": "data",
    "seed": "train", "epochs": "train", "lr": "train", "batch_size": "train", "validation_split": "train",
    "sparsity": "train", "pruning_begin_step": "train", "pruning_frequency": "train",
    "hidden": "train", "weight_bits": "train", "activation_bits": "train",
    "board": "convert", "reuse_factor": "convert", "default_precision": "convert",
    "exp_table_t": "convert", "inv_table_t": "convert",
    "rtl_random_samples": "csim", "latency_cutoff": "rtl",
}
# Settings that choose values or places but are not themselves inputs of any step's result.
NOT_AN_INPUT = {"recipe", "rtl", "output_dir", "package_dir"}
CHAIN = ("data", "train", "convert", "csim", "rtl")


def _changed(config, name):
    value = getattr(config, name)
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return value[:-1]
    if isinstance(value, str):
        return {"board": "zcu102", "recipe": "article"}.get(name, value.replace("<1", "<2") if "<1" in value else value + "x")
    if isinstance(value, float):
        return value / 2
    return value + 1


def _dependents(first: str) -> set[str]:
    steps = set(CHAIN[CHAIN.index(first):])
    return steps | ({"bitstream"} if steps & {"data", "train", "convert"} else set())


def test_every_setting_invalidates_exactly_the_steps_that_depend_on_it():
    import dataclasses

    from BuildModel import BuildModel
    from iris_fpga.config import BuildConfig

    base = BuildConfig()
    assert {f.name for f in dataclasses.fields(BuildConfig)} == set(FIRST_STEP) | NOT_AN_INPUT
    base_keys = BuildModel(base).keys()
    for name, first in FIRST_STEP.items():
        keys = BuildModel(dataclasses.replace(base, **{name: _changed(base, name)})).keys()
        changed = {step for step in keys if keys[step] != base_keys[step]}
        assert changed == _dependents(first), name
    for name in NOT_AN_INPUT:
        keys = BuildModel(dataclasses.replace(base, **{name: _changed(base, name)})).keys()
        assert keys == base_keys, name


def test_a_new_package_version_invalidates_its_steps(monkeypatch):
    import BuildModel as buildmodel

    base_keys = buildmodel.BuildModel(buildmodel.BuildConfig()).keys()
    real = buildmodel.package_versions

    def newer_hls4ml(*names):
        return {**real(*names), "hls4ml": "9.9.9"}

    monkeypatch.setattr(buildmodel, "package_versions", newer_hls4ml)
    keys = buildmodel.BuildModel(buildmodel.BuildConfig()).keys()
    assert {s for s in keys if keys[s] != base_keys[s]} == _dependents("convert")
