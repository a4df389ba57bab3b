"""The emulated board carries its own design (issue 15): a package's ``--emulate`` computes with
the package's own library and weights, wherever the package goes and whatever happens to the
project it came from; it refuses a machine its library cannot run on; and slow is not broken.

Every package here is a copy of the session's real build (``built``); one test rebuilds the
project with another seed (the only extra build)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import Build, run_buildmodel
from iris_fpga.contract import EMULATION_DIR
from iris_fpga.emulation import stage
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import sha256_file

PYTHON = sys.executable


@pytest.fixture
def package(tmp_path, built: Build) -> Path:
    """A copy of the session's package in a folder of its own."""
    copy = tmp_path / "elsewhere" / "package"
    shutil.copytree(built.package_dir, copy)
    return copy


def emulate(pkg: Path, *args: str, setup: str = "", timeout: int = 120) -> subprocess.CompletedProcess:
    """``python on_target.py --emulate ARGS`` in ``pkg``; ``setup`` runs first (to change a limit)."""
    script = f"import sys, platform\nsys.path.insert(0, '.')\nimport on_target\n{setup}\n" \
             "sys.exit(on_target.main(sys.argv[1:]))"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYNQ_")}
    return subprocess.run([PYTHON, "-B", "-c", script, "--emulate", *args], cwd=pkg, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def failed(result, code: int, pkg: Path, output: str = "y_hw.npy") -> str:
    """The exit code, one line on stderr, no traceback, no result; returns the line."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (pkg / output).exists() and not (pkg / output).with_suffix(".json").exists()
    return lines[0]


def emulated_equals_csim(pkg: Path) -> bool:
    return np.array_equal(np.load(pkg / "y_hw.npy"), np.load(pkg / "y_hls.npy"))


@contextmanager
def moved_away(folder: Path):
    """``folder`` renamed for the duration (a tmp build folder of this session), then put back."""
    away = folder.with_name(folder.name + "-moved-away")
    folder.rename(away)
    try:
        yield
    finally:
        away.rename(folder)


# --------------------------------------------------------------------------- self-contained


def test_a_copied_package_runs_with_the_build_folder_gone(package, built: Build):
    root = str(built.root).encode()
    for path in (package / EMULATION_DIR).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert root not in data and b"/firmware/weights" not in data, f"{path} points outside the package"
    with moved_away(built.root):
        assert not built.output_dir.exists()
        result = ok(emulate(package))
    assert emulated_equals_csim(package)
    assert json.loads((package / "y_hw.json").read_text())["build_id"] == built.manifest["build_id"]
    assert "saved y_hw.npy" in result.stdout


def test_the_manifest_covers_everything_the_emulation_computes_with(package):
    manifest = json.loads((package / "manifest.json").read_text())
    emulation = package / EMULATION_DIR
    present = {p.relative_to(package).as_posix() for p in emulation.rglob("*") if p.is_file()}
    record = json.loads((emulation / "accelerator.json").read_text())
    weights = {f"{EMULATION_DIR}/{name}" for name in record["weights"]}
    assert weights and weights <= present
    assert f"{EMULATION_DIR}/{record['library']}" in present
    for name in present:
        assert manifest["files"].get(name) == sha256_file(package / name), name

    # one weight changed, as a rebuilt project would change it: refused, not computed with
    name = sorted(record["weights"])[0]
    values = (emulation / name).read_text().split(",")
    values[0] = "0.5" if values[0].strip() != "0.5" else "0.25"
    (emulation / name).write_text(",".join(values))
    line = failed(emulate(package), ExitCode.USAGE, package)
    assert f"{EMULATION_DIR}/{name} is not the file manifest.json lists" in line


def test_a_library_that_reads_the_project_is_never_packaged(tmp_path, built: Build):
    """A library of an older build carries the absolute path to the project's weights: refused."""
    project = tmp_path / "prj"
    shutil.copytree(built.output_dir / "firmware", project / "firmware",
                    ignore=shutil.ignore_patterns("ap_types", "nnet_utils"))
    library = next((project / "firmware").glob("myproject-*.so"))
    library.write_bytes(library.read_bytes() + f'"{built.output_dir}/firmware/weights"'.encode())
    with pytest.raises(ToolError, match=r"absolute path compiled in .* --from csim") as raised:
        stage(tmp_path / "package", project)
    assert raised.value.code == ExitCode.USAGE and not (tmp_path / "package").exists()


def test_a_missing_weights_file_is_reported_not_fatal(package):
    """The library would print an error and end the process; the stand-in says which file is gone."""
    record = json.loads((package / EMULATION_DIR / "accelerator.json").read_text())
    (package / EMULATION_DIR / record["weights"][-1]).unlink()
    line = failed(emulate(package), ExitCode.BOARD, package)
    assert f"weights file {package / EMULATION_DIR / record['weights'][-1]} is missing" in line


def test_rebuilding_in_place_with_another_seed_leaves_an_older_package_alone(package, built: Build, tmp_path):
    """Package A (seed 0) copied aside; the project rebuilt in the same output folder with seed 1."""
    snapshot = tmp_path / "session-project"
    shutil.copytree(built.output_dir, snapshot, symlinks=True)
    try:
        result = run_buildmodel("--seed", "1", "--to", "csim", cwd=built.root)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        y_seed1 = np.load(built.output_dir / "pipeline" / "staging" / "y_hls.npy")
        assert not np.array_equal(y_seed1, np.load(package / "y_hls.npy")), "seed 1 computes what seed 0 does"
        ok(emulate(package))
    finally:
        shutil.rmtree(built.output_dir)
        snapshot.rename(built.output_dir)
    assert emulated_equals_csim(package)


# --------------------------------------------------------------------------- the machine


@pytest.mark.parametrize("machine", ["armv7l", "aarch64"])
def test_emulate_refuses_a_machine_its_library_is_not_for(package, machine):
    """A PYNQ board is ARM; the C-simulation library was compiled on the x86-64 workstation."""
    line = failed(emulate(package, setup=f"platform.machine = lambda: {machine!r}"), ExitCode.USAGE, package)
    assert f"compiled for x86-64, which this {machine} machine cannot load" in line
    assert "sudo python3 on_target.py" in line


# --------------------------------------------------------------------------- slow is not broken

LARGE = 12_000  # samples: about half a second of C-simulation here, in three transfers


def large_input(pkg: Path) -> np.ndarray:
    x = np.load(pkg / "X_test.npy")
    np.save(pkg / "large.npy", np.tile(x, (LARGE // len(x), 1)))
    return np.tile(np.load(pkg / "y_hls.npy"), (LARGE // len(x), 1))


def test_a_large_input_slower_than_the_board_deadline_is_slow_not_broken(package):
    """The board's deadline (--timeout 0.01 s, its per-sample allowance set to 0) is far shorter
    than the C-simulation needs: the run completes, exact, and says plainly it was slow."""
    expected = large_input(package)
    rows = LARGE // 3
    result = ok(emulate(package, "--input", "large.npy", "--output", "large_hw.npy", "--timeout", "0.01",
                        "--dma-limit", str(rows * 16), setup="on_target.SECONDS_PER_SAMPLE = 0"))
    assert np.array_equal(np.load(package / "large_hw.npy"), expected)
    assert "slower than the FPGA; that is not a fault" in result.stdout
    assert "reload the overlay" not in result.stdout + result.stderr
    record = json.loads((package / "large_hw.json").read_text())
    slow = record["emulation"]["transfers_slower_than_board_deadline"]
    assert [entry["samples"] for entry in slow] == [rows] * 3
    assert all(entry["seconds"] > entry["board_deadline_s"] for entry in slow)


def test_emulation_past_its_own_deadline_says_it_was_slow(package):
    """With the emulation's own pace set to 0 the deadline is --timeout alone: the error blames speed."""
    large_input(package)
    line = failed(emulate(package, "--input", "large.npy", "--output", "large_hw.npy", "--timeout", "0.01",
                          setup="on_target.EMULATED_SECONDS_PER_SAMPLE = 0"), ExitCode.BOARD, package, "large_hw.npy")
    assert "did not finish within 0.01 s" in line and "not a board fault" in line
    assert "reload the overlay" not in line


def test_a_large_input_within_the_emulations_own_pace_just_runs(package):
    """Default limits: the large input in one transfer, the emulation's deadline, no slow note needed
    unless this computer was slower than the board's 50 us per sample."""
    expected = large_input(package)
    result = ok(emulate(package, "--input", "large.npy", "--output", "large_hw.npy"))
    assert np.array_equal(np.load(package / "large_hw.npy"), expected)
    record = json.loads((package / "large_hw.json").read_text())
    assert record["transfers_per_batch"] == 1
    slow = record["emulation"]["transfers_slower_than_board_deadline"]
    assert bool(slow) == ("slower than the FPGA" in result.stdout)
