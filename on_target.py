#!/usr/bin/env python3
"""Run the test vectors through the hls4ml accelerator on a PYNQ-Z2 and save what it computed.

On the board, in the copied package folder:   sudo python3 on_target.py
Without a board (an emulated PYNQ-Z2):         python on_target.py --emulate

Writes y_hw.npy (the accelerator's outputs, float32 (N, 3)) and beside it y_hw.json (build id,
mode, pynq version, samples, latency and throughput, date, ...), both atomically: a failed run
leaves no half-written result. Prints the accuracy when y_test.npy is beside the input.

This script runs on the board's own Python (PYNQ images ship Python 3.8 to 3.10 with numpy and
pynq, no TensorFlow, no hls4ml): standard library, numpy and pynq only, Python 3.8 syntax, and it
cannot import iris_fpga. It drives the generated axi_stream_driver.py unmodified and works around
its pitfalls:
- predict() returns the live DMA buffer, which the next call overwrites: results are copied out;
- the IP reads its stream as float32 samples of 4 features and a size it cannot consume hangs the
  DMA on the board: the input is checked and made C-contiguous float32 (N, 4) before any transfer;
- one DMA transfer is at most 2**26 - 1 bytes: a larger input goes in several transfers
  (--dma-limit lowers the limit, so tests reach it with small data);
- a transfer that never completes would hang predict() forever: each has a deadline (--timeout),
  after which the DMA channels are stopped and the run fails.

--emulate puts package/emulation/ on sys.path: a stand-in pynq whose accelerator is hls4ml's
compiled C-simulation, with the package's own copy of the weights. It needs no bitstream (then
y_hw.json says "bitfile": null), and everything it prints and records is labelled as emulation.
Its library is compiled for the workstation (x86-64): on another machine (a board) --emulate
refuses (code 2). Its deadlines fit its own pace (EMULATED_SECONDS_PER_SAMPLE), and a transfer
slower than the board's deadline is reported as slow, not as a fault.

Order of checks: options, input, manifest, bitstream (a missing hls4ml_nn.bit without --emulate
is an input error, code 2, and says to use --emulate), with --emulate the library's machine
(code 2), then pynq, root, driver, overlay, DMA
(code 4). On a workstation without pynq, a run with a bitstream present exits 4.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# Exit codes: the same numbers as iris_fpga/errors.py (ExitCode), which this script cannot import
# because it runs on the board. Keep them in step (tests/test_on_target.py checks).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # repeated runs of the accelerator disagreed
EXIT_USAGE = 2  # bad option; missing, corrupt or mismatched file; wrong shape or dtype
EXIT_BOARD = 4  # not a board, not root, overlay or driver does not load, DMA fault or timeout

PACKAGE_DIR = Path(__file__).resolve().parent
DRIVER_FILE = "axi_stream_driver.py"
DRIVER_CLASS = "NeuralNetworkOverlay"
MANIFEST = "manifest.json"
EMULATION_DIR = "emulation"
LABELS_FILE = "y_test.npy"
DEFAULT_BITFILE = "hls4ml_nn.bit"
DEFAULT_INPUT = "X_test.npy"
DEFAULT_OUTPUT = "y_hw.npy"

N_INPUTS = 4  # features per sample: the accelerator's input layer width
N_OUTPUTS = 3  # classes: its output layer width
FLOAT32_BYTES = 4
IN_ROW_BYTES = N_INPUTS * FLOAT32_BYTES
OUT_ROW_BYTES = N_OUTPUTS * FLOAT32_BYTES
DMA_TRANSFER_LIMIT = (1 << 26) - 1  # bytes per transfer: c_sg_length_width 26 in hls4ml's design
DEFAULT_TIMEOUT_S = 10.0
SECONDS_PER_SAMPLE = 50e-6  # added to the deadline per sample in a transfer (10x the IP's pace)
# The emulated board's deadline: the C-simulation takes about 40 us per sample on the workstation
# (this project's machine, 2 cores), so a board's 50 us would fail a large input on a busy computer.
EMULATED_SECONDS_PER_SAMPLE = 2e-3
# ELF e_machine of the emulation's library, by platform.machine() of the computers that can load it.
ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "armv7l": 40, "armv6l": 40,
                "i386": 3, "i686": 3}
ELF_NAMES = {62: "x86-64", 183: "64-bit ARM", 40: "32-bit ARM", 3: "x86 (32-bit)"}
BIT_HEADER = b"\x00\x09\x0f\xf0\x0f\xf0\x0f\xf0\x0f\xf0\x00\x00\x01"  # every Xilinx .bit starts so
PYNQ_Z2_PART = "7z020"


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


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("{!r} is not a number".format(text)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be above 0, got {}".format(text))
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
                        help="float32 (N, {}) .npy of scaled samples (default %(default)s)".format(N_INPUTS))
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="where to save the outputs; the record goes beside it as .json (default %(default)s)")
    parser.add_argument("--repeat", type=_positive_int, default=1,
                        help="run the whole input N times for timing; all runs must agree (default 1)")
    parser.add_argument("--dma-limit", type=_positive_int, default=DMA_TRANSFER_LIMIT, metavar="BYTES",
                        help="largest DMA transfer in bytes; larger inputs are split (default 2**26-1)")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="deadline for each DMA transfer, plus {:g} s per sample in it ({:g} s with --emulate) "
                             "(default %(default)s)".format(SECONDS_PER_SAMPLE, EMULATED_SECONDS_PER_SAMPLE))
    args = parser.parse_args(argv)
    if args.dma_limit < IN_ROW_BYTES:
        raise TargetError("--dma-limit {} is smaller than one sample ({} bytes)".format(args.dma_limit, IN_ROW_BYTES))
    return args


# --------------------------------------------------------------------------- files


def _import_numpy():
    try:
        import numpy
    except ImportError:
        raise TargetError("numpy is not installed for {}".format(sys.executable), EXIT_BOARD) from None
    return numpy


def _load_npy(np, path, what):
    if not path.is_file():
        raise TargetError("{} {} not found".format(what, path))
    try:
        with open(str(path), "rb") as fh:
            array = np.load(fh, allow_pickle=False)
    except Exception as exc:  # numpy raises many types for a damaged file; all mean "corrupt"
        raise TargetError("{} is not a readable .npy file ({})".format(path, _first_line(exc))) from None
    if not isinstance(array, np.ndarray):
        raise TargetError("{} is not a single .npy array".format(path))
    return array


def load_input(np, path):
    """The samples as C-contiguous float32 (N, 4): what the accelerator's stream carries."""
    x = _load_npy(np, path, "input")
    if x.ndim != 2 or x.shape[1] != N_INPUTS:
        raise TargetError("{} has shape {}: expected (N, {}), one row of {} scaled features per sample".format(
            path, x.shape, N_INPUTS, N_INPUTS))
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
    return (y.argmax(axis=1) if y.ndim == 2 else y.astype(int)), None


def read_manifest():
    path = PACKAGE_DIR / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError("{} is corrupt ({}): copy the package folder again".format(path, _first_line(exc))) from None
    build_id = manifest.get("build_id") if isinstance(manifest, dict) else None
    if not (isinstance(build_id, str) and len(build_id) == 16 and all(c in "0123456789abcdef" for c in build_id)):
        raise TargetError("{} has no valid build_id: copy the package folder again".format(path))
    return manifest


def check_against_manifest(manifest, paths):
    """Files of this package must be the ones the manifest lists (not from another build)."""
    if not manifest:
        return
    listed = manifest.get("files") or {}
    for path in paths:
        try:
            name = path.resolve().relative_to(PACKAGE_DIR).as_posix()
        except ValueError:
            continue  # not part of the package
        expected = listed.get(name)
        if expected and _sha256(path) != expected:
            raise TargetError("{} is not the file {} lists (its sha256 differs): a file from another build? "
                              "Copy the whole package folder again".format(name, MANIFEST))


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


def check_bitstream(bitfile):
    """A .bit for the PYNQ-Z2's part with the .hwh of the design the driver expects beside it."""
    hwh = bitfile.with_suffix(".hwh")
    if not bitfile.is_file():
        raise TargetError("bitstream {} not found".format(bitfile))
    with open(str(bitfile), "rb") as fh:
        header = fh.read(512)
    part = _bit_part(header)
    if part is None:
        raise TargetError("{} is not a Xilinx .bit file (its header is wrong)".format(bitfile))
    if PYNQ_Z2_PART not in part:
        raise TargetError("{} was built for part {}, not the PYNQ-Z2's xc{}".format(bitfile, part, PYNQ_Z2_PART))
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
    """Write {path: bytes} so that each file is complete or untouched (temporary file + rename)."""
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
        for (path, _), tmp in zip(contents.items(), temps):
            os.replace(tmp, str(path))
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save_results(np, output, y, record):
    import io

    buf = io.BytesIO()
    np.save(buf, y, allow_pickle=False)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    try:
        _atomic_files({output: buf.getvalue(), output.with_suffix(".json"): text.encode()})
    except OSError as exc:
        raise TargetError("cannot write {} ({})".format(output, exc.strerror or exc)) from None


# --------------------------------------------------------------------------- board


def import_pynq(emulate):
    """The real pynq, or with --emulate the stand-in in emulation/, never one for the other."""
    if emulate:
        folder = PACKAGE_DIR / EMULATION_DIR
        if not (folder / "pynq" / "__init__.py").is_file():
            raise TargetError("{} holds no emulated board (pynq/__init__.py): re-run the package step "
                              "(python BuildModel.py --from package)".format(folder))
        sys.path.insert(0, str(folder))
    try:
        import pynq
    except ImportError as exc:
        if emulate:
            raise TargetError("the emulated board does not load: {}".format(_first_line(exc)), EXIT_BOARD) from None
        raise TargetError("pynq is not installed for {}: this is not a PYNQ board (without a board, run "
                          "python on_target.py --emulate)".format(sys.executable), EXIT_BOARD) from None
    except Exception as exc:  # a broken installation can raise anything at import
        raise TargetError("pynq does not load: {}: {}".format(type(exc).__name__, _first_line(exc)),
                          EXIT_BOARD) from None
    emulated = getattr(pynq, "EMULATED", False) is True
    if emulate and not emulated:
        raise TargetError("--emulate imported a real pynq ({}) instead of the emulated board".format(
            getattr(pynq, "__file__", "?")), EXIT_BOARD)
    if not emulate and emulated:
        raise TargetError("the pynq found at {} is the emulation stand-in, not the real pynq: run with "
                          "--emulate or fix PYTHONPATH".format(getattr(pynq, "__file__", "?")), EXIT_BOARD)
    return pynq


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


def check_emulated_ip(overlay, manifest):
    """What the emulated board runs ("csim" or "rtl"): the manifest's accelerator, built from its Verilog."""
    figures = overlay.emulation_figures()
    emulated = figures.get("emulated")
    if emulated not in EMULATED_IPS:
        raise TargetError("the emulated board runs an unknown accelerator {!r}: re-run the package step".format(
            emulated), EXIT_BOARD)
    if not manifest:
        return emulated
    wanted = "rtl" if manifest.get("accelerator") == "rtl" else "csim"
    if emulated != wanted:
        raise TargetError("{} says the accelerator is {} but {}/ emulates {}: copy the whole package folder "
                          "again".format(MANIFEST, manifest.get("accelerator", "hls"), EMULATION_DIR, emulated))
    if emulated == "rtl" and figures.get("verilog_sha256") != manifest.get("ip_verilog_sha256"):
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


def load_driver():
    path = PACKAGE_DIR / DRIVER_FILE
    if not path.is_file():
        raise TargetError("{} not found beside on_target.py: copy the whole package folder".format(DRIVER_FILE))
    spec = importlib.util.spec_from_file_location("axi_stream_driver", str(path))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in the generated code means the driver does not load
        raise TargetError("the generated driver {} does not load: {}: {}".format(
            DRIVER_FILE, type(exc).__name__, _first_line(exc)), EXIT_BOARD) from None
    driver = getattr(module, DRIVER_CLASS, None)
    if driver is None:
        raise TargetError("{} defines no {}".format(DRIVER_FILE, DRIVER_CLASS), EXIT_BOARD)
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

    def __init__(self, np, overlay, allocate, dma_limit, timeout, where, emulated=False, say=None):
        self.np = np
        self.overlay = overlay
        self.allocate = allocate
        self.timeout = timeout
        self.where = where
        self.emulated = emulated
        self.say = say
        self.slow = []  # emulation: transfers that took longer than the board's deadline for them
        self.limit = min([dma_limit] + self._dma_limits())
        self.rows = min(self.limit // IN_ROW_BYTES, self.limit // OUT_ROW_BYTES)
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
            self._buffers[rows] = (self.allocate(shape=(rows, N_INPUTS), dtype=self.np.float32),
                                   self.allocate(shape=(rows, N_OUTPUTS), dtype=self.np.float32))
        self.overlay.input_buffer, self.overlay.output_buffer = self._buffers[rows]

    def run(self, x):
        np = self.np
        n = x.shape[0]
        y = np.empty((n, N_OUTPUTS), dtype=np.float32)
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
                if getattr(out, "shape", None) != (rows, N_OUTPUTS):
                    raise TargetError("{}: {} returned shape {}, expected {}".format(
                        self.where, what, getattr(out, "shape", None), (rows, N_OUTPUTS)), EXIT_BOARD)
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


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- main


def run(argv):
    args = parse_args(argv)
    emulate = args.emulate
    label = "[emulation]" if emulate else "[board]"
    where = "emulated board" if emulate else "board"

    def say(text):
        print("{} {}".format(label, text), flush=True)

    np = _import_numpy()
    input_path = Path(args.input)
    output = Path(args.output)
    x = load_input(np, input_path)
    n = x.shape[0]
    labels, no_labels = load_labels(np, input_path, n)
    if not output.parent.is_dir():
        raise TargetError("--output {}: folder {} does not exist".format(output, output.parent))
    if output.resolve() == input_path.resolve() or output.suffix == ".json":
        raise TargetError("--output {} would overwrite the input or the record: choose another name".format(output))
    manifest = read_manifest()

    bitfile = Path(args.bitfile or DEFAULT_BITFILE)
    used_bitfile = None
    if bitfile.is_file() or args.bitfile or not emulate:
        if not bitfile.is_file() and not emulate:
            raise TargetError("bitstream {} not found in {}: copy hls4ml_nn.bit and hls4ml_nn.hwh (built by "
                              "Vivado) here; without a board or bitstream, run python on_target.py "
                              "--emulate".format(bitfile, Path.cwd()))
        hwh = check_bitstream(bitfile)
        check_against_manifest(manifest, [bitfile, hwh])
        used_bitfile = bitfile
    check_against_manifest(manifest, [input_path, PACKAGE_DIR / DRIVER_FILE])
    if emulate:
        emulation = PACKAGE_DIR / EMULATION_DIR
        check_against_manifest(manifest, sorted(p for p in emulation.rglob("*") if p.is_file()))

    if emulate:
        check_emulation_runs_here(PACKAGE_DIR / EMULATION_DIR)
    pynq = import_pynq(emulate)
    if not emulate:
        check_root()
    driver = load_driver()

    if emulate:
        say("EMULATED PYNQ-Z2, no FPGA: pynq stand-in {}".format(getattr(pynq, "__version__", "?")))
        if used_bitfile is None:
            say("no bitstream ({} absent): emulation needs none; the record says \"bitfile\": null".format(bitfile))
        else:
            say("bitstream {} checked as pynq would; it is not loaded anywhere".format(used_bitfile))

    first_rows = min(n, args.dma_limit // IN_ROW_BYTES)
    bit_argument = str(used_bitfile) if used_bitfile is not None else None
    try:
        with Deadline(args.timeout * 6):
            overlay = driver(bit_argument, (first_rows, N_INPUTS), (first_rows, N_OUTPUTS), dtype=np.float32)
    except DeadlineExceeded:
        raise TargetError("{}: the overlay did not load within {:g} s".format(where, args.timeout * 6),
                          EXIT_BOARD) from None
    except Exception as exc:  # pynq raises many types: all mean the overlay does not load
        raise TargetError("{}: the overlay does not load: {}: {}".format(
            where, type(exc).__name__, _first_line(exc)), EXIT_BOARD) from None
    if not emulate:
        say("overlay {} loaded".format(used_bitfile))
    else:
        emulated = check_emulated_ip(overlay, manifest)
        say("the accelerator is {} in {}/".format(EMULATED_IPS[emulated], EMULATION_DIR))

    accelerator = Accelerator(np, overlay, pynq.allocate, args.dma_limit, args.timeout, where, emulate, say)
    latencies = []
    y = None
    for attempt in range(args.repeat):
        began = time.perf_counter()
        result = accelerator.run(x)
        latencies.append(time.perf_counter() - began)
        if y is None:
            y = result
        elif not np.array_equal(result, y):
            differing = int((result != y).any(axis=1).sum())
            raise TargetError("{}: run {} of {} gave other outputs than run 1 for {} of {} samples: the "
                              "accelerator is not deterministic; nothing saved".format(
                                  where, attempt + 1, args.repeat, differing, n), EXIT_CHECK_FAILED)

    fastest, median = min(latencies), statistics.median(latencies)
    accuracy = None
    if labels is not None:
        accuracy = float((y.argmax(axis=1) == labels).mean())
    record = {
        "build_id": manifest["build_id"] if manifest else None,
        "mode": "emulation" if emulate else "board",
        "pynq_version": getattr(pynq, "__version__", None),
        "samples": n,
        "batch_latency_s": {"min": fastest, "median": median},
        "throughput_sps": {"max": n / fastest, "median": n / median},
        "repeat": args.repeat,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bitfile": used_bitfile.name if used_bitfile is not None else None,
        "argv": ["on_target.py"] + list(argv),
        "input": input_path.name,
        "output": output.name,
        "accuracy": accuracy,
        "dma_transfer_limit_bytes": accelerator.limit,
        "transfers_per_batch": accelerator.transfers(n),
        "timing": "wall clock of one pass over the whole input through the driver's predict(), including "
                  "the copies into and out of the DMA buffers",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "emulation": None,
    }
    if emulate:
        record["emulation"] = {
            "stand_in": getattr(pynq, "__version__", None),
            "note": "no FPGA: outputs computed by {} through a stand-in pynq; timings are of this computer, "
                    "not of the FPGA".format(EMULATED_IPS[emulated]),
            "transfers_slower_than_board_deadline": accelerator.slow,
        }
        record.update(emulated_ip_record(overlay.emulation_figures(), n))
        if used_bitfile is None:
            record["emulation"]["bitfile"] = "none: emulation needs no bitstream"
    save_results(np, output, y, record)

    kind = "emulated (this computer, not the FPGA)" if emulate else "measured on the board"
    say("{} samples x {} run(s) in {} DMA transfer(s) each: batch latency min {:.3f} ms, median {:.3f} ms; "
        "throughput max {:,.0f} samples/s, median {:,.0f} samples/s, {}".format(
            n, args.repeat, accelerator.transfers(n), fastest * 1e3, median * 1e3, n / fastest, n / median, kind))
    if "ip_cycles_per_sample" in record:
        say("the IP took {:.3f} clock cycles per sample: at 100 MHz, {:,.0f} samples/s and {:.2f} us per batch "
            "(emulation of the RTL: the IP alone, not the board's DMA and driver)".format(
                record["ip_cycles_per_sample"], record["ip_at_100mhz"]["samples_per_s"],
                record["ip_at_100mhz"]["batch_latency_s"] * 1e6))
    if accuracy is not None:
        say("accuracy on {}: {}/{} = {:.2%}".format(LABELS_FILE, int(round(accuracy * n)), n, accuracy))
    else:
        say("accuracy not computed: {}".format(no_labels))
    say("saved {} {} and {}".format(output, y.shape, output.with_suffix(".json")))
    return EXIT_OK


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    sys.dont_write_bytecode = True  # no __pycache__ in the package: the manifest lists its files
    try:
        return run(argv)
    except TargetError as exc:
        print("error: {}".format(exc), file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # never a traceback: one line and the board's code
        print("error: unexpected {}: {}".format(type(exc).__name__, _first_line(exc)), file=sys.stderr, flush=True)
        return EXIT_BOARD


if __name__ == "__main__":
    sys.exit(main())
