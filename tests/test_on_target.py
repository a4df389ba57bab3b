"""on_target.py and the emulated PYNQ-Z2 (issue 4).

Each test assembles a package folder in tmp_path as the package step does for the board side:
X_test.npy, y_test.npy, y_hls.npy, the generated axi_stream_driver.py, on_target.py, and
``iris_fpga.emulation.stage`` for emulation/. The build comes from the session's ``built``
fixture (a real pipeline run).
"""
from __future__ import annotations

import ast
import ctypes
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from iris_fpga.emulation import LIBRARY_NAME, find_csim_library, read_layer_widths, stage
from iris_fpga.errors import ExitCode, ToolError

REPO = Path(__file__).resolve().parents[1]
ON_TARGET = REPO / "on_target.py"
PYTHON = sys.executable
BIT_HEADER = b"\x00\x09\x0f\xf0\x0f\xf0\x0f\xf0\x0f\xf0\x00\x00\x01"
RECORD_KEYS = {"build_id", "mode", "pynq_version", "samples", "batch_latency_s", "throughput_sps", "repeat",
               "date", "bitfile", "argv"}


@pytest.fixture(scope="session")
def source(request):
    """Where the data files (X_test, y_test, y_hls) and the hls4ml project come from."""
    built = request.getfixturevalue("built")
    return SimpleNamespace(data_dir=built.package_dir, output_dir=built.output_dir)


@pytest.fixture
def package(tmp_path, source) -> Path:
    pkg = tmp_path / "package"
    pkg.mkdir()
    for name in ("X_test.npy", "y_test.npy", "y_hls.npy"):
        shutil.copyfile(source.data_dir / name, pkg / name)
    shutil.copyfile(source.output_dir / "axi_stream_driver.py", pkg / "axi_stream_driver.py")
    shutil.copyfile(ON_TARGET, pkg / "on_target.py")
    stage(pkg, source.output_dir)
    return pkg


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


def write_manifest(pkg: Path, build_id: str = "0123456789abcdef", files: dict | None = None) -> None:
    (pkg / "manifest.json").write_text(json.dumps({"build_id": build_id, "files": files or {}}))


# --------------------------------------------------------------------------- emulation end to end


def test_emulation_reproduces_csim_exactly(package):
    result = ok(run(package, "--emulate", "--repeat", "3"))
    y_hw, y_hls = np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy")
    assert y_hw.dtype == np.float32 and y_hw.shape == y_hls.shape
    assert np.array_equal(y_hw, y_hls)
    lines = result.stdout.strip().splitlines()
    assert lines and all(line.startswith("[emulation] ") for line in lines)
    assert "EMULATED PYNQ-Z2, no FPGA" in result.stdout
    y_test = np.load(package / "y_test.npy")
    accuracy = (y_hls.argmax(1) == y_test.argmax(1)).mean()
    assert f"accuracy on y_test.npy: {round(accuracy * len(y_test))}/{len(y_test)}" in result.stdout
    assert not list(package.rglob("__pycache__")), "running must not add files to the package"


def test_record_is_complete(package):
    write_manifest(package)
    ok(run(package, "--emulate", "--repeat", "4"))
    record = json.loads((package / "y_hw.json").read_text())
    assert RECORD_KEYS <= record.keys()
    standin = _load_standin(package)
    n = len(np.load(package / "X_test.npy"))
    assert record["build_id"] == "0123456789abcdef"
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


def test_record_without_manifest_or_labels_and_with_a_bitstream(package):
    (package / "y_test.npy").unlink()
    fake_bitstream(package)
    result = ok(run(package, "--emulate"))
    record = json.loads((package / "y_hw.json").read_text())
    assert record["build_id"] is None
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


# --------------------------------------------------------------------------- bad inputs


def _save(path: Path, array) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=True)


BAD_INPUTS = {
    "missing": (lambda p: (p / "X_test.npy").unlink(), "input X_test.npy not found"),
    "corrupt": (lambda p: (p / "X_test.npy").write_bytes(b"\x93NUMPY garbage"), "not a readable .npy file"),
    "truncated": (lambda p: (p / "X_test.npy").write_bytes((p / "X_test.npy").read_bytes()[:-40]),
                  "not a readable .npy file"),
    "pickled": (lambda p: _save(p / "X_test.npy", np.array([{"a": 1}], dtype=object)), "not a readable .npy file"),
    "width 5": (lambda p: _save(p / "X_test.npy", np.zeros((30, 5), np.float32)), "expected (N, 4)"),
    "one dimension": (lambda p: _save(p / "X_test.npy", np.zeros(120, np.float32)), "expected (N, 4)"),
    "no samples": (lambda p: _save(p / "X_test.npy", np.zeros((0, 4), np.float32)), "holds no samples"),
    "float64": (lambda p: _save(p / "X_test.npy", np.load(p / "X_test.npy").astype(np.float64)),
                "dtype float64: expected float32"),
    "int": (lambda p: _save(p / "X_test.npy", np.zeros((30, 4), np.int32)), "dtype int32: expected float32"),
    "nan": (lambda p: _save(p / "X_test.npy", np.full((30, 4), np.nan, np.float32)), "NaN or infinite"),
    "corrupt labels": (lambda p: (p / "y_test.npy").write_bytes(b"nonsense"), "y_test.npy is not a readable"),
    "corrupt manifest": (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is corrupt"),
    "manifest without build id": (lambda p: (p / "manifest.json").write_text("{}"), "no valid build_id"),
    "no driver": (lambda p: (p / "axi_stream_driver.py").unlink(), "axi_stream_driver.py not found"),
    "no emulation": (lambda p: shutil.rmtree(p / "emulation"), "holds no emulated board"),
    "driver from another build": (
        lambda p: write_manifest(p, files={"axi_stream_driver.py": "0" * 64}), "axi_stream_driver.py is not the file"),
    "library from another build": (
        lambda p: write_manifest(p, files={f"emulation/{LIBRARY_NAME}": "0" * 64}), f"emulation/{LIBRARY_NAME} is not"),
    "bit without hwh": (lambda p: (fake_bitstream(p), (p / "hls4ml_nn.hwh").unlink()), "has no hls4ml_nn.hwh beside it"),
    "not a bit file": (lambda p: (fake_bitstream(p), (p / "hls4ml_nn.bit").write_bytes(b"hello")),
                       "not a Xilinx .bit file"),
    "bit for another part": (lambda p: fake_bitstream(p, part="7z010clg400"), "built for part 7z010clg400"),
    "hwh of another design": (lambda p: fake_bitstream(p, hwh="<EDKSYSTEM><MODULES/></EDKSYSTEM>"),
                              "does not describe hier_0/axi_dma_0"),
    "corrupt hwh": (lambda p: fake_bitstream(p, hwh="<EDKSYSTEM"), "not a readable .hwh file"),
    "bit from another build": (lambda p: (fake_bitstream(p), write_manifest(p, files={"hls4ml_nn.bit": "0" * 64})),
                               "hls4ml_nn.bit is not the file manifest.json lists"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_fails_with_one_line_and_no_result(package, case):
    spoil, fragment = BAD_INPUTS[case]
    spoil(package)
    assert_failed(run(package, "--emulate"), ExitCode.USAGE, fragment, package)


BAD_OPTIONS = {
    "repeat 0": (["--repeat", "0"], "--repeat: must be at least 1"),
    "unknown option": (["--board", "x"], "unrecognized arguments"),
    "limit below a sample": (["--dma-limit", "8"], "--dma-limit 8 is smaller than one sample"),
    "missing explicit bitfile": (["--bitfile", "other.bit"], "bitstream other.bit not found"),
    "output folder missing": (["--output", "nowhere/y.npy"], "does not exist"),
    "output over input": (["--output", "X_test.npy"], "would overwrite the input"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=list(BAD_OPTIONS))
def test_bad_option_fails_with_one_line_and_no_result(package, case):
    args, fragment = BAD_OPTIONS[case]
    assert_failed(run(package, "--emulate", *args), ExitCode.USAGE, fragment, package)


def test_a_broken_library_is_a_board_failure(package):
    (package / "emulation" / LIBRARY_NAME).write_bytes(b"not an ELF file")
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
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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


def test_exit_codes_match_iris_fpga():
    module = _import_file(ON_TARGET, "on_target_codes")
    assert module.EXIT_OK == ExitCode.OK
    assert module.EXIT_CHECK_FAILED == ExitCode.CHECK_FAILED
    assert module.EXIT_USAGE == ExitCode.USAGE
    assert module.EXIT_BOARD == ExitCode.BOARD


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
