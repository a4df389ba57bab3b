"""The emulated board runs the RTL (issue 18): for an ``rtl`` package, ``on_target.py --emulate`` drives
the IP's own Verilog, Verilated into a library in ``package/emulation/``, through the unmodified
hls4ml driver; outputs equal ``y_hls.npy`` exactly, the failure modes end as a board's would (never
a hang), and deploy runs it on the loopback host.

One real ``--accelerator rtl`` build per module, of the tests' small network (16-8-3, 4/3 bits):
every step up to the package, the ip step's cocotb verification and the emulator step included."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SMALL_ARGS, Build, _path_without_vivado, run_buildmodel
from iris_fpga.emulation.verilated_ip import LIBRARY_NAME, verilog_sha256
from iris_fpga.errors import ExitCode
from iris_fpga.fileio import sha256_file
from test_deploy import _run_args, board, known_hosts, login, remote_state, run_deploy  # noqa: F401 (fixtures)
from test_emulation import failed, moved_away, ok

PYTHON = sys.executable
RTL_ARGS = (*SMALL_ARGS, "--accelerator", "rtl", "--to", "package")


@pytest.fixture(scope="module")
def rtl_build(small_rtl_build: Build) -> Build:
    """conftest's 16-8-3 network with --accelerator rtl, up to the package."""
    return small_rtl_build


@pytest.fixture
def package(tmp_path, rtl_build: Build) -> Path:
    copy = tmp_path / "elsewhere" / "package"
    shutil.copytree(rtl_build.package_dir, copy)
    return copy


def emulate(pkg: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python on_target.py --emulate ARGS`` in ``pkg``, as a user runs it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYNQ_")}
    return subprocess.run([PYTHON, "on_target.py", "--emulate", *args], cwd=pkg, env={**environment, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def record(pkg: Path) -> dict:
    return json.loads((pkg / "y_hw.json").read_text())


# --------------------------------------------------------------------------- the RTL, wherever the package goes


def test_a_copied_rtl_package_runs_the_verilog_with_the_build_folder_gone(package, rtl_build: Build):
    emulation = package / "emulation"
    assert sorted(p.name for p in emulation.iterdir()) == ["accelerator.json", LIBRARY_NAME, "pynq"]
    root = str(rtl_build.root).encode()
    assert not any(root in p.read_bytes() for p in emulation.rglob("*") if p.is_file())
    with moved_away(rtl_build.root):
        result = ok(emulate(package))
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    assert "Verilated" in result.stdout
    hw = record(package)
    assert hw["mode"] == "emulation" and hw["emulated"] == "rtl"
    assert hw["build_id"] == rtl_build.manifest["build_id"]
    samples = len(np.load(package / "X_test.npy"))
    # the 32-bit stream takes 4 cycles a sample; the IP's latency and the handshakes add a little
    assert 4.0 < hw["ip_cycles_per_sample"] < 4.0 + 40 / samples
    at_100mhz = hw["ip_at_100mhz"]
    assert at_100mhz["samples_per_s"] == pytest.approx(100e6 / hw["ip_cycles_per_sample"], rel=1e-4)
    assert "emulation of the RTL" in at_100mhz["what"]
    report = subprocess.run([PYTHON, str(Path(__file__).resolve().parents[1] / "utilities" / "validate_model.py"),
                             str(package), "--min-accuracy", "0"], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr
    assert "Verilated and run clock by clock" in report.stdout  # validation says what the emulated board ran
    assert "PASS  hardware vs HLS C-sim classes" in report.stdout


def test_the_library_carries_the_sha256_of_the_ip_verilog(package, rtl_build: Build):
    state = json.loads((rtl_build.output_dir / "pipeline" / "state.json").read_text())
    ip = state["ip"]["result"]["ip"]
    want = verilog_sha256([rtl_build.output_dir / "ip" / name for name in ip["verilog"]])
    manifest = json.loads((package / "manifest.json").read_text())
    accelerator = json.loads((package / "emulation" / "accelerator.json").read_text())
    assert manifest["accelerator"] == "rtl" and manifest["ip_verilog_sha256"] == want
    assert accelerator["emulated"] == "rtl" and accelerator["verilog_sha256"] == want


def test_random_pauses_change_the_cycles_not_the_outputs(package):
    ok(emulate(package))
    steady = record(package)["ip_cycles_per_sample"]
    ok(emulate(package, "--repeat", "2", env={"PYNQ_EMULATION_PAUSES": "7"}))
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    paused = record(package)
    assert paused["ip_cycles_per_sample"] > steady * 1.3 and "seed 7" in paused["ip_at_100mhz"]["what"]


@pytest.mark.parametrize("field, value, fragment", [
    ("ip_verilog_sha256", "0" * 64, "built from other Verilog"),
    ("accelerator", "hls", "emulates rtl"),
])
def test_a_manifest_naming_another_ip_is_refused(package, field, value, fragment):
    manifest = json.loads((package / "manifest.json").read_text())
    manifest[field] = value
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert fragment in failed(emulate(package), ExitCode.USAGE, package)


def test_an_unchanged_rerun_reuses_the_library(rtl_build: Build):
    library = rtl_build.output_dir / "emulator" / LIBRARY_NAME
    before = library.stat().st_mtime_ns
    result = run_buildmodel(*RTL_ARGS, cwd=rtl_build.root, env={"PATH": _path_without_vivado()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "emulator  reused" in result.stdout
    assert library.stat().st_mtime_ns == before


# --------------------------------------------------------------------------- failure modes, as a board's


def test_a_partial_sample_is_a_timeout_of_the_ip_not_a_hang(package):
    """on_target.py believing in 3 features: the IP waits for the 4th word of the last sample."""
    np.save(package / "three.npy", np.load(package / "X_test.npy")[:, :3].copy())
    _claim_inputs(package, 3)
    began = time.monotonic()
    line = failed(emulate(package, "--input", "three.npy"), ExitCode.BOARD, package)
    assert time.monotonic() - began < 30
    assert "timed out" in line and "not a whole number of 4-word input samples" in line


def test_a_receive_buffer_too_small_is_a_dma_error(package):
    """on_target.py believing in 5 features: the IP's packet outgrows the output buffer."""
    np.save(package / "five.npy", np.concatenate([np.load(package / "X_test.npy")] * 2, axis=1)[:, :5].copy())
    _claim_inputs(package, 5)
    line = failed(emulate(package, "--input", "five.npy"), ExitCode.BOARD, package)
    assert "DMA Internal Error" in line and "filled up without the IP's TLAST" in line


def _claim_inputs(package: Path, n_in: int) -> None:
    """A manifest that tells on_target.py the IP takes ``n_in`` words per sample (the IP takes 4)."""
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["n_in"] = n_in
    (package / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def driven(package, monkeypatch):
    """The unmodified driver on the emulated board running the RTL, in this process."""
    standin = _import(package / "emulation" / "pynq" / "__init__.py", "rtl_standin")
    monkeypatch.setitem(sys.modules, "pynq", standin)
    driver = _import(package / "axi_stream_driver.py", "rtl_driver")
    x = np.load(package / "X_test.npy")
    overlay = driver.NeuralNetworkOverlay(None, x.shape, (len(x), 3))
    return SimpleNamespace(standin=standin, overlay=overlay, x=x, y_hls=np.load(package / "y_hls.npy"),
                           dma=overlay.hier_0.axi_dma_0)


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_driver_goes_through_the_rtl_and_a_halted_dma_needs_a_reload(driven):
    assert driven.overlay.emulation_figures()["emulated"] == "rtl"
    assert np.array_equal(driven.overlay.predict(driven.x), driven.y_hls)
    buffer = driven.standin.allocate(shape=(10,), dtype=np.float32)  # 2.5 samples: the send itself completes
    buffer[:] = driven.x.ravel()[:10]
    driven.dma.sendchannel.transfer(buffer)
    driven.dma.sendchannel.wait()
    driven.dma.recvchannel.transfer(driven.overlay.output_buffer)
    with pytest.raises(driven.standin.DMATimeoutError, match="the IP waits for the rest of the last sample"):
        driven.dma.recvchannel.wait()
    with pytest.raises(driven.standin.EmulatedDMAError, match="timed out"):
        driven.dma.recvchannel.wait()  # halted until the overlay is loaded again
    driven.overlay.download()  # resets the DMA and the IP
    assert np.array_equal(driven.overlay.predict(driven.x), driven.y_hls)


def test_a_receive_with_nothing_sent_times_out(driven):
    driven.dma.recvchannel.transfer(driven.overlay.output_buffer)
    with pytest.raises(driven.standin.DMATimeoutError, match="no send transfer was made"):
        driven.dma.recvchannel.wait()


# --------------------------------------------------------------------------- deploy over SSH


def test_deploy_runs_the_rtl_emulation_on_the_loopback_host(rtl_build: Build, login, board, known_hosts, tmp_path):
    package = tmp_path / "elsewhere" / "package"
    shutil.copytree(rtl_build.package_dir, package)
    remote = board / "rtl package"
    result = run_deploy(package, _run_args(login, known_hosts, remote))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Verilated" in result.stdout + result.stderr
    hw = record(package)
    assert hw["emulated"] == "rtl" and hw["build_id"] == rtl_build.manifest["build_id"]
    np.testing.assert_array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    assert remote_state(remote)["y_hw.npy"] == sha256_file(package / "y_hw.npy")


# --------------------------------------------------------------------------- the rtl bitstream, Vivado alone


def test_without_vivado_the_summary_says_vivado_alone_builds_it(rtl_build: Build):
    line = next(line for line in rtl_build.stdout.splitlines() if line.strip().startswith("bitstream"))
    assert "skipped" in line and "Vivado HLS is not needed" in line and "--accelerator rtl --from bitstream" in line
    assert rtl_build.manifest["bitstream_built"] is False


def test_the_ip_passes_the_lint_and_a_standin_vivado_builds_the_package(rtl_build: Build, tmp_path):
    """The real IP through the Vivado-only script: the tclsh stand-in checks every command and file. Its timing
    report misses timing first (refused), then meets it (packaged), then misses it on --accept-timing-violations."""
    from iris_fpga.contract import BITSTREAM_FILES, VIVADO_REPORTS

    root = tmp_path / "copy"
    shutil.copytree(rtl_build.root, root, symlinks=True)  # the build folder is reusable where it lands
    package = root / "package"
    standin = Path(__file__).resolve().parent / "vivado_standin"
    env = {"PATH": os.pathsep.join([str(standin), "/usr/bin", "/bin"])}
    violated = {**env, "STANDIN_VIVADO_TIMING": str(standin / "timing_violated.rpt")}
    before = (package / "manifest.json").read_bytes()
    refused = run_buildmodel(*RTL_ARGS, cwd=root, env=violated)
    assert refused.returncode == 3, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert refused.stderr.strip().splitlines()[-1].startswith("error: timing not met: worst setup slack -0.412 ns "
                                                              "(WNS; TNS -3.873 ns) from design_1_i/hier_0/")
    assert (package / "manifest.json").read_bytes() == before and not (package / BITSTREAM_FILES[0]).exists()

    result = run_buildmodel(*RTL_ARGS, cwd=root, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ip        reused" in result.stdout  # the bitstream is built from the verified IP, not a new one
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["bitstream_built"] is True
    assert set(BITSTREAM_FILES + VIVADO_REPORTS) <= set(manifest["files"])
    assert (package / BITSTREAM_FILES[0]).read_bytes() == b"STAND-IN BIT"
    reports = next(line for line in result.stdout.splitlines() if line.strip().startswith("reports"))
    assert all(name in reports for name in VIVADO_REPORTS)
    script = (root / "hls4ml_prj_pynq" / "vivado_rtl" / "design.tcl").read_text()
    assert "create_bd_cell -type module -reference myproject_axi" in script
    assert manifest["timing_met"] is True  # the stand-in's report (tests/vivado_standin/timing_met.rpt)
    assert manifest["timing"] == {"wns_ns": 0.388, "tns_ns": 0.0, "whs_ns": 0.031, "ths_ns": 0.0}

    accepted = run_buildmodel(*RTL_ARGS, "--accept-timing-violations", cwd=root, env=violated)
    assert accepted.returncode == 0, accepted.stdout[-3000:] + accepted.stderr[-3000:]
    assert "NOT met (worst setup slack -0.412 ns" in accepted.stdout
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["timing_met"] is False and manifest["timing"]["wns_ns"] == -0.412
    assert manifest["settings"]["accept_timing_violations"] is True
    _every_run_warns_of_the_missed_timing(package, BITSTREAM_FILES)


def _every_run_warns_of_the_missed_timing(package: Path, bitstream_files: tuple):
    """on_target.py --emulate and the validation say so; the stand-in's .bit is no bitstream (on_target.py refuses
    its header), so the emulated board runs without it, as it does without Vivado."""
    for name in bitstream_files:
        (package / name).unlink()
    board = subprocess.run([PYTHON, "on_target.py", "--emulate"], cwd=package, capture_output=True, text=True,
                           timeout=300)
    assert board.returncode == 0, board.stdout[-2000:] + board.stderr[-2000:]
    assert "warning: the package's bitstream does not meet timing (WNS -0.412 ns, WHS 0.031 ns)" in board.stdout
    validation = subprocess.run([PYTHON, str(Path(__file__).resolve().parents[1] / "utilities" / "validate_model.py"),
                                 str(package)], capture_output=True, text=True, timeout=300)
    assert "the bitstream does not meet timing" in validation.stdout, validation.stdout[-2000:] + validation.stderr
