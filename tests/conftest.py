"""One real build shared by the whole session: training, hls4ml conversion and g++ compilation
are too slow to repeat per test, and agreement checks need a trained model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass
class Build:
    root: Path
    output_dir: Path
    package_dir: Path
    stdout: str

    @property
    def manifest(self) -> dict:
        return json.loads((self.package_dir / "manifest.json").read_text())


def run_buildmodel(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python BuildModel.py ARGS`` as a user runs it."""
    return subprocess.run(
        [PYTHON, str(REPO / "BuildModel.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Build:
    """The default recipe, seed 0, up to the package (no Vivado on this machine)."""
    root = tmp_path_factory.mktemp("build")
    result = run_buildmodel("--to", "package", cwd=root, env={"PATH": _path_without_vivado()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Build(root, root / "hls4ml_prj_pynq", root / "package", result.stdout)


# The tests' small network: 16-8-3, 4-bit weights, 3-bit ReLUs (fast to build, and it no longer classifies well).
SMALL_ARGS = ("--hidden", "16,8", "--weight-bits", "4", "--activation-bits", "3")


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> Build:
    """The small network with --rtl, up to the package: built once for every test that needs it."""
    root = tmp_path_factory.mktemp("small")
    result = run_buildmodel(*SMALL_ARGS, "--rtl", "--to", "package", cwd=root, env={"PATH": _path_without_vivado()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Build(root, root / "hls4ml_prj_pynq", root / "package", result.stdout)


@pytest.fixture(scope="session")
def small_rtl_build(small_build: Build, tmp_path_factory) -> Build:
    """The small network with --accelerator rtl: a copy of ``small_build`` whose steps up to rtl are
    reused (their keys do not hold the accelerator), then the ip, emulator and package steps run."""
    root = tmp_path_factory.mktemp("small-rtl") / "build"
    shutil.copytree(small_build.root, root, symlinks=True)
    result = run_buildmodel(*SMALL_ARGS, "--accelerator", "rtl", "--to", "package", cwd=root,
                            env={"PATH": _path_without_vivado()}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Build(root, root / "hls4ml_prj_pynq", root / "package", result.stdout)


def _path_without_vivado() -> str:
    return os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep)
        if not (Path(p) / "vivado_hls").exists()
    )


# -- markers: what a test needs, so a developer can run the fast part alone ---------------------
# A test is marked by the fixtures it uses (directly or through other fixtures): adding a test that
# uses one of these fixtures marks it without further thought; a test that is slow by itself (it
# trains, say) carries @pytest.mark.slow. `pytest -m "not slow"` is the fast part; `make test`
# (and CI) runs everything.
FIXTURE_MARKERS = {
    "built": ("slow",),  # the session's default build: training, hls4ml, g++
    "source": ("slow",),  # test_on_target's way to the session's build (through getfixturevalue)
    "small_build": ("slow", "verilator"),  # the 16-8-3 build with --rtl
    "small_rtl_build": ("slow", "verilator"),  # the same with --accelerator rtl
    "dataset_build": ("slow", "verilator"),  # test_datasets_on_chip's wine and CSV builds with --accelerator rtl
    "csim_build": ("slow",),  # test_datasets_on_chip's breast cancer and digits builds, --to csim
    "login": ("slow", "sshd"),  # a throwaway login on a real sshd on 127.0.0.1
    "hostile": ("slow", "sshd"),  # test_hostile_board: a hostile board behind a real sshd
    "scheduler": ("slow", "dask"),  # a real `dask scheduler` and two workers
    "chromium": ("slow", "chromium"),  # headless Chromium renders the validation page
}


# -- parallel runs (`make test` runs two pytest-xdist workers with --dist loadgroup) -------------
# Each worker has its own session fixtures. The cheap default build (``built``) is made by each
# worker that needs it, so its many tests spread over both; the tests of a costly or stateful
# fixture stay together on one worker, so it is made once: the first group a test's fixtures name.
FIXTURE_GROUPS = {
    "small_build": "small",  # the 16-8-3 IP: its ip step and netlist simulation are the suite's longest build
    "small_rtl_build": "small",
    "dataset_build": "datasets",
    "csim_build": "datasets",
    "hostile": "hostile-board",  # one sshd with its hostile ForceCommand
    "scheduler": "dask",  # one Dask scheduler and its two workers
    "chromium": "chromium",  # one headless Chromium
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        needs = {marker for name in names for marker in FIXTURE_MARKERS.get(name, ())}
        for marker in sorted(needs):
            item.add_marker(marker)
        group = next((FIXTURE_GROUPS[name] for name in FIXTURE_GROUPS if name in names), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
