#!/usr/bin/env python3
"""Run the test vectors through the hls4ml accelerator on a PYNQ-Z2 and save what it computed.

On the board, in the copied package folder:   sudo python3 on_target.py
Without a board (an emulated PYNQ-Z2):         python on_target.py --emulate

Writes y_hw.npy (the accelerator's outputs, float32 (N, n_out)) and beside it y_hw.json (build id,
mode, pynq version, samples, latency and throughput, date, the array's sha256, ...), both or
neither: a failed run leaves no half-written result and never one without the other. Prints the
accuracy when y_test.npy is beside the input. --output names a .npy file (its record is
<name>.json beside it, so a pair is never split) and may name no file of the package.

manifest.json describes the IP (accelerator, part, n_in, n_out, input_type; today's PYNQ-Z2
values stand in for a field an older manifest lacks) and lists every file with its sha256: a
listed file that is a link, FIFO or folder is refused, and so is one it uses whose checksum
differs. Without manifest.json the run is refused unless --no-manifest asks for it (the record
then says "manifest_checked": false). Input values outside input_type's range are counted and
named, not refused: the run shows what the IP does with them.

Nothing runs that was not checked: the script's first statement takes its own folder off
sys.path (an unlisted numpy.py or statistics.py there never runs), and the driver and the
stand-in pynq run from the very bytes whose sha256 was checked, never through Python's import,
which would prefer a __pycache__/*.pyc beside them; no bytecode is written. Every line printed
passes names and text through printable(), so no control character reaches the terminal.

This script runs on the board's own Python (PYNQ images ship Python 3.8 to 3.10 with numpy and
pynq, no TensorFlow, no hls4ml): standard library, numpy and pynq only, Python 3.8 syntax, and it
cannot import iris_fpga. It drives the generated axi_stream_driver.py unmodified and works around
its pitfalls:
- predict() returns the live DMA buffer, which the next call overwrites: results are copied out;
- the IP reads its stream as float32 samples of n_in features and a size it cannot consume hangs
  the DMA on the board: the input is checked and made C-contiguous float32 (N, n_in) before any
  transfer;
- one DMA transfer is at most 2**26 - 1 bytes: a larger input goes in several transfers
  (--dma-limit lowers the limit, so tests reach it with small data);
- a transfer that never completes would hang predict() forever: each has a deadline (--timeout),
  after which the DMA channels are stopped and the run fails.

--emulate runs package/emulation/pynq/ as pynq: a stand-in whose accelerator is hls4ml's compiled
C-simulation with the package's own copy of the weights, or for an rtl package the project's
Verilog IP, Verilated (emulation/accelerator.json says which). It needs no bitstream (then
y_hw.json says "bitfile": null), and everything it prints and records is labelled as emulation.
Its library is compiled for the workstation (x86-64): on another machine (a board) --emulate
refuses (code 2). Its deadlines fit its own pace (EMULATED_SECONDS_PER_SAMPLE), and a transfer
slower than the board's deadline is reported as slow, not as a fault.

Order of checks: options, manifest, package files, output, input, bitstream (a missing
hls4ml_nn.bit without --emulate is an input error, code 2, and says to use --emulate), with
--emulate the library's machine (code 2), then pynq (with --emulate: its PYNQ_EMULATION_*
settings and the accelerator it emulates against the manifest's, code 2), root, driver, overlay,
DMA (code 4). On a workstation without pynq, a run with a bitstream present exits 4.
"""
import os
import sys

# First, before any other import: this folder off sys.path, and no bytecode written. Python puts a
# script's folder first on sys.path, so an unlisted statistics.py or numpy.py in the package would
# run at the next import (and a __future__.py at a `from __future__` import, which this script
# therefore has none of). os and sys are loaded by Python's own start-up, before any script runs.
_HERE = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != _HERE]
sys.dont_write_bytecode = True  # no __pycache__ in the package: the manifest lists its files

import argparse  # noqa: E402 (after the sys.path fix above, on purpose)
import datetime  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import xml.etree.ElementTree as ElementTree  # noqa: E402
from pathlib import Path, PurePosixPath  # noqa: E402
from typing import NamedTuple  # noqa: E402

# Exit codes: the same numbers as iris_fpga/errors.py (ExitCode), which this script cannot import
# because it runs on the board. Keep them in step (tests/test_on_target_drift.py checks).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # repeated runs of the accelerator disagreed
EXIT_USAGE = 2  # bad option; missing, corrupt or mismatched file; wrong shape or dtype
EXIT_BOARD = 4  # not a board, not root, overlay or driver does not load, DMA fault or timeout

PACKAGE_DIR = Path(os.path.abspath(__file__)).parent  # where the script is, links not followed
DRIVER_CLASS = "NeuralNetworkOverlay"

# The package contract: the same names as iris_fpga/contract.py, which this script cannot import.
# Keep them in step: tests/test_on_target_drift.py compares every constant of contract.py.
MANIFEST = "manifest.json"
RESULT_FILES = ("y_hw.npy", "y_hw.json")
DATA_FILES = ("X_test.npy", "y_test.npy", "classes.npy", "scaler.json")
CSIM_FILES = ("y_keras.npy", "y_hls.npy")
DRIVER = "axi_stream_driver.py"
BOARD_SCRIPT = "on_target.py"
NOTEBOOK = "on_target.ipynb"
ESTIMATE = "hardware_estimate.json"
PROFILE = "numerical_profile.png"
BITSTREAM_STEM = "hls4ml_nn"
BITSTREAM_FILES = (BITSTREAM_STEM + ".bit", BITSTREAM_STEM + ".hwh")
VIVADO_REPORTS = ("vivado_utilization.rpt", "vivado_timing.rpt")
EMULATION_DIR = "emulation"
STANDIN = EMULATION_DIR + "/pynq/__init__.py"  # the stand-in pynq of --emulate
MAX_MODULE_BYTES = 1 << 24  # the driver and the stand-in are a few tens of kB
PYCACHE = "__pycache__"
MANIFEST_FIELDS = {"build_id": str, "created": str, "settings": dict, "versions": dict, "files": dict}
MAX_MANIFEST_BYTES = 1 << 20
# Every name a package may hold a file of: --output may name none of them.
PACKAGE_FILES = DATA_FILES + CSIM_FILES + (DRIVER, BOARD_SCRIPT, NOTEBOOK, ESTIMATE, PROFILE, MANIFEST) \
    + BITSTREAM_FILES + VIVADO_REPORTS
DEFAULT_INPUT, LABELS_FILE = DATA_FILES[:2]
DEFAULT_BITFILE = BITSTREAM_FILES[0]
DEFAULT_OUTPUT = RESULT_FILES[0]

# The IP as manifest.json describes it; these values (hls4ml's IP for the PYNQ-Z2) stand in for a
# field that a manifest written before the fields existed lacks.
IP_DEFAULTS = {"accelerator": "hls", "part": "xc7z020clg400-1", "n_in": 4, "n_out": 3,
               "input_type": "ap_fixed<16,6>"}
ACCELERATORS = ("hls", "rtl")  # both stream float32 words through hier_0/axi_dma_0
MAX_WORDS = 1 << 16  # a sane bound on n_in and n_out
FLOAT32_BYTES = 4
DMA_TRANSFER_LIMIT = (1 << 26) - 1  # bytes per transfer: c_sg_length_width 26 in hls4ml's design
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 86400.0  # a day: longer is a mistake, and setitimer refuses far larger values
SECONDS_PER_SAMPLE = 50e-6  # added to the deadline per sample in a transfer (10x the IP's pace)
# The emulated board's deadline: the C-simulation takes about 40 us per sample on the workstation
# (this project's machine, 2 cores), so a board's 50 us would fail a large input on a busy computer.
EMULATED_SECONDS_PER_SAMPLE = 2e-3
# ELF e_machine of the emulation's library, by platform.machine() of the computers that can load it.
ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "armv7l": 40, "armv6l": 40,
                "i386": 3, "i686": 3}
ELF_NAMES = {62: "x86-64", 183: "64-bit ARM", 40: "32-bit ARM", 3: "x86 (32-bit)"}
BIT_HEADER = b"\x00\x09\x0f\xf0\x0f\xf0\x0f\xf0\x0f\xf0\x00\x00\x01"  # every Xilinx .bit starts so
SHOWN_SAMPLES = 10  # out-of-range samples named in the warning (the record keeps up to 100)


class TargetError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


class DeadlineExceeded(Exception):
    """Raised by SIGALRM inside a DMA wait that does not return."""


# --------------------------------------------------------------------------- options


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise TargetError("{} (see --help)".format(message), EXIT_USAGE)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("{!r} is not a whole number".format(text)) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got {}".format(value))
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("{!r} is not a number".format(text)) from None
    if not 0 < value <= MAX_TIMEOUT_S:  # also refuses nan
        raise argparse.ArgumentTypeError("must be above 0 and at most {:g} seconds, got {}".format(
            MAX_TIMEOUT_S, text))
    return value


def parse_args(argv):
    parser = _OneLineParser(
        prog="on_target.py",
        description="Run X_test.npy through the hls4ml accelerator on a PYNQ-Z2 (or an emulated one) "
        "and save y_hw.npy and y_hw.json.",
    )
    parser.add_argument("--emulate", action="store_true",
                        help="no board: use the emulated PYNQ-Z2 in emulation/ (C-simulation of the accelerator)")
    parser.add_argument("--bitfile", default=None,
                        help="bitstream; its .hwh must sit beside it (default {}; optional with --emulate)".format(
                            DEFAULT_BITFILE))
    parser.add_argument("--input", default=DEFAULT_INPUT,
                        help="float32 (N, n_in) .npy of scaled samples (default %(default)s)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="a .npy file to save the outputs in; their record goes beside it as <name>.json; no "
                        "file of the package (default %(default)s)")
    parser.add_argument("--repeat", type=_positive_int, default=1,
                        help="run the whole input N times for timing; all runs must agree (default 1)")
    parser.add_argument("--dma-limit", type=_positive_int, default=DMA_TRANSFER_LIMIT, metavar="BYTES",
                        help="largest DMA transfer in bytes; larger inputs are split (default 2**26-1)")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="deadline for each DMA transfer, plus {:g} s per sample in it ({:g} s with --emulate); "
                        "at most {:g} (default %(default)s)".format(SECONDS_PER_SAMPLE, EMULATED_SECONDS_PER_SAMPLE,
                                                                    MAX_TIMEOUT_S))
    parser.add_argument("--no-manifest", action="store_true",
                        help="run although {} is absent: no file is checked, and the record says so".format(MANIFEST))
    args = parser.parse_args(argv)
    if not (args.output.endswith(".npy") and Path(args.output).suffix == ".npy"):  # not "x.npy/", not ".npy"
        raise TargetError("--output {!r} is not a .npy file name: the outputs go there and their record beside it as "
                          "<name>.json, always as a pair (default {})".format(args.output, DEFAULT_OUTPUT))
    return args


def record_path(output):
    """Where the record of the outputs saved at ``output`` (a .npy file) goes: <name>.json beside it."""
    return output.with_suffix(".json")


# --------------------------------------------------------------------------- manifest and the IP


class Ip(NamedTuple):
    """The accelerator as manifest.json describes it (``defaulted``: fields it lacked)."""

    accelerator: str
    part: str
    n_in: int
    n_out: int
    input_type: str
    inputs: tuple  # the input type holds (low, high, low_closed, high_closed): see input_range
    defaulted: tuple

    @property
    def in_row_bytes(self):
        return self.n_in * FLOAT32_BYTES

    @property
    def out_row_bytes(self):
        return self.n_out * FLOAT32_BYTES


# ap_fixed<W,I[,Q[,O[,N]]]> as hls4ml writes a type (definition_cpp), and ap_int<W>.
FIXED_TYPE = re.compile(r"ap_(u?)fixed<\s*(\d{1,4})\s*,\s*(-?\d{1,4})\s*"
                        r"(?:,\s*AP_(TRN|TRN_ZERO|RND|RND_ZERO|RND_INF|RND_MIN_INF|RND_CONV)\s*"
                        r"(?:,\s*AP_(WRAP|SAT|SAT_ZERO|SAT_SYM)\s*(?:,\s*\d{1,4}\s*)?)?)?>")
INT_TYPE = re.compile(r"ap_(u?)int<\s*(\d{1,4})\s*>")
MAX_TYPE_BITS = 1024  # AP_INT_MAX_W
# As iris_fpga/flow/checks.py's EDGES: per rounding mode, how many steps below the lowest held value
# and below 2**top each edge lies, and whether a float exactly on it is held.
EDGES = {"TRN": (0.0, 0.0, True, False), "TRN_ZERO": (1.0, 0.0, False, False),
         "RND": (0.5, 0.5, True, False), "RND_CONV": (0.5, 0.5, True, False),
         "RND_ZERO": (0.5, 0.5, True, True), "RND_INF": (0.5, 0.5, False, False),
         "RND_MIN_INF": (0.5, 0.5, False, True)}


def read_manifest(allow_absent):
    """manifest.json beside this script, checked as iris_fpga.contract.read_manifest checks it."""
    path = PACKAGE_DIR / MANIFEST
    data = read_regular(path, MAX_MANIFEST_BYTES)
    if data is None:
        if allow_absent:
            return None
        raise TargetError("no {} beside on_target.py, so no file can be checked: copy the whole package "
                          "folder, or run with --no-manifest to use the files unchecked".format(MANIFEST))
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise TargetError("{} is corrupt ({}): copy the package folder again".format(path, _first_line(exc))) from None
    wrong = [k for k, kind in MANIFEST_FIELDS.items()
             if not isinstance(manifest, dict) or not isinstance(manifest.get(k), kind)]
    if wrong:
        raise TargetError("{} is not a manifest of this tool (field {!r} missing or of the wrong type): copy the "
                          "package folder again".format(path, wrong[0]))
    if not re.fullmatch("[0-9a-f]{16}", manifest["build_id"]):
        raise TargetError("{} has no valid build_id: copy the package folder again".format(path))
    bad = [n for n, digest in manifest["files"].items() if not _plain_relative(n) or not isinstance(digest, str)]
    if bad:
        raise TargetError("{}: file entry {!r} is not a plain relative path with a sha256".format(path, bad[0]))
    return manifest


def read_regular(path, limit):
    """The bytes of the regular file ``path``, at most ``limit`` of them; None when it is absent.

    Opened without following a link or waiting on a FIFO, and checked through its descriptor, so the
    bytes returned are those of the file that was checked (as iris_fpga/fileio.py's read_untrusted).
    """
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TargetError("{} is not a regular file of the package ({}): copy the package folder again".format(
            path, exc.strerror)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise TargetError("{} is not a regular file of at most {} bytes: copy the package folder again".format(
                path, limit))
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TargetError("{} is larger than {} bytes: copy the package folder again".format(path, limit))
    return data


def _plain_relative(name):
    """A manifest entry must be a plain relative POSIX path inside the package."""
    pure = PurePosixPath(name)
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and str(pure) == name \
        and "\\" not in name and not any(ord(c) < 32 or ord(c) == 127 for c in name) \
        and name != MANIFEST and name not in RESULT_FILES


def read_ip(manifest):
    """The IP's fields from the manifest, today's PYNQ-Z2 values for those it lacks."""
    given = manifest or {}
    values = {key: given.get(key, default) for key, default in IP_DEFAULTS.items()}
    if values["accelerator"] not in ACCELERATORS:
        raise TargetError("{} names accelerator {!r}: this on_target.py drives {}".format(
            MANIFEST, values["accelerator"], " and ".join(ACCELERATORS)))
    if not (isinstance(values["part"], str) and re.fullmatch("[A-Za-z0-9][A-Za-z0-9-]{2,40}", values["part"])):
        raise TargetError("{} names part {!r}: not a Xilinx part name".format(MANIFEST, values["part"]))
    for key in ("n_in", "n_out"):
        if type(values[key]) is not int or not 1 <= values[key] <= MAX_WORDS:
            raise TargetError("{} gives {} = {!r}: expected a whole number from 1 to {}".format(
                MANIFEST, key, values[key], MAX_WORDS))
    defaulted = tuple(sorted(key for key in IP_DEFAULTS if key not in given))
    return Ip(inputs=input_range(values["input_type"]), defaulted=defaulted, **values)


def input_range(type_name):
    """(low, high, low_closed, high_closed): the floats an ap_fixed<W,I[,Q[,O,...]]>, ap_ufixed,
    ap_int<W> or ap_uint<W> holds without overflow, by the rule of iris_fpga/flow/checks.py's
    input_range (which says why each line is so). ap_fixed<16,6>: [-32, 32).
    """
    match = isinstance(type_name, str) and (FIXED_TYPE.fullmatch(type_name) or INT_TYPE.fullmatch(type_name))
    if not match:
        raise TargetError("{} gives input_type {!r}: expected ap_fixed<W,I>, ap_ufixed<W,I> (optionally with "
                          "rounding and overflow modes), ap_int<W> or ap_uint<W>".format(MANIFEST, type_name))
    signed, width = match.group(1) != "u", int(match.group(2))
    fixed = match.re is FIXED_TYPE
    integer = int(match.group(3)) if fixed else width
    rounding = (match.group(4) if fixed else None) or "TRN"
    symmetric = int(signed and width > 1 and fixed and match.group(5) == "SAT_SYM")
    if not 1 <= width <= MAX_TYPE_BITS or abs(integer) > MAX_TYPE_BITS:
        raise TargetError("{} gives input_type {!r}: at most {} bits".format(MANIFEST, type_name, MAX_TYPE_BITS))
    step = 2.0 ** -(width - integer)
    top = integer - int(signed)  # high = 2**top
    high = float("inf") if top >= 1024 else math.ldexp(1.0, top)
    nominal_low = -high if signed else 0.0
    low_steps, high_steps, low_closed, high_closed = EDGES[rounding]
    if rounding == "RND_CONV":  # a tie goes to the even code
        code_min, code_max = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        low_closed, high_closed = (code_min + symmetric) % 2 == 0, (code_max + 1) % 2 == 1
    edge_low, edge_high = nominal_low + (symmetric - low_steps) * step, high - high_steps * step
    if edge_low == nominal_low and low_steps != symmetric:
        low_closed = low_steps > symmetric
    if edge_high == high and high_steps:
        high_closed = False
    return edge_low, edge_high, low_closed, high_closed


# --------------------------------------------------------------------------- files


def _import_numpy():
    try:
        import numpy
    except ImportError:
        raise TargetError("numpy is not installed for {}".format(sys.executable), EXIT_BOARD) from None
    return numpy


def check_listed_files(listed):
    """Every file the manifest lists is a regular file of the package, if present (links not followed)."""
    for name in sorted(listed):
        what = _not_regular(name)
        if what:
            raise TargetError("{} {}: the package holds the regular files {} lists; copy the package folder "
                              "again".format(name, what, MANIFEST))


def _not_regular(name):
    """Why PACKAGE_DIR/name is not a regular file of the package; None when it is, or is absent."""
    for parent in reversed(list(PurePosixPath(name).parents)[:-1]):
        if (PACKAGE_DIR / parent).is_symlink():
            return "lies under a symbolic link ({})".format(parent)
    try:
        mode = (PACKAGE_DIR / name).lstat().st_mode
    except FileNotFoundError:
        return None  # a file that is used says so itself
    except OSError as exc:
        return "is unreadable ({})".format(exc.strerror)
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a folder, FIFO or device)"
    return None


def _package_name(path):
    """The name ``path`` has in the package, or None when it lies elsewhere."""
    folder = os.path.realpath(str(Path(path).parent))
    relative = os.path.relpath(os.path.join(folder, Path(path).name), os.path.realpath(str(PACKAGE_DIR)))
    return None if relative == ".." or relative.startswith(".." + os.sep) else Path(relative).as_posix()


def verify_used(listed, paths):
    """Files of this package that the run uses must be the ones the manifest lists (not from another build)."""
    for path in paths:
        name = _package_name(path)
        expected = listed.get(name)
        if expected and path.is_file() and _sha256(path) != expected:
            raise TargetError("{} is not the file {} lists (its sha256 differs): a file from another build? "
                              "Copy the whole package folder again".format(name, MANIFEST))


def verify_emulation(listed):
    """Everything in emulation/ is imported or loaded by --emulate: each file listed and unchanged."""
    folder = PACKAGE_DIR / EMULATION_DIR
    for root, dirs, files in os.walk(str(folder)):
        dirs[:] = [d for d in dirs if d != PYCACHE]
        for entry in [d for d in dirs if os.path.islink(os.path.join(root, d))] + files:
            name = Path(root, entry).relative_to(PACKAGE_DIR).as_posix()
            if name not in listed:
                raise TargetError("{} is not a file {} lists: copy the package folder again".format(name, MANIFEST))
    verify_used(listed, [PACKAGE_DIR / name for name in listed if name.startswith(EMULATION_DIR + "/")])


def check_output(output, listed, used):
    """--output and its record may replace no file of the package and none this run reads."""
    target = Path(os.path.realpath(str(output.parent))) / output.name
    record = record_path(target)
    package = Path(os.path.realpath(str(PACKAGE_DIR)))
    protected = {package / name for name in set(PACKAGE_FILES) | set(listed)}
    protected |= {Path(os.path.realpath(str(path))) for path in used}
    folders = {package / parent for name in listed for parent in list(PurePosixPath(name).parents)[:-1]}
    folders.add(package / EMULATION_DIR)
    for path in (target, record):
        if path in protected or any(folder == path or folder in path.parents for folder in folders):
            raise TargetError("--output {} would replace {}, a file of the package or of this run: choose "
                              "another name (default {})".format(output, path.name, DEFAULT_OUTPUT))
        if path.is_dir():
            raise TargetError("--output {}: {} is a folder".format(output, path))


def _load_npy(np, path, what):
    """The one array in ``path``; its header is checked against the file's size before any read."""
    if not path.is_file():
        raise TargetError("{} {} not found (or not a regular file)".format(what, path))
    try:
        with open(str(path), "rb") as fh:
            _check_npy_header(np, fh)
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
    except Exception as exc:  # numpy raises many types for a damaged file; all mean "corrupt"
        raise TargetError("{} is not a readable .npy file ({})".format(path, _first_line(exc))) from None
    if not isinstance(array, np.ndarray):
        raise TargetError("{} is not a single .npy array".format(path))
    return array


def _check_npy_header(np, fh):
    """The header's shape and dtype must describe exactly the bytes that follow it."""
    version = np.lib.format.read_magic(fh)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise TargetError(".npy format version {}.{}, not 1.0 or 2.0".format(*version))
    shape, _, dtype = readers[version](fh)
    if dtype.hasobject:
        raise TargetError("it holds Python objects, which would need pickle")
    claimed = math.prod(shape) * dtype.itemsize
    present = os.fstat(fh.fileno()).st_size - fh.tell()
    if claimed != present:
        raise TargetError("its header claims shape {} of {}, {} bytes, but {} bytes follow".format(
            shape, dtype, claimed, present))


def load_input(np, path, ip):
    """The samples as C-contiguous float32 (N, n_in): what the accelerator's stream carries."""
    x = _load_npy(np, path, "input")
    if x.ndim != 2 or x.shape[1] != ip.n_in:
        raise TargetError("{} has shape {}: expected (N, {}), one row of {} scaled features per sample".format(
            path, x.shape, ip.n_in, ip.n_in))
    if x.shape[0] == 0:
        raise TargetError("{} holds no samples".format(path))
    if x.dtype.kind != "f" or x.dtype.itemsize != FLOAT32_BYTES:
        raise TargetError("{} has dtype {}: expected float32 (the accelerator reads float32; convert it "
                          "with astype(numpy.float32) if that is what you mean)".format(path, x.dtype))
    if not np.isfinite(x).all():
        raise TargetError("{} contains NaN or infinite values".format(path))
    return np.ascontiguousarray(x, dtype=np.float32)


def load_labels(np, input_path, n):
    """Class indices from y_test.npy beside the input, or (None, why not)."""
    path = input_path.parent / LABELS_FILE
    if not path.is_file():
        return None, "no {}".format(LABELS_FILE)
    y = _load_npy(np, path, "labels")
    if y.ndim not in (1, 2) or y.shape[0] != n or y.size == 0:
        return None, "{} has shape {}, not one label per input sample ({})".format(LABELS_FILE, y.shape, n)
    if y.dtype.kind not in "biuf" or not np.isfinite(y).all():
        return None, "{} holds {} values, not class indices or one-hot rows".format(LABELS_FILE, y.dtype)
    return (y.argmax(axis=1) if y.ndim == 2 else y.astype(int)), None


def out_of_range(np, x, ip):
    """Input values the IP's input type cannot hold (it wraps or saturates them), and their samples:
    the rule of iris_fpga/flow/checks.py's out_of_range, which names the samples only."""
    x = np.asarray(x, dtype=np.float64)  # float32 against the edges would round them (NEP 50)
    low, high, low_closed, high_closed = ip.inputs
    outside = ~np.isfinite(x) | ((x < low) if low_closed else (x <= low)) | ((x > high) if high_closed else (x >= high))
    rows = np.flatnonzero(outside.any(axis=1))
    return {"input_type": ip.input_type, "range": [low, high], "closed": [low_closed, high_closed],
            "values": int(outside.sum()), "samples": int(rows.size), "first_samples": rows[:100].tolist()}


def _sha256(path):
    digest = hashlib.sha256()
    with open(str(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bit_part(header):
    """The part name from a .bit header (field 'b'), or None if the header is not a .bit's."""
    if not header.startswith(BIT_HEADER):
        return None
    pos = len(BIT_HEADER)
    while pos + 3 <= len(header):
        key = header[pos:pos + 1]
        length = int.from_bytes(header[pos + 1:pos + 3], "big")
        value = header[pos + 3:pos + 3 + length]
        if key == b"b":
            return value.rstrip(b"\x00").decode("ascii", "replace")
        if key not in (b"a", b"c", b"d"):
            return None
        pos += 3 + length
    return None


def _device(part):
    """How a .bit header names a part: xc7z020clg400-1 -> 7z020clg400."""
    device = part.lower()
    return (device[2:] if device.startswith("xc") else device).split("-")[0]


def choose_bitfile(args):
    """The bitstream: always on a board; with --emulate only when named or present (else None)."""
    bitfile = Path(args.bitfile or DEFAULT_BITFILE)
    if bitfile.is_file() or args.bitfile or not args.emulate:
        if not bitfile.is_file() and not args.emulate:
            raise TargetError("bitstream {} not found in {}: copy hls4ml_nn.bit and hls4ml_nn.hwh (built by "
                              "Vivado) here; without a board or bitstream, run python on_target.py "
                              "--emulate".format(bitfile, Path.cwd()))
        return bitfile
    return None


def check_bitstream(bitfile, part):
    """A .bit for the IP's part with the .hwh of the design the driver expects beside it."""
    hwh = bitfile.with_suffix(".hwh")
    if not bitfile.is_file():
        raise TargetError("bitstream {} not found".format(bitfile))
    with open(str(bitfile), "rb") as fh:
        header = fh.read(512)
    bit_part = _bit_part(header)
    if bit_part is None:
        raise TargetError("{} is not a Xilinx .bit file (its header is wrong)".format(bitfile))
    if _device(part) not in bit_part.lower():
        raise TargetError("{} was built for part {}, not the IP's {} ({})".format(bitfile, bit_part, part, MANIFEST))
    if not hwh.is_file():
        raise TargetError("{} has no {} beside it: pynq needs both files of the same Vivado build".format(
            bitfile.name, hwh.name))
    try:
        data = hwh.read_bytes()
        ElementTree.fromstring(data)
    except (ElementTree.ParseError, OSError) as exc:
        raise TargetError("{} is not a readable .hwh file ({})".format(hwh, _first_line(exc))) from None
    if b"axi_dma_0" not in data:
        raise TargetError("{} does not describe hier_0/axi_dma_0, the DMA the hls4ml driver uses: "
                          "a .hwh from another design?".format(hwh))
    return hwh


def _atomic_files(contents):
    """Write {path: bytes} so that all files are replaced or none is (temporary files + renames)."""
    temps = []
    try:
        for path, data in contents.items():
            fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix="." + path.name + ".", suffix=".tmp")
            temps.append(tmp)
            os.fchmod(fd, 0o644)  # readable by the login user that fetches them after a sudo run
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        _replace_all(list(zip(contents, temps)))
    finally:
        for tmp in temps:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def _replace_all(pairs):
    """Rename each temporary file onto its path; if one rename fails, put the earlier files back.

    The old files are renamed aside first, so a result never sits beside another run's record.
    """
    moved = []
    try:
        for path, tmp in pairs:
            backup = tmp + ".old" if os.path.lexists(str(path)) else None
            if backup:
                os.replace(str(path), backup)
            moved.append((path, backup))
            os.replace(tmp, str(path))
    except BaseException:
        for path, backup in reversed(moved):
            try:
                if backup:
                    os.replace(backup, str(path))
                elif os.path.lexists(str(path)):
                    os.unlink(str(path))
            except OSError:
                pass  # the earlier file stays in its backup rather than being lost
        raise
    for _, backup in moved:
        if backup:
            os.unlink(backup)


def save_results(np, output, y, record):
    """y_hw.npy and its record, both or neither; the record carries the array's sha256."""
    buf = io.BytesIO()
    np.save(buf, y, allow_pickle=False)
    record = dict(record, output_sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    try:
        _atomic_files({output: buf.getvalue(), record_path(output): text.encode()})
    except OSError as exc:
        raise TargetError("cannot write {} ({})".format(output, exc.strerror or exc)) from None


# --------------------------------------------------------------------------- board


def import_pynq(emulate, listed):
    """The real pynq, or with --emulate the stand-in in emulation/ (run from its checked bytes), never
    one for the other."""
    pynq = load_standin(listed) if emulate else _import_real_pynq()
    emulated = getattr(pynq, "EMULATED", False) is True
    if emulate and not emulated:
        raise TargetError("--emulate loaded a pynq ({}) that is not the emulated board".format(
            getattr(pynq, "__file__", "?")), EXIT_BOARD)
    if not emulate and emulated:
        raise TargetError("the pynq found at {} is the emulation stand-in, not the real pynq: run with "
                          "--emulate or fix PYTHONPATH".format(getattr(pynq, "__file__", "?")), EXIT_BOARD)
    return pynq


def load_standin(listed):
    """emulation/pynq/__init__.py as the module ``pynq``, which the driver's ``from pynq import`` takes."""
    path = PACKAGE_DIR / STANDIN
    if not path.is_file():
        raise TargetError("{} holds no emulated board ({}): re-run the package step (python BuildModel.py "
                          "--from package)".format(PACKAGE_DIR / EMULATION_DIR, STANDIN))
    source = checked_source(path, listed)
    try:
        pynq = module_from_source("pynq", path, source, package=True)
    except Exception as exc:  # anything the stand-in raises at load means it does not load
        raise TargetError("the emulated board does not load: {}: {}".format(type(exc).__name__, _first_line(exc)),
                          EXIT_BOARD) from None
    sys.modules["pynq"] = pynq
    return pynq


def _import_real_pynq():
    """The board's installed pynq (this script's folder is off sys.path: never a file of the package)."""
    try:
        import pynq
    except ImportError:
        raise TargetError("pynq is not installed for {}: this is not a PYNQ board (without a board, run "
                          "python on_target.py --emulate)".format(sys.executable), EXIT_BOARD) from None
    except Exception as exc:  # a broken installation can raise anything at import
        raise TargetError("pynq does not load: {}: {}".format(type(exc).__name__, _first_line(exc)),
                          EXIT_BOARD) from None
    return pynq


def checked_source(path, listed):
    """The bytes of the package file ``path``, read once, whose sha256 is the one manifest.json lists.

    ``listed`` is the manifest's ``files`` (None without a manifest: then nothing is checked, and
    the record says so). A file the manifest does not list is refused: nothing runs unchecked.
    """
    name = _package_name(path) or str(path)
    source = read_regular(path, MAX_MODULE_BYTES)
    if source is None:
        raise TargetError("{} not found beside on_target.py: copy the whole package folder".format(name))
    if listed is not None and name not in listed:
        raise TargetError("{} is not a file {} lists, so it is not run: copy the package folder again".format(
            name, MANIFEST))
    if listed is not None and hashlib.sha256(source).hexdigest() != listed[name]:
        raise TargetError("{} is not the file {} lists (its sha256 differs): a file from another build? Copy the "
                          "whole package folder again".format(name, MANIFEST))
    return source


def module_from_source(name, path, source, package=False):
    """A fresh module run from ``source``, the checked bytes of ``path``.

    Not Python's import: that would run a __pycache__/*.pyc found beside the file instead (an
    unchecked-hash .pyc is never compared with its source) and read the file again after the check.
    Nothing is cached or written. ``package``: a package whose submodules come from nowhere.
    """
    module = types.ModuleType(name)
    module.__file__ = str(path)
    if package:
        module.__path__ = []
    exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    return module


def _elf_machine(path):
    """The e_machine field of an ELF file's header, or None if ``path`` is not an ELF file."""
    with open(str(path), "rb") as fh:
        header = fh.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[5] not in (1, 2):
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def check_emulation_runs_here(folder):
    """The emulation's library is compiled for the workstation (x86-64): refuse any other machine."""
    host = platform.machine()
    for library in sorted(folder.glob("*.so")):
        machine = _elf_machine(library)
        if machine is not None and ELF_MACHINES.get(host.lower()) != machine:
            raise TargetError("--emulate runs the emulation's library {}/{}, compiled for {}, which this {} machine "
                              "cannot load: on a PYNQ board run sudo python3 on_target.py (no --emulate)".format(
                                  EMULATION_DIR, library.name, ELF_NAMES.get(machine, "machine {}".format(machine)),
                                  host or "unknown"))


EMULATED_IPS = {"csim": "hls4ml's C-simulation library",
                "rtl": "the project's Verilog IP (the bitstream's design), Verilated, run clock by clock"}
IP_CLOCK_HZ = 100e6  # the IP's clock in hls4ml's PYNQ-Z2 block design (FCLK0)


def check_emulation_settings(pynq, manifest):
    """What the emulated board will run ("csim" or "rtl"), checked before it loads: the manifest's
    accelerator, and the stand-in's settings (PYNQ_EMULATION_*) well formed. Either wrong is an
    input error (code 2), not the board's failure."""
    try:
        pynq.check_settings()
        emulated = pynq.emulated_accelerator()
    except pynq.EmulationSettingError as exc:
        raise TargetError("emulated board: {}".format(_first_line(exc))) from None
    if emulated not in EMULATED_IPS:
        raise TargetError("{}/ emulates an unknown accelerator {!r}: re-run the package step".format(
            EMULATION_DIR, emulated))
    wanted = "rtl" if manifest and manifest.get("accelerator") == "rtl" else "csim"
    if manifest and emulated != wanted:
        raise TargetError("{} says the accelerator is {} but {}/ emulates {}: copy the whole package folder "
                          "again".format(MANIFEST, manifest.get("accelerator", "hls"), EMULATION_DIR, emulated))
    return emulated


def check_emulated_ip(overlay, manifest, expected):
    """The loaded emulation runs the ``expected`` accelerator and, for rtl, was built from the manifest's Verilog."""
    figures = overlay.emulation_figures()
    emulated = figures.get("emulated")
    if emulated != expected:
        raise TargetError("the emulated board runs {!r}, not the {} its {} names".format(
            emulated, expected, EMULATION_DIR + "/accelerator.json"), EXIT_BOARD)
    if manifest and emulated == "rtl" and figures.get("verilog_sha256") != manifest.get("ip_verilog_sha256"):
        raise TargetError("{}/'s Verilated IP was built from other Verilog (sha256 {}) than the IP {} names ({}): "
                          "copy the whole package folder again".format(EMULATION_DIR, figures.get("verilog_sha256"),
                                                                        MANIFEST, manifest.get("ip_verilog_sha256")))
    return emulated


def emulated_ip_record(figures, samples):
    """y_hw.json's fields for the emulated IP; for rtl, its clock cycles and what they mean at 100 MHz
    for a batch of ``samples``."""
    record = {"emulated": figures["emulated"]}
    if figures["emulated"] != "rtl" or not figures.get("ip_samples"):
        return record
    per_sample = figures["ip_cycles"] / figures["ip_samples"]
    record["ip_cycles_per_sample"] = round(per_sample, 4)
    record["ip_at_100mhz"] = {
        "samples_per_s": round(IP_CLOCK_HZ / per_sample),
        "batch_latency_s": per_sample * samples / IP_CLOCK_HZ,
        "what": "emulation of the RTL: clock cycles of the Verilated IP from the first input word to the last "
                "output word of each transfer ({} cycles for {} samples{}), at the PYNQ-Z2 design's 100 MHz clock; "
                "the IP alone, without the DMA's and the driver's time on a board".format(
                    figures["ip_cycles"], figures["ip_samples"],
                    ", with random pauses, seed {}".format(figures["pause_seed"]) if figures.get("pause_seed")
                    is not None else ""),
    }
    return record


def check_root():
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise TargetError("not root: loading an overlay needs root on the board (run: sudo python3 on_target.py)",
                          EXIT_BOARD)


def load_driver(listed):
    """The generated driver's overlay class, run from the driver's checked bytes."""
    path = PACKAGE_DIR / DRIVER
    source = checked_source(path, listed)
    try:
        module = module_from_source("axi_stream_driver", path, source)
    except Exception as exc:  # any error in the generated code means the driver does not load
        raise TargetError("the generated driver {} does not load: {}: {}".format(
            DRIVER, type(exc).__name__, _first_line(exc)), EXIT_BOARD) from None
    driver = getattr(module, DRIVER_CLASS, None)
    if driver is None:
        raise TargetError("{} defines no {}".format(DRIVER, DRIVER_CLASS), EXIT_BOARD)
    return driver


class Deadline:
    """Raise DeadlineExceeded in the main thread after ``seconds`` (pynq's DMA wait spins in Python)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self._armed = False
        self._previous = None

    def __enter__(self):
        self._armed = (self.seconds > 0 and hasattr(signal, "setitimer")
                       and threading.current_thread() is threading.main_thread())
        if self._armed:
            self._previous = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)
        return False

    def _expire(self, signum, frame):
        raise DeadlineExceeded()


class Accelerator:
    """The driver's overlay, fed in transfers the DMA can take, with results copied out."""

    def __init__(self, np, overlay, allocate, ip, dma_limit, timeout, where, emulated=False, say=None):
        self.np = np
        self.overlay = overlay
        self.allocate = allocate
        self.ip = ip
        self.timeout = timeout
        self.where = where
        self.emulated = emulated
        self.say = say
        self.slow = []  # emulation: transfers that took longer than the board's deadline for them
        self.limit = min([dma_limit] + self._dma_limits())
        self.rows = min(self.limit // ip.in_row_bytes, self.limit // ip.out_row_bytes)
        if self.rows < 1:
            raise TargetError("{}: the DMA takes at most {} bytes per transfer, less than one sample".format(
                where, self.limit), EXIT_BOARD)
        self._buffers = {}
        current = getattr(overlay, "input_buffer", None)
        if current is not None:
            self._buffers[current.shape[0]] = (overlay.input_buffer, overlay.output_buffer)

    def _dma_limits(self):
        """The length limits the DMA reports (pynq reads them from the .hwh)."""
        dma = getattr(getattr(self.overlay, "hier_0", None), "axi_dma_0", None)
        limits = []
        for value in (getattr(dma, "buffer_max_size", None),
                      getattr(getattr(self.overlay, "sendchannel", None), "_max_size", None),
                      getattr(getattr(self.overlay, "recvchannel", None), "_max_size", None)):
            if isinstance(value, int) and value > 0:
                limits.append(value)
        return limits

    def transfers(self, n):
        return -(-n // self.rows)

    def _use_buffers(self, rows):
        """The driver allocates buffers for one shape; give it ones of this transfer's shape."""
        if self.overlay.input_buffer.shape[0] == rows:
            return
        if rows not in self._buffers:
            self._buffers[rows] = (self.allocate(shape=(rows, self.ip.n_in), dtype=self.np.float32),
                                   self.allocate(shape=(rows, self.ip.n_out), dtype=self.np.float32))
        self.overlay.input_buffer, self.overlay.output_buffer = self._buffers[rows]

    def run(self, x):
        np = self.np
        n = x.shape[0]
        y = np.empty((n, self.ip.n_out), dtype=np.float32)
        for start in range(0, n, self.rows):
            chunk = x[start:start + self.rows]
            rows = chunk.shape[0]
            what = "the DMA transfer of samples {}..{}".format(start, start + rows - 1)
            deadline = self.deadline(rows)
            try:
                self._use_buffers(rows)
                began = time.perf_counter()
                with Deadline(deadline):
                    out = self.overlay.predict(chunk)
                self._note_if_slow(what, rows, time.perf_counter() - began)
                if getattr(out, "shape", None) != (rows, self.ip.n_out):
                    raise TargetError("{}: {} returned shape {}, expected {}".format(
                        self.where, what, getattr(out, "shape", None), (rows, self.ip.n_out)), EXIT_BOARD)
                y[start:start + rows] = out  # a copy: the driver returns its live DMA buffer
            except DeadlineExceeded:
                stopped = self.stop_dma()
                if self.emulated:
                    raise TargetError("{}: the emulation of {} did not finish within {:g} s (--timeout plus {:g} s "
                                      "per sample, the emulation's own pace; {}): this computer is slow or busy, not a "
                                      "board fault; raise --timeout or send fewer samples".format(
                                          self.where, what, deadline, EMULATED_SECONDS_PER_SAMPLE, stopped),
                                      EXIT_BOARD) from None
                raise TargetError("{}: {} did not complete within {:g} s ({}); reload the overlay by running "
                                  "again".format(self.where, what, deadline, stopped), EXIT_BOARD) from None
            except TargetError:
                self.stop_dma()
                raise
            except Exception as exc:  # DMA faults come as RuntimeError, ValueError, ...
                self.stop_dma()
                raise TargetError("{}: {} failed: {}".format(self.where, what, _first_line(exc)),
                                  EXIT_BOARD) from None
        return y

    def deadline(self, rows):
        """Seconds a transfer of ``rows`` samples may take: the board's pace, or the emulation's own."""
        return self.timeout + (EMULATED_SECONDS_PER_SAMPLE if self.emulated else SECONDS_PER_SAMPLE) * rows

    def _note_if_slow(self, what, rows, seconds):
        """Emulation: a transfer beyond the board's deadline is slow, not broken; say so once, record all."""
        board_deadline = self.timeout + SECONDS_PER_SAMPLE * rows
        if not self.emulated or seconds <= board_deadline:
            return
        if not self.slow:
            self.say("{} took {:.3f} s, longer than the board's deadline for it ({:g} s): the emulation on this "
                     "computer is slower than the FPGA; that is not a fault, the run goes on".format(
                         what, seconds, board_deadline))
        self.slow.append({"samples": rows, "seconds": round(seconds, 6), "board_deadline_s": board_deadline})

    def stop_dma(self):
        """Stop both DMA channels so that nothing stays hung; says what happened."""
        failed = []
        for name in ("sendchannel", "recvchannel"):
            stop = getattr(getattr(self.overlay, name, None), "stop", None)
            if stop is None:
                failed.append(name)
                continue
            try:
                with Deadline(2.0):
                    stop()
            except Exception:  # best effort: the run fails anyway and says so
                failed.append(name)
        if failed:
            return "could not stop " + " and ".join(failed)
        return "stopped the DMA channels"


def printable(text):
    """``str(text)`` with every non-printable character escaped as ``repr`` does (``\\x1b``, ``\\n``,
    ``\\u202e``), so that a name or text from a file can neither rewrite the terminal nor start a line
    of its own: the copy of iris_fpga/fileio.py's printable (tests/test_on_target_drift.py compares)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- main


class Job(NamedTuple):
    """What the run works on, all checked before the board is touched."""

    manifest: dict  # None with --no-manifest and no manifest.json
    ip: Ip
    x: object  # float32 (N, n_in)
    labels: object  # class indices, or None
    no_labels: str  # why there are none
    input_path: Path
    output: Path
    bitfile: Path  # None: emulation without a bitstream
    outside: dict  # input values outside the IP's input type


def prepare(np, args):
    """Options, manifest, package files, output, input, bitstream: every input error (code 2)."""
    manifest = read_manifest(args.no_manifest)
    ip = read_ip(manifest)
    if args.dma_limit < ip.in_row_bytes:
        raise TargetError("--dma-limit {} is smaller than one sample ({} bytes)".format(args.dma_limit, ip.in_row_bytes))
    listed = manifest["files"] if manifest else {}
    check_listed_files(listed)
    input_path, output = Path(args.input), Path(args.output)
    if not output.parent.is_dir():
        raise TargetError("--output {}: folder {} does not exist".format(output, output.parent))
    bitfile = choose_bitfile(args)
    used = [input_path, input_path.parent / LABELS_FILE, PACKAGE_DIR / DRIVER]
    used += [bitfile, bitfile.with_suffix(".hwh")] if bitfile else []
    check_output(output, listed, used)
    verify_used(listed, used)
    if args.emulate and manifest:
        verify_emulation(listed)
    x = load_input(np, input_path, ip)
    labels, no_labels = load_labels(np, input_path, x.shape[0])
    if bitfile:
        check_bitstream(bitfile, ip.part)
    return Job(manifest, ip, x, labels, no_labels, input_path, output, bitfile, out_of_range(np, x, ip))


def warn_out_of_range(say, outside):
    if not outside["values"]:
        return
    rows = outside["first_samples"][:SHOWN_SAMPLES]
    more = outside["samples"] - len(rows)
    (low, high), (low_closed, high_closed) = outside["range"], outside["closed"]
    say("warning: {} input value(s) in {} sample(s) ({}{}) lie outside {}'s range {}{:g}, {:g}{}: the IP turns "
        "them into other values; the run goes on so that its outputs show what it does with them".format(
            outside["values"], outside["samples"], ", ".join(map(str, rows)),
            " and {} more".format(more) if more else "", outside["input_type"],
            "[" if low_closed else "(", low, high, "]" if high_closed else ")"))


def warn_timing(say, manifest):
    """Every run says so when the bitstream misses timing (packaged on --accept-timing-violations)."""
    if not manifest or manifest.get("timing_met") is not False:
        return
    timing = manifest.get("timing") if isinstance(manifest.get("timing"), dict) else {}
    slack = ["{} {:g} ns".format(name, timing[key]) for name, key in (("WNS", "wns_ns"), ("WHS", "whs_ns"))
             if type(timing.get(key)) in (int, float)]
    say("warning: the package's bitstream does not meet timing ({}): it was packaged on --accept-timing-violations, "
        "and the board may compute wrong results".format(", ".join(slack) or "slack not recorded"))


def open_board(np, args, job, say, where):
    """pynq (real or emulated), the generated driver and its overlay, as an Accelerator."""
    listed = job.manifest["files"] if job.manifest else None
    if args.emulate:
        check_emulation_runs_here(PACKAGE_DIR / EMULATION_DIR)
    pynq = import_pynq(args.emulate, listed)
    if args.emulate:
        emulated = check_emulation_settings(pynq, job.manifest)
    else:
        check_root()
    driver = load_driver(listed)
    if args.emulate:
        say("EMULATED PYNQ-Z2, no FPGA: pynq stand-in {}".format(getattr(pynq, "__version__", "?")))
        if job.bitfile is None:
            say("no bitstream ({} absent): emulation needs none; the record says \"bitfile\": null".format(
                args.bitfile or DEFAULT_BITFILE))
        else:
            say("bitstream {} checked as pynq would; it is not loaded anywhere".format(job.bitfile))
    overlay = load_overlay(np, driver, args, job, where)
    if not args.emulate:
        say("overlay {} loaded".format(job.bitfile))
    else:
        check_emulated_ip(overlay, job.manifest, emulated)
        say("the accelerator is {} in {}/".format(EMULATED_IPS[emulated], EMULATION_DIR))
    return pynq, Accelerator(np, overlay, pynq.allocate, job.ip, args.dma_limit, args.timeout, where,
                             args.emulate, say)


def load_overlay(np, driver, args, job, where):
    """The driver's overlay with buffers for the first transfer, within a deadline."""
    first_rows = min(job.x.shape[0], args.dma_limit // job.ip.in_row_bytes)
    bit_argument = str(job.bitfile) if job.bitfile is not None else None
    try:
        with Deadline(args.timeout * 6):
            overlay = driver(bit_argument, (first_rows, job.ip.n_in), (first_rows, job.ip.n_out), dtype=np.float32)
    except DeadlineExceeded:
        raise TargetError("{}: the overlay did not load within {:g} s".format(where, args.timeout * 6),
                          EXIT_BOARD) from None
    except Exception as exc:  # pynq raises many types: all mean the overlay does not load
        raise TargetError("{}: the overlay does not load: {}: {}".format(
            where, type(exc).__name__, _first_line(exc)), EXIT_BOARD) from None
    return overlay


def measure(np, accelerator, x, repeat, where):
    """The outputs and the wall time of each of ``repeat`` passes; every pass must agree."""
    latencies = []
    y = None
    for attempt in range(repeat):
        began = time.perf_counter()
        result = accelerator.run(x)
        latencies.append(time.perf_counter() - began)
        if y is None:
            y = result
        elif not np.array_equal(result, y):
            differing = int((result != y).any(axis=1).sum())
            raise TargetError("{}: run {} of {} gave other outputs than run 1 for {} of {} samples: the "
                              "accelerator is not deterministic; nothing saved".format(
                                  where, attempt + 1, repeat, differing, x.shape[0]), EXIT_CHECK_FAILED)
    return y, latencies


def make_record(np, argv, args, job, pynq, accelerator, y, latencies):
    n = job.x.shape[0]
    fastest, median = min(latencies), statistics.median(latencies)
    record = {
        "build_id": job.manifest["build_id"] if job.manifest else None,
        "manifest_checked": job.manifest is not None,
        "mode": "emulation" if args.emulate else "board",
        "pynq_version": getattr(pynq, "__version__", None),
        "samples": n,
        "batch_latency_s": {"min": fastest, "median": median},
        "throughput_sps": {"max": n / fastest, "median": n / median},
        "repeat": args.repeat,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bitfile": job.bitfile.name if job.bitfile is not None else None,
        "argv": [BOARD_SCRIPT] + list(argv),
        "input": job.input_path.name,
        "output": job.output.name,
        "accuracy": float((y.argmax(axis=1) == job.labels).mean()) if job.labels is not None else None,
        "ip": dict(job.ip._asdict(), defaulted=list(job.ip.defaulted)),
        "inputs_outside_input_type": job.outside,
        "dma_transfer_limit_bytes": accelerator.limit,
        "transfers_per_batch": accelerator.transfers(n),
        "timing": "wall clock of one pass over the whole input through the driver's predict(), including "
                  "the copies into and out of the DMA buffers",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "emulation": None,
    }
    if args.emulate:
        figures = accelerator.overlay.emulation_figures()
        record["emulation"] = {
            "stand_in": getattr(pynq, "__version__", None),
            "note": "no FPGA: outputs computed by {} through a stand-in pynq; timings are of this computer, "
                    "not of the FPGA".format(EMULATED_IPS[figures["emulated"]]),
            "transfers_slower_than_board_deadline": accelerator.slow,
        }
        record.update(emulated_ip_record(figures, n))
        if job.bitfile is None:
            record["emulation"]["bitfile"] = "none: emulation needs no bitstream"
    return record


def report(say, args, job, y, record):
    n = record["samples"]
    fastest, median = record["batch_latency_s"]["min"], record["batch_latency_s"]["median"]
    kind = "emulated (this computer, not the FPGA)" if args.emulate else "measured on the board"
    say("{} samples x {} run(s) in {} DMA transfer(s) each: batch latency min {:.3f} ms, median {:.3f} ms; "
        "throughput max {:,.0f} samples/s, median {:,.0f} samples/s, {}".format(
            n, args.repeat, record["transfers_per_batch"], fastest * 1e3, median * 1e3, n / fastest, n / median,
            kind))
    if "ip_cycles_per_sample" in record:
        say("the IP took {:.3f} clock cycles per sample: at 100 MHz, {:,.0f} samples/s and {:.2f} us per batch "
            "(emulation of the RTL: the IP alone, not the board's DMA and driver)".format(
                record["ip_cycles_per_sample"], record["ip_at_100mhz"]["samples_per_s"],
                record["ip_at_100mhz"]["batch_latency_s"] * 1e6))
    accuracy = record["accuracy"]
    if accuracy is not None:
        say("accuracy on {}: {}/{} = {:.2%}".format(LABELS_FILE, int(round(accuracy * n)), n, accuracy))
    else:
        say("accuracy not computed: {}".format(job.no_labels))
    if not record["manifest_checked"]:
        say("warning: no {}: run with --no-manifest, no file was checked; the record says so".format(MANIFEST))
    say("saved {} {} and {}".format(job.output, y.shape, record_path(job.output)))


def run(argv):
    args = parse_args(argv)
    label, where = ("[emulation]", "emulated board") if args.emulate else ("[board]", "board")

    def say(text):
        print("{} {}".format(label, printable(text)), flush=True)

    np = _import_numpy()
    job = prepare(np, args)
    warn_out_of_range(say, job.outside)
    warn_timing(say, job.manifest)
    pynq, accelerator = open_board(np, args, job, say, where)
    y, latencies = measure(np, accelerator, job.x, args.repeat, where)
    record = make_record(np, argv, args, job, pynq, accelerator, y, latencies)
    save_results(np, job.output, y, record)
    report(say, args, job, y, record)
    return EXIT_OK


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return run(argv)
    except TargetError as exc:
        print("error: {}".format(printable(exc)), file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # never a traceback: one line and the board's code
        print("error: unexpected {}: {}".format(type(exc).__name__, printable(_first_line(exc))), file=sys.stderr,
              flush=True)
        return EXIT_BOARD


if __name__ == "__main__":
    sys.exit(main())
