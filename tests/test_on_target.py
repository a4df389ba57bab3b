"""on_target.py and the emulated PYNQ-Z2 (issues 4, 12, 13, 14).

Each test works on a copy of the package the session's ``built`` fixture made (a real pipeline
run): manifest.json, X_test.npy, y_test.npy, y_hls.npy, the generated axi_stream_driver.py,
on_target.py and emulation/. Emulated runs go through a subprocess, as a user runs them; input
and option errors, which stop before the board, run in this process (``on_target`` fixture).
"""
from __future__ import annotations

import ast
import ctypes
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iris_fpga import contract
from iris_fpga.emulation import LIBRARY_NAME, find_csim_library, read_layer_widths, stage
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import sha256_file

REPO = Path(__file__).resolve().parents[1]
ON_TARGET = REPO / "on_target.py"
PYTHON = sys.executable
BIT_HEADER = b"\x00\x09\x0f\xf0\x0f\xf0\x0f\xf0\x0f\xf0\x00\x00\x01"
RECORD_KEYS = {"build_id", "mode", "pynq_version", "samples", "batch_latency_s", "throughput_sps", "repeat",
               "date", "bitfile", "argv", "manifest_checked", "ip", "inputs_outside_input_type", "output_sha256"}
IP_FIELDS = {"accelerator": "hls", "part": "xc7z020clg400-1", "n_in": 4, "n_out": 3, "input_type": "ap_fixed<16,6>"}
IN_PROCESS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="session")
def source(request):
    """Where the package (and the hls4ml project for stage()) comes from."""
    built = request.getfixturevalue("built")
    return SimpleNamespace(package_dir=built.package_dir, output_dir=built.output_dir)


@pytest.fixture
def package(tmp_path, source) -> Path:
    pkg = tmp_path / "package"
    shutil.copytree(source.package_dir, pkg, symlinks=True)
    assert (pkg / "on_target.py").read_bytes() == ON_TARGET.read_bytes()
    return pkg


@pytest.fixture
def on_target(package, monkeypatch, capsys):
    """The package's on_target.py in this process: ``on_target(*args)`` returns what ``run`` does."""
    module = _import_file(package / "on_target.py", f"on_target_{abs(hash(package))}")
    monkeypatch.chdir(package)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.delitem(sys.modules, "pynq", raising=False)

    def call(*args: str):
        try:
            code = module.main(list(args))
        finally:
            sys.modules.pop("pynq", None)
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    call.module = module
    return call


def run(pkg: Path, *args: str, env: dict | None = None, python: str = PYTHON, timeout: int = 120):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYNQ_")}
    environment.update(env or {})
    return subprocess.run([python, "on_target.py", *args], cwd=pkg, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_failed(result, code: int, fragment: str, pkg: Path):
    """One line on stderr, the exit code, no traceback, no result (not even a temporary file)."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (pkg / "y_hw.npy").exists()
    assert not (pkg / "y_hw.json").exists()
    assert not list(pkg.glob(".y_hw*"))


def fake_bitstream(pkg: Path, part: str = "7z020clg400", hwh: str | None = None) -> None:
    """A file with a real .bit header (design, part, date, time) and a .hwh naming the DMA."""
    def field(key: bytes, text: str) -> bytes:
        value = text.encode() + b"\x00"
        return key + len(value).to_bytes(2, "big") + value

    payload = b"\xff" * 16 + b"\xaa\x99\x55\x66" + bytes(64)
    (pkg / "hls4ml_nn.bit").write_bytes(
        BIT_HEADER + field(b"a", "design_1_wrapper;UserID=0XFFFFFFFF;Version=2020.1") + field(b"b", part)
        + field(b"c", "2026/11/25") + field(b"d", "06:00:00") + b"e" + len(payload).to_bytes(4, "big") + payload)
    (pkg / "hls4ml_nn.hwh").write_text(hwh if hwh is not None else (
        '<?xml version="1.0"?><EDKSYSTEM><MODULES>'
        '<MODULE FULLNAME="/hier_0/axi_dma_0" INSTANCE="hier_0_axi_dma_0" MODTYPE="axi_dma"/>'
        '<MODULE FULLNAME="/hier_0/myproject_axi_0" INSTANCE="hier_0_myproject_axi_0" MODTYPE="myproject_axi"/>'
        '</MODULES></EDKSYSTEM>'))


def edit_manifest(pkg: Path, files: dict | None = None, **fields) -> dict:
    """Change fields of the package's real manifest (``files`` entries are merged into its list)."""
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest.update(fields)
    manifest["files"].update(files or {})
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    return manifest


# --------------------------------------------------------------------------- emulation end to end


def test_emulation_reproduces_csim_exactly(package):
    result = ok(run(package, "--emulate", "--repeat", "3"))
    y_hw, y_hls = np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy")
    assert y_hw.dtype == np.float32 and y_hw.shape == y_hls.shape
    assert np.array_equal(y_hw, y_hls)
    lines = result.stdout.strip().splitlines()
    assert lines and all(line.startswith("[emulation] ") for line in lines)
    assert "EMULATED PYNQ-Z2, no FPGA" in result.stdout and "warning" not in result.stdout
    y_test = np.load(package / "y_test.npy")
    accuracy = (y_hls.argmax(1) == y_test.argmax(1)).mean()
    assert f"accuracy on y_test.npy: {round(accuracy * len(y_test))}/{len(y_test)}" in result.stdout
    assert not list(package.rglob("__pycache__")), "running must not add files to the package"
    assert contract.strangers(package, contract.read_manifest(package)) == []


def test_record_is_complete(package):
    """A manifest that predates the IP fields: today's PYNQ-Z2 values, and the record says so."""
    manifest = json.loads((package / "manifest.json").read_text())
    for field in IP_FIELDS:
        manifest.pop(field, None)
    (package / "manifest.json").write_text(json.dumps(manifest))
    ok(run(package, "--emulate", "--repeat", "4"))
    record = json.loads((package / "y_hw.json").read_text())
    assert RECORD_KEYS <= record.keys()
    standin = _load_standin(package)
    n = len(np.load(package / "X_test.npy"))
    assert record["build_id"] == manifest["build_id"] and record["manifest_checked"] is True
    assert record["mode"] == "emulation"
    assert record["pynq_version"] == standin.__version__
    assert record["samples"] == n and record["repeat"] == 4
    assert 0 < record["batch_latency_s"]["min"] <= record["batch_latency_s"]["median"]
    assert record["throughput_sps"]["max"] == pytest.approx(n / record["batch_latency_s"]["min"])
    assert record["throughput_sps"]["median"] == pytest.approx(n / record["batch_latency_s"]["median"])
    assert record["bitfile"] is None and record["emulation"]["bitfile"].startswith("none")
    assert record["emulation"]["stand_in"] == standin.__version__
    assert record["argv"] == ["on_target.py", "--emulate", "--repeat", "4"]
    assert record["date"].startswith("20") and record["date"].endswith("+00:00")
    assert record["accuracy"] is not None and record["transfers_per_batch"] == 1
    assert {k: record["ip"][k] for k in IP_FIELDS} == IP_FIELDS
    assert sorted(record["ip"]["defaulted"]) == sorted(IP_FIELDS)
    assert record["output_sha256"] == sha256_file(package / "y_hw.npy")
    assert record["inputs_outside_input_type"]["values"] == 0


def test_the_manifest_describes_the_ip(package):
    """Fields present: used, not defaulted; a narrower input type counts what it cannot hold."""
    fields = dict(IP_FIELDS, input_type="ap_fixed<8,2>")  # holds [-2, 2)
    edit_manifest(package, **fields)
    result = ok(run(package, "--emulate"))
    record = json.loads((package / "y_hw.json").read_text())
    assert {k: record["ip"][k] for k in IP_FIELDS} == fields and record["ip"]["defaulted"] == []
    x = np.load(package / "X_test.npy")
    outside = (x < -2) | (x >= 2)
    rows = np.flatnonzero(outside.any(axis=1)).tolist()
    assert 0 < outside.sum() < x.size, "the test data must straddle the narrower range"
    assert record["inputs_outside_input_type"] == {
        "input_type": "ap_fixed<8,2>", "range": [-2.0, 2.0], "closed": [True, False], "values": int(outside.sum()),
        "samples": len(rows), "first_samples": rows}
    shown = ", ".join(map(str, rows[:10]))
    assert f"warning: {outside.sum()} input value(s) in {len(rows)} sample(s) ({shown}" in result.stdout
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))


def test_inputs_outside_the_input_type_are_counted_and_the_run_completes(package):
    x = np.load(package / "X_test.npy")
    x[3, 0], x[17, 2], x[17, 3], x[5, 1], x[6, 1] = 40.0, -33.0, 32.0, -32.0, 31.99  # the last two fit
    np.save(package / "wide.npy", x)
    result = ok(run(package, "--emulate", "--input", "wide.npy"))
    record = json.loads((package / "y_hw.json").read_text())
    assert record["inputs_outside_input_type"] == {
        "input_type": "ap_fixed<16,6>", "range": [-32.0, 32.0], "closed": [True, False], "values": 3, "samples": 2,
        "first_samples": [3, 17]}
    assert "warning: 3 input value(s) in 2 sample(s) (3, 17) lie outside ap_fixed<16,6>'s range [-32, 32)" \
        in result.stdout
    assert np.load(package / "y_hw.npy").shape == (len(x), 3)


def test_without_manifest_only_when_asked_and_the_record_says_so(package):
    (package / "manifest.json").unlink()
    (package / "y_test.npy").unlink()
    fake_bitstream(package)
    assert_failed(run(package, "--emulate"), ExitCode.USAGE, "run with --no-manifest", package)
    result = ok(run(package, "--emulate", "--no-manifest"))
    record = json.loads((package / "y_hw.json").read_text())
    assert record["build_id"] is None and record["manifest_checked"] is False
    assert "no file was checked" in result.stdout
    assert record["accuracy"] is None and "accuracy not computed: no y_test.npy" in result.stdout
    assert record["bitfile"] == "hls4ml_nn.bit"
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))


def test_split_at_a_tiny_dma_limit_gives_identical_results(package):
    x = np.load(package / "X_test.npy")
    limit = 7 * 16  # 7 samples per transfer: several full transfers and a short last one
    # the emulated DMA enforces the same limit: a transfer above it would fail the run
    ok(run(package, "--emulate", "--dma-limit", str(limit), "--repeat", "2",
           env={"PYNQ_EMULATION_MAX_TRANSFER": str(limit)}))
    record = json.loads((package / "y_hw.json").read_text())
    assert record["dma_transfer_limit_bytes"] == limit
    assert record["transfers_per_batch"] == -(-len(x) // 7) > 1
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))


def test_the_limit_the_dma_reports_is_honoured(package):
    """The emulated DMA rejects larger transfers, so success proves each transfer stayed below it."""
    ok(run(package, "--emulate", env={"PYNQ_EMULATION_MAX_TRANSFER": "100"}))
    record = json.loads((package / "y_hw.json").read_text())
    assert record["dma_transfer_limit_bytes"] == 100
    assert record["transfers_per_batch"] == -(-len(np.load(package / "X_test.npy")) // 6)
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))


# --------------------------------------------------------------------------- bad inputs (in this process)


def _save(path: Path, array) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=True)


def _other_input(array):
    return lambda p: _save(p / "other.npy", array)


def _link_to_edited_copy(p: Path, name: str, outside: bool) -> None:
    copy = (p.parent if outside else p) / ("edited_" + Path(name).name)
    copy.write_bytes((p / name).read_bytes() + b"\n# edited\n")
    (p / name).unlink()
    (p / name).symlink_to(copy)


def _replace_with(p: Path, name: str, kind: str) -> None:
    (p / name).unlink()
    os.mkfifo(p / name) if kind == "fifo" else (p / name).mkdir()


def _linked_emulation(p: Path) -> None:
    shutil.copytree(p / "emulation", p.parent / "emulation-copy")
    shutil.rmtree(p / "emulation")
    (p / "emulation").symlink_to(p.parent / "emulation-copy")


OTHER = ["--input", "other.npy"]
BAD_INPUTS = {  # name: (spoil the package, extra arguments, fragment of the one error line)
    "missing": (lambda p: (p / "X_test.npy").unlink(), [], "input X_test.npy not found"),
    "corrupt": (lambda p: (p / "other.npy").write_bytes(b"\x93NUMPY garbage"), OTHER, "not a readable .npy file"),
    "truncated": (lambda p: (p / "other.npy").write_bytes((p / "X_test.npy").read_bytes()[:-40]), OTHER,
                  "but 440 bytes follow"),
    "pickled": (_other_input(np.array([{"a": 1}], dtype=object)), OTHER, "Python objects"),
    "width 5": (_other_input(np.zeros((30, 5), np.float32)), OTHER, "expected (N, 4)"),
    "one dimension": (_other_input(np.zeros(120, np.float32)), OTHER, "expected (N, 4)"),
    "no samples": (_other_input(np.zeros((0, 4), np.float32)), OTHER, "holds no samples"),
    "float64": (_other_input(np.zeros((30, 4))), OTHER, "dtype float64: expected float32"),
    "int": (_other_input(np.zeros((30, 4), np.int32)), OTHER, "dtype int32: expected float32"),
    "nan": (_other_input(np.full((30, 4), np.nan, np.float32)), OTHER, "NaN or infinite"),
    "a folder as input": (lambda p: (p / "other.npy").mkdir(), OTHER, "not found (or not a regular file)"),
    "corrupt labels": (lambda p: ((p / "sub").mkdir(), shutil.copy(p / "X_test.npy", p / "sub" / "x.npy"),
                                  (p / "sub" / "y_test.npy").write_bytes(b"nonsense")),
                       ["--input", "sub/x.npy"], "y_test.npy is not a readable"),
    "labels from another build": (lambda p: np.save(p / "y_test.npy", np.zeros((30, 3))), [],
                                  "y_test.npy is not the file manifest.json lists"),
    "no manifest": (lambda p: (p / "manifest.json").unlink(), [], "no manifest.json beside on_target.py"),
    "corrupt manifest": (lambda p: (p / "manifest.json").write_text("{"), [], "manifest.json is corrupt"),
    "a stranger's manifest": (lambda p: (p / "manifest.json").write_text('{"name": "npm"}'), [],
                              "not a manifest of this tool (field 'build_id'"),
    "manifest without build id": (lambda p: edit_manifest(p, build_id="nope"), [], "no valid build_id"),
    "manifest is a link": (lambda p: _link_to_edited_copy(p, "manifest.json", outside=True), [],
                           "manifest.json is not a regular file"),
    "no driver": (lambda p: (p / "axi_stream_driver.py").unlink(), [], "axi_stream_driver.py not found"),
    "no emulation": (lambda p: shutil.rmtree(p / "emulation"), [], "holds no emulated board"),
    "edited driver": (lambda p: (p / "axi_stream_driver.py").write_text("# edited\n"), [],
                      "axi_stream_driver.py is not the file"),
    "driver linked outside": (lambda p: _link_to_edited_copy(p, "axi_stream_driver.py", outside=True), [],
                              "axi_stream_driver.py is a symbolic link"),
    "driver linked inside": (lambda p: _link_to_edited_copy(p, "axi_stream_driver.py", outside=False), [],
                             "axi_stream_driver.py is a symbolic link"),
    "listed file is a FIFO": (lambda p: _replace_with(p, "y_keras.npy", "fifo"), [],
                              "y_keras.npy is not a regular file"),
    "listed file is a folder": (lambda p: _replace_with(p, "classes.npy", "folder"), [],
                                "classes.npy is not a regular file"),
    "emulation behind a link": (_linked_emulation, [], "lies under a symbolic link (emulation)"),
    "library from another build": (lambda p: (p / "emulation" / LIBRARY_NAME).write_bytes(b"\x7fELF other"), [],
                                   f"emulation/{LIBRARY_NAME} is not the file"),
    "a module slipped into emulation": (lambda p: (p / "emulation" / "ctypes.py").write_text("raise SystemExit"), [],
                                        "emulation/ctypes.py is not a file manifest.json lists"),
    "bit without hwh": (lambda p: (fake_bitstream(p), (p / "hls4ml_nn.hwh").unlink()), [],
                        "has no hls4ml_nn.hwh beside it"),
    "not a bit file": (lambda p: (fake_bitstream(p), (p / "hls4ml_nn.bit").write_bytes(b"hello")), [],
                       "not a Xilinx .bit file"),
    "bit for another part": (lambda p: fake_bitstream(p, part="7z010clg400"), [],
                             "built for part 7z010clg400, not the IP's xc7z020clg400-1"),
    "hwh of another design": (lambda p: fake_bitstream(p, hwh="<EDKSYSTEM><MODULES/></EDKSYSTEM>"), [],
                              "does not describe hier_0/axi_dma_0"),
    "corrupt hwh": (lambda p: fake_bitstream(p, hwh="<EDKSYSTEM"), [], "not a readable .hwh file"),
    "bit from another build": (lambda p: (fake_bitstream(p), edit_manifest(p, files={"hls4ml_nn.bit": "0" * 64})),
                               [], "hls4ml_nn.bit is not the file manifest.json lists"),
    "manifest with another n_in": (lambda p: edit_manifest(p, n_in=5), [], "shape (30, 4): expected (N, 5)"),
    "manifest with another part": (lambda p: (fake_bitstream(p), edit_manifest(p, part="xc7z010clg400-1")), [],
                                   "built for part 7z020clg400, not the IP's xc7z010clg400-1"),
    "unknown accelerator": (lambda p: edit_manifest(p, accelerator="gpu"), [], "names accelerator 'gpu'"),
    "n_out as text": (lambda p: edit_manifest(p, n_out="3"), [], "n_out = '3': expected a whole number"),
    "float input type": (lambda p: edit_manifest(p, input_type="float"), [], "input_type 'float': expected ap_fixed"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_fails_with_one_line_and_no_result(package, on_target, case):
    spoil, args, fragment = BAD_INPUTS[case]
    spoil(package)
    assert_failed(on_target("--emulate", *args), ExitCode.USAGE, fragment, package)


BAD_OPTIONS = {
    "repeat 0": (["--repeat", "0"], "--repeat: must be at least 1"),
    "unknown option": (["--board", "x"], "unrecognized arguments"),
    "limit below a sample": (["--dma-limit", "8"], "--dma-limit 8 is smaller than one sample (16 bytes)"),
    "missing explicit bitfile": (["--bitfile", "other.bit"], "bitstream other.bit not found"),
    "timeout inf": (["--timeout", "inf"], "--timeout: must be above 0 and at most 86400 seconds"),
    "timeout nan": (["--timeout", "nan"], "--timeout: must be above 0"),
    "timeout 1e300": (["--timeout", "1e300"], "--timeout: must be above 0"),
    "output folder missing": (["--output", "nowhere/y.npy"], "does not exist"),
    "output empty": (["--output", ""], "--output '' is not a .npy file name"),
    "output not .npy": (["--output", "y_hw.txt"], "--output 'y_hw.txt' is not a .npy file name"),
    "output a folder": (["--output", "emulation/"], "is not a .npy file name"),
    "output over the input": (["--output", "X_test.npy"], "would replace X_test.npy"),
    "output over the truth": (["--output", "y_hls.npy"], "would replace y_hls.npy"),
    "record over the manifest": (["--output", "manifest.npy"], "would replace manifest.json"),
    "record over the scaler": (["--output", "scaler.npy"], "would replace scaler.json"),
    "record over an estimate to come": (["--output", "hardware_estimate.npy"], "would replace hardware_estimate.json"),
    "output over the notebook": (["--output", "on_target.ipynb"], "is not a .npy file name"),
    "output into emulation": (["--output", "emulation/pynq/y.npy"], "would replace y.npy"),
    "output a .json": (["--output", "y.json"], "is not a .npy file name"),
    "output over an input elsewhere": (["--input", "../x.npy", "--output", "../x.npy"], "would replace x.npy"),
    "output through another path": (["--output", "../package/y_test.npy"], "would replace y_test.npy"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=list(BAD_OPTIONS))
def test_bad_option_fails_with_one_line_and_no_result(package, on_target, case):
    args, fragment = BAD_OPTIONS[case]
    shutil.copy(package / "X_test.npy", package.parent / "x.npy")
    before = {p.name: p.read_bytes() for p in package.iterdir() if p.is_file()}
    assert_failed(on_target("--emulate", *args), ExitCode.USAGE, fragment, package)
    assert {p.name: p.read_bytes() for p in package.iterdir() if p.is_file()} == before


def test_no_manifest_never_skips_a_manifest_that_is_there(package, on_target):
    (package / "axi_stream_driver.py").write_text("# edited\n")
    assert_failed(on_target("--emulate", "--no-manifest"), ExitCode.USAGE, "axi_stream_driver.py is not the file",
                  package)


@IN_PROCESS
@given(option=st.sampled_from(["--timeout", "--repeat", "--dma-limit", "--output"]),
       value=st.one_of(st.text(max_size=30), st.floats().map(repr), st.integers().map(str),
                       st.sampled_from(["inf", "-inf", "nan", "1e300", "1e-300", "", ".", "..", "0", "-0", "9" * 5000])))
def test_any_option_value_parses_or_is_one_line_and_code_2(on_target, option, value):
    module = on_target.module
    try:
        args = module.parse_args([option, value])
    except module.TargetError as exc:
        assert exc.code == ExitCode.USAGE and "\n" not in str(exc) and option.lstrip("-") in str(exc)
        return
    if option == "--timeout":
        assert 0 < args.timeout <= 86400 and math.isfinite(args.timeout)
    elif option == "--output":
        assert args.output.endswith(".npy") and Path(args.output).suffix == ".npy"
    else:
        assert getattr(args, option[2:].replace("-", "_")) >= 1


def _npy(header: dict, payload: bytes) -> bytes:
    text = repr(header).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


BAD_ARRAYS = st.one_of(
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY\x01\x00" + b),
    st.tuples(st.lists(st.integers(0, 10 ** 12), max_size=3), st.sampled_from(["<f4", "<f8", "|u1", "<i4", "|O"]),
              st.binary(max_size=64)).filter(lambda t: not (t[1] == "<f4" and len(t[0]) == 2 and t[0][1] == 4
                                                            and t[0][0] * 16 == len(t[2])))
    .map(lambda t: _npy({"descr": t[1], "fortran_order": False, "shape": tuple(t[0])}, t[2])),
    st.sampled_from([_npy({"descr": "<f4", "fortran_order": False, "shape": (10 ** 11, 4)}, bytes(64)),
                     _npy({"descr": "<f4", "fortran_order": False, "shape": (2, 4)}, np.full(8, np.inf, "<f4").tobytes()),
                     _npy({"descr": "<U5", "fortran_order": False, "shape": (2, 4)}, bytes(160))]),
)


@IN_PROCESS
@given(data=BAD_ARRAYS)
def test_a_hostile_input_file_is_one_line_and_code_2(package, on_target, data):
    (package / "hostile.npy").write_bytes(data)
    assert_failed(on_target("--emulate", "--input", "hostile.npy"), ExitCode.USAGE, "hostile.npy", package)


@IN_PROCESS
@given(accelerator=st.sampled_from(["hls", "rtl", "gpu", 1, None]),
       n_in=st.one_of(st.integers(-2, 70000), st.sampled_from([True, 4.0, "4"])),
       width=st.integers(-1, 1100), integer=st.integers(-1100, 1100),
       form=st.sampled_from(["ap_fixed<{},{}>", "ap_ufixed<{}, {}>", "ap_fixed<{},{},AP_RND,AP_SAT>",
                             "ap_int<{}>", "ap_uint<{}>", "ap_fixed<{}>", "float{}{}"]))
def test_ip_fields_are_used_or_refused_in_one_line(on_target, accelerator, n_in, width, integer, form):
    module = on_target.module
    input_type = form.format(width, integer) if form.count("{}") == 2 else form.format(width)
    try:
        ip = module.read_ip(dict(IP_FIELDS, accelerator=accelerator, n_in=n_in, input_type=input_type))
    except module.TargetError as exc:
        assert exc.code == ExitCode.USAGE and "\n" not in str(exc)
        return
    assert accelerator in ("hls", "rtl") and type(n_in) is int and 1 <= n_in <= 65536 and 1 <= width <= 1024
    assert ip.n_in == n_in and ip.accelerator == accelerator and ip.defaulted == ()
    assert ip.inputs == module.input_range(input_type)  # the rule itself: test_on_target_drift.py


def test_array_and_record_are_written_both_or_neither(package, on_target, monkeypatch):
    """A failed rename of the record puts the earlier pair back; with none before, leaves none."""
    module, output = on_target.module, package / "y_hw.npy"
    module.save_results(np, output, np.zeros((2, 3), np.float32), {"run": 1})
    before = output.read_bytes(), output.with_suffix(".json").read_bytes()
    real_replace = os.replace

    def record_fails(source, target):
        if str(source).endswith(".tmp") and str(target).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", record_fails)
    with pytest.raises(module.TargetError, match="No space left on device"):
        module.save_results(np, output, np.ones((2, 3), np.float32), {"run": 2})
    assert (output.read_bytes(), output.with_suffix(".json").read_bytes()) == before
    fresh = package / "fresh.npy"
    with pytest.raises(module.TargetError):
        module.save_results(np, fresh, np.ones((2, 3), np.float32), {"run": 3})
    assert not fresh.exists() and not fresh.with_suffix(".json").exists()
    assert not [p for p in os.listdir(package) if p.startswith((".y_hw", ".fresh"))]


def test_a_broken_library_is_a_board_failure(package):
    (package / "emulation" / LIBRARY_NAME).write_bytes(b"not an ELF file")
    edit_manifest(package, files={f"emulation/{LIBRARY_NAME}": sha256_file(package / "emulation" / LIBRARY_NAME)})
    assert_failed(run(package, "--emulate"), ExitCode.BOARD, "the overlay does not load", package)


# --------------------------------------------------------------------------- without --emulate


def test_workstation_without_bitstream_points_at_emulate(package):
    result = run(package)
    assert_failed(result, ExitCode.USAGE, "bitstream hls4ml_nn.bit not found", package)
    assert "--emulate" in result.stderr


def test_workstation_without_pynq_is_a_board_failure(package):
    fake_bitstream(package)
    result = run(package)
    assert_failed(result, ExitCode.BOARD, "pynq is not installed", package)
    assert "--emulate" in result.stderr


def test_the_stand_in_never_passes_for_a_real_pynq(package):
    fake_bitstream(package)
    result = run(package, env={"PYTHONPATH": str(package / "emulation")})
    assert_failed(result, ExitCode.BOARD, "is the emulation stand-in, not the real pynq", package)


def _fake_pynq(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "fake_site" / "pynq"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("import numpy as np\n__version__ = '3.1'\n" + body)
    return folder.parent


def test_pynq_without_a_device_is_a_board_failure(package, tmp_path):
    """The real pynq installs on x86, where Overlay fails with "No Devices Found"."""
    fake_bitstream(package)
    site = _fake_pynq(tmp_path, (
        "class Overlay:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        raise RuntimeError('No Devices Found')\n"
        "def allocate(*args, **kwargs):\n"
        "    raise RuntimeError('No Devices Found')\n"))
    result = run(package, env={"PYTHONPATH": str(site)})
    assert_failed(result, ExitCode.BOARD, "the overlay does not load: RuntimeError: No Devices Found", package)


HANGING_BOARD = """
import os
class _Channel:
    _max_size = (1 << 26) - 1
    def __init__(self, name):
        self.name = name
    def transfer(self, array, start=0, nbytes=0):
        pass
    def wait(self):
        while self.name == 'recv':  # pynq spins on the status register; this IP never answers
            pass
    def stop(self):
        with open(os.environ['STOP_LOG'], 'a') as fh:
            fh.write(self.name + '\\n')
class _DMA:
    buffer_max_size = (1 << 26) - 1
    sendchannel = _Channel('send')
    recvchannel = _Channel('recv')
class _Hier:
    axi_dma_0 = _DMA()
class Overlay:
    def __init__(self, bitfile_name, dtbo=None, download=True, ignore_version=False, device=None):
        self.hier_0 = _Hier()
def allocate(shape, dtype='u4', **kwargs):
    return np.zeros(shape, dtype)
"""


def test_a_hung_dma_times_out_and_is_stopped(package, tmp_path):
    fake_bitstream(package)
    site = _fake_pynq(tmp_path, HANGING_BOARD)
    log = tmp_path / "stops.log"
    result = run(package, "--timeout", "0.5", env={"PYTHONPATH": str(site), "STOP_LOG": str(log)})
    assert_failed(result, ExitCode.BOARD, "did not complete within", package)
    assert "stopped the DMA channels" in result.stderr
    assert sorted(log.read_text().split()) == ["recv", "send"]


def test_not_root_on_a_board_is_a_board_failure(package, tmp_path, monkeypatch, capsys):
    fake_bitstream(package)
    site = _fake_pynq(tmp_path, "class Overlay:\n    pass\ndef allocate(*a, **k):\n    pass\n")
    module = _import_file(package / "on_target.py", "on_target_under_test")
    monkeypatch.chdir(package)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    try:
        code = module.main([])
    finally:
        sys.modules.pop("pynq", None)
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.BOARD
    assert err.startswith("error: not root") and "sudo python3 on_target.py" in err and "\n" not in err
    assert not (package / "y_hw.npy").exists()


# --------------------------------------------------------------------------- the board's Python


def _import_file(path: Path, name: str):
    """``path`` as a module of its own, with no bytecode written beside it; sys.path and
    sys.dont_write_bytecode as they were (on_target.py takes its own folder off sys.path, which for
    the repository's copy is this session's)."""
    saved = list(sys.path), sys.dont_write_bytecode
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:], sys.dont_write_bytecode = saved
    return module


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_on_target_imports_only_stdlib_numpy_and_pynq():
    allowed = set(sys.stdlib_module_names) | {"numpy", "pynq"}
    imported = _imported_modules(ON_TARGET)
    assert imported - allowed == set()
    assert {"numpy", "pynq"} <= imported
    assert not any(name.startswith("iris_fpga") for name in imported)


def test_stand_in_imports_only_stdlib_and_numpy():
    standin = REPO / "iris_fpga" / "emulation" / "pynq" / "__init__.py"
    assert _imported_modules(standin) - set(sys.stdlib_module_names) == {"numpy"}


@pytest.mark.parametrize("path", [ON_TARGET, REPO / "iris_fpga" / "emulation" / "pynq" / "__init__.py"],
                         ids=["on_target", "stand-in"])
def test_python_38_syntax(path):
    ast.parse(path.read_text(), feature_version=(3, 8))


def _python38():
    """A working Python 3.8 interpreter (pyenv's shims exist even where none is selected)."""
    candidates = [os.environ.get("IRIS_PYTHON38")]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))
    candidates.append(shutil.which("python3.8"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() == "True":
            return candidate
    return None


def test_runs_on_a_real_python_38(package):
    """With numpy there, the whole emulated run; without, at least everything up to numpy."""
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 on this machine (set IRIS_PYTHON38)")
    has_numpy = subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0
    result = run(package, "--emulate", python=python)
    if has_numpy:
        ok(result)
        assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
        assert json.loads((package / "y_hw.json").read_text())["python"].startswith("3.8")
    else:
        assert_failed(result, ExitCode.BOARD, "numpy is not installed", package)


def test_the_checks_before_numpy_run_on_python_38(package):
    """Manifest, IP, listed files and --output checks are standard library: run them on 3.8 itself."""
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 on this machine (set IRIS_PYTHON38)")
    edit_manifest(package, **dict(IP_FIELDS, n_in=5, input_type="ap_ufixed<8,3>"))
    (package / "y_keras.npy").unlink()
    (package / "y_keras.npy").symlink_to(package / "y_hls.npy")
    script = (
        "import on_target as t\n"
        "from pathlib import Path\n"
        "m = t.read_manifest(False)\n"
        "ip = t.read_ip(m)\n"
        "print(ip.n_in, ip.in_row_bytes, ip.inputs, ip.defaulted)\n"
        "for check in (lambda: t.check_listed_files(m['files']),\n"
        "              lambda: t.check_output(Path('scaler.npy'), m['files'], [])):\n"
        "    try:\n"
        "        check()\n"
        "    except t.TargetError as exc:\n"
        "        print(exc.code, exc)\n")
    result = subprocess.run([python, "-B", "-c", script], cwd=package, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "5 20 (0.0, 8.0, True, False) ()",
        "2 y_keras.npy is a symbolic link: the package holds the regular files manifest.json lists; "
        "copy the package folder again",
        "2 --output scaler.npy would replace scaler.json, a file of the package or of this run: choose another "
        "name (default y_hw.npy)"]


# --------------------------------------------------------------------------- the stand-in itself


def _load_standin(pkg: Path):
    """The staged stand-in as its own module (never as ``pynq``, so nothing is shadowed)."""
    return _import_file(pkg / "emulation" / "pynq" / "__init__.py", f"standin_{abs(hash(pkg))}")


@pytest.fixture
def board(package, monkeypatch):
    """The generated driver's overlay on the emulated board, in this process."""
    standin = _load_standin(package)
    monkeypatch.setitem(sys.modules, "pynq", standin)
    driver = _import_file(package / "axi_stream_driver.py", "driver_under_test")
    x = np.load(package / "X_test.npy")
    overlay = driver.NeuralNetworkOverlay(None, x.shape, (len(x), 3))
    return SimpleNamespace(standin=standin, overlay=overlay, x=x, y_hls=np.load(package / "y_hls.npy"),
                           dma=overlay.hier_0.axi_dma_0)


def test_unmodified_driver_returns_its_live_buffer(board):
    """The pitfall on_target.py works around: a second predict overwrites the first result."""
    first = board.overlay.predict(board.x)
    assert np.array_equal(first, board.y_hls)
    assert isinstance(first, np.ndarray) and first.physical_address is not None
    board.overlay.predict(board.x[::-1].copy())
    assert np.array_equal(first, board.y_hls[::-1])


def test_send_of_a_partial_sample_is_an_error_and_halts(board):
    buffer = board.standin.allocate(shape=(10,), dtype=np.float32)  # 2.5 samples
    with pytest.raises(board.standin.EmulatedDMAError, match="not a whole number of 16-byte input samples"):
        board.dma.sendchannel.transfer(buffer)
    assert board.dma.sendchannel.error
    with pytest.raises(board.standin.EmulatedDMAError, match="halted after an earlier fault"):
        board.dma.sendchannel.transfer(board.overlay.input_buffer)
    board.overlay.download()  # loading the overlay again resets the DMA
    assert np.array_equal(board.overlay.predict(board.x), board.y_hls)


def test_transfer_above_the_limit_raises_like_pynq(package, monkeypatch):
    monkeypatch.setenv("PYNQ_EMULATION_MAX_TRANSFER", "64")
    standin = _load_standin(package)
    overlay = standin.Overlay(None)
    buffer = standin.allocate(shape=(5, 4), dtype=np.float32)  # 80 bytes
    with pytest.raises(ValueError, match="Transfer size is 80 bytes, which exceeds the maximum DMA buffer size 64"):
        overlay.hier_0.axi_dma_0.sendchannel.transfer(buffer)
    with pytest.raises(ValueError, match="exceeds"):
        overlay.hier_0.axi_dma_0.recvchannel.transfer(buffer)


def test_receive_without_send_times_out(board):
    board.dma.recvchannel.transfer(board.overlay.output_buffer)
    with pytest.raises(board.standin.DMATimeoutError, match="timed out"):
        board.dma.recvchannel.wait()


def test_receive_buffer_too_small_is_an_error(board):
    small = board.standin.allocate(shape=(len(board.x) - 1, 3), dtype=np.float32)
    board.dma.sendchannel.transfer(board.overlay.input_buffer)
    board.dma.recvchannel.transfer(small)
    with pytest.raises(board.standin.EmulatedDMAError, match="DMA Internal Error"):
        board.dma.recvchannel.wait()


def test_wrong_shape_fails_before_any_transfer(board):
    with pytest.raises(ValueError):
        board.overlay.predict(np.zeros((len(board.x), 5), np.float32))
    assert not board.dma.sendchannel.error and board.dma.recvchannel.idle


def test_plain_numpy_arrays_cannot_be_transferred(board):
    with pytest.raises(ValueError, match="pynq.allocate"):
        board.dma.sendchannel.transfer(np.zeros((2, 4), np.float32))


def test_overlay_checks_bitstream_and_hwh_as_pynq(package):
    standin = _load_standin(package)
    with pytest.raises(IOError, match="does not exist"):
        standin.Overlay(str(package / "hls4ml_nn.bit"))
    fake_bitstream(package)
    (package / "hls4ml_nn.hwh").unlink()
    with pytest.raises(RuntimeError, match="Cannot find the metadata file"):
        standin.Overlay(str(package / "hls4ml_nn.bit"))
    fake_bitstream(package)
    assert standin.Overlay(str(package / "hls4ml_nn.bit")).is_loaded()


# --------------------------------------------------------------------------- stage()


def test_stage_writes_the_newest_library_under_a_fixed_name(tmp_path, source):
    project = tmp_path / "prj"
    shutil.copytree(source.output_dir / "firmware", project / "firmware",
                    ignore=shutil.ignore_patterns("ap_types", "nnet_utils"))
    libraries = sorted((project / "firmware").glob("myproject-*.so"))
    newest = libraries[0]
    older = project / "firmware" / "myproject-00000000.so"
    older.write_bytes(b"an older build")
    os.utime(older, (1, 1))
    os.utime(newest, None)
    pkg = tmp_path / "package"
    (pkg / "emulation").mkdir(parents=True)
    (pkg / "emulation" / "stale.so").write_bytes(b"old")

    written = stage(pkg, project)

    assert find_csim_library(project) == newest
    weights = sorted(f"emulation/weights/{p.name}" for p in (project / "firmware" / "weights").glob("*.txt"))
    assert weights and sorted(p.relative_to(pkg).as_posix() for p in written) == sorted([
        "emulation/accelerator.json", f"emulation/{LIBRARY_NAME}", "emulation/pynq/__init__.py", *weights])
    assert sorted(p for p in (pkg / "emulation").rglob("*") if p.is_file()) == sorted(written)
    assert (pkg / "emulation" / LIBRARY_NAME).read_bytes() == newest.read_bytes()
    record = json.loads((pkg / "emulation" / "accelerator.json").read_text())
    assert (record["n_in"], record["n_out"]) == read_layer_widths(project) == (4, 3)
    assert record["source"] == f"firmware/{newest.name}"
    library = ctypes.CDLL(str(pkg / "emulation" / LIBRARY_NAME))
    assert hasattr(library, record["function"])


def test_stage_without_a_compiled_library_says_so(tmp_path):
    (tmp_path / "prj" / "firmware").mkdir(parents=True)
    with pytest.raises(ToolError, match="run the csim step") as raised:
        stage(tmp_path / "package", tmp_path / "prj")
    assert raised.value.code == ExitCode.USAGE
