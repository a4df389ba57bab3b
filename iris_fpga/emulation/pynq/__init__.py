"""A stand-in for the ``pynq`` package: an emulated PYNQ-Z2 running the package's accelerator.

THIS IS NOT THE REAL PYNQ. It lets the unmodified, hls4ml-generated ``axi_stream_driver.py``
(``NeuralNetworkOverlay``) run on a workstation with no FPGA: ``allocate`` returns numpy-backed
buffers, the DMA channels of ``hier_0.axi_dma_0`` implement ``transfer``/``wait``, and for an
``hls`` package the accelerator's stream is computed by the HLS C-simulation library that hls4ml compiled
(``myproject_float(float*, float*)`` through ctypes, one sample at a time; no TensorFlow or
hls4ml at run time).

For an ``rtl`` package (``accelerator.json`` says ``"emulated": "rtl"``) the accelerator is the
project's own Verilog IP instead, Verilated into ``myproject_rtl.so`` (C interface ``ipemu_*``):
the DMA's words go through its AXI-Stream ports clock by clock, TLAST included, and it counts the
cycles. The C-simulation library reads its weights from ``weights/`` beside itself (listed in
``accelerator.json``) at its first call: the package's own copies, so nothing outside the
package is read.

It models the board's failure modes instead of hiding them, so code that would hang or return
garbage on the board fails here too:
- a send whose size is not a whole number of input samples (the IP would wait for the rest of
  the last sample and ``wait()`` would never return on the board) is an error (rtl: the IP takes
  the words and the receive times out, as on the board, but never hangs);
- a transfer above the DMA's length limit (2**26 - 1 bytes for hls4ml's pynq-z2 design) raises
  the same ``ValueError`` as pynq;
- a receive with nothing sent times out with an error (on the board it hangs);
- a receive buffer smaller than what the accelerator produced is a DMA error;
- after an error the channel stays halted until the overlay is loaded again, as on the board.

The stream carries raw float32 bytes, as the accelerator's AXI stream does: a buffer of another
dtype is reinterpreted, not converted.

Where it lives: ``package/emulation/pynq/`` beside ``accelerator.json`` and the library (see
``iris_fpga.emulation.stage``). Only ``on_target.py --emulate`` runs it, from the bytes it checked
against the manifest, as the module ``pynq``; nothing puts it on ``sys.path``, so it never shadows a
real pynq. Standard library and numpy only, Python 3.8 syntax (and no ``__future__`` import).

Environment: ``PYNQ_EMULATION_MAX_TRANSFER`` (bytes) lowers the emulated DMA's length limit, so
tests reach it with small data. A malformed setting, or an unreadable ``accelerator.json``, raises
``EmulationSettingError``; ``check_settings()`` and ``emulated_accelerator()`` let on_target.py
find both before the overlay loads.
"""
import ctypes
import json
import logging
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

__version__ = "1.0.0+iris-fpga-emulation"
EMULATED = True  # a real pynq has no such attribute: on_target.py checks it

log = logging.getLogger("pynq.emulation")

EMULATION_DIR = Path(__file__).resolve().parent.parent
ACCELERATOR_JSON = "accelerator.json"
MAX_TRANSFER_ENV = "PYNQ_EMULATION_MAX_TRANSFER"
PAUSES_ENV = "PYNQ_EMULATION_PAUSES"  # rtl: a seed for random pauses on both streams
SG_LENGTH_WIDTH = 26  # c_sg_length_width in hls4ml's pynq-z2 design.tcl
DEFAULT_MAX_TRANSFER = (1 << SG_LENGTH_WIDTH) - 1
STREAM_WORD_BYTES = 4  # float32 on the AXI stream (bit_width_hls_input/output = 32)

__all__ = ["Overlay", "allocate", "PynqBuffer", "EmulatedDMAError", "DMATimeoutError", "EmulationSettingError",
           "check_settings", "emulated_accelerator", "__version__"]


class EmulationSettingError(ValueError):
    """A setting of the emulated board (PYNQ_EMULATION_*, accelerator.json) is wrong: the user's or the
    package's mistake, not a fault of the board."""


class EmulatedDMAError(RuntimeError):
    """A transfer the board could not complete (it would hang or fault there)."""


class DMATimeoutError(EmulatedDMAError, TimeoutError):
    """A wait that would never return on the board."""


# --------------------------------------------------------------------------- buffers

_next_address = [0x16000000]  # fake physical addresses, 4 KiB aligned like CMA allocations


class PynqBuffer(np.ndarray):
    """A numpy array standing in for pynq's physically contiguous DMA buffer."""

    def __array_finalize__(self, obj):
        if isinstance(obj, PynqBuffer) and getattr(obj, "device_address", None) is not None:
            offset = self.__array_interface__["data"][0] - obj.__array_interface__["data"][0]
            self.device_address = obj.device_address + offset
            self.coherent = obj.coherent
            self.freed = obj.freed
        else:
            self.device_address = None
            self.coherent = False
            self.freed = False

    @property
    def physical_address(self):
        return self.device_address

    @property
    def virtual_address(self):
        return self.__array_interface__["data"][0]

    @property
    def cacheable(self):
        return not self.coherent

    def freebuffer(self):
        self.freed = True

    def close(self):
        """Unused in pynq 3 (kept for old code)."""

    def flush(self):
        """Caches are not emulated: nothing to do."""

    def invalidate(self):
        """Caches are not emulated: nothing to do."""

    def sync_to_device(self):
        self.flush()

    def sync_from_device(self):
        self.invalidate()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.freebuffer()
        return False


def allocate(shape, dtype="u4", target=None, **kwargs):
    """Like ``pynq.allocate``: a zeroed buffer with a (fake) physical address."""
    array = np.zeros(shape, dtype=dtype).view(PynqBuffer)
    array.device_address = _next_address[0]
    array.coherent = False
    array.freed = False
    _next_address[0] += (array.nbytes + 0xFFF) & ~0xFFF or 0x1000
    return array


# --------------------------------------------------------------------------- accelerator


def _read_config(emulation_dir: Path) -> dict:
    config_path = emulation_dir / ACCELERATOR_JSON
    try:
        config = json.loads(config_path.read_text())
        config["n_in"], config["n_out"] = int(config["n_in"]), int(config["n_out"])
        config["library"] = emulation_dir / config["library"]
        return config
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise EmulationSettingError(
            "cannot read {} ({}); re-run the package step".format(config_path, exc)
        ) from None


def _load_library(library: Path, what: str):
    try:
        return ctypes.CDLL(str(library))
    except OSError as exc:
        raise RuntimeError("emulated board: cannot load the {} {} ({})".format(what, library, exc)) from None


def emulated_accelerator() -> str:
    """What this emulated board runs, "csim" or "rtl", as ``accelerator.json`` says (nothing loaded)."""
    return _read_config(EMULATION_DIR).get("emulated", "csim")


def check_settings() -> None:
    """Read the environment's settings now, as an overlay would: EmulationSettingError if one is wrong."""
    _max_transfer()
    _pause_seed()


def _accelerator(emulation_dir: Path):
    """The IP between the DMA's streams, as ``accelerator.json`` says it is emulated."""
    config = _read_config(emulation_dir)
    if config.get("emulated", "csim") == "rtl":
        return _RtlAccelerator(config)
    return _CsimAccelerator(emulation_dir, config)


class _CsimAccelerator:
    """The hls4ml IP between the DMA's MM2S and S2MM streams, computed by the C-simulation."""

    emulated = "csim"

    def __init__(self, emulation_dir: Path, config: dict):
        self.n_in, self.n_out, self.library = config["n_in"], config["n_out"], config["library"]
        try:
            weights = [emulation_dir / name for name in config["weights"]]
        except (KeyError, TypeError) as exc:
            raise RuntimeError("emulated board: {} lists no weights ({}); re-run the package step".format(
                ACCELERATOR_JSON, exc)) from None
        missing = [str(path) for path in weights if not path.is_file()]
        if missing:  # the library would print an error and end the whole process at its first call
            raise RuntimeError("emulated board: weights file {} is missing: copy the whole package folder "
                               "again".format(missing[0]))
        self._lib = _load_library(self.library, "C-simulation library")
        try:
            self._function = getattr(self._lib, config.get("function", "myproject_float"))
        except AttributeError as exc:
            raise RuntimeError("emulated board: cannot load the C-simulation library {} ({})".format(
                self.library, exc)) from None
        self._function.restype = None
        self._function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.in_bytes = self.n_in * STREAM_WORD_BYTES
        self.out_bytes = self.n_out * STREAM_WORD_BYTES
        self.packets = []  # output packets waiting for the S2MM channel, each ends with TLAST

    def send(self, raw: bytes) -> None:
        """One MM2S transfer: every whole sample in, one output packet out."""
        if len(raw) % self.in_bytes:
            raise EmulatedDMAError(
                "a send of {} bytes is not a whole number of {}-byte input samples ({} float32 each): the "
                "accelerator would wait for the rest of the last sample and wait() would never return on the "
                "board".format(len(raw), self.in_bytes, self.n_in))
        inputs = np.frombuffer(raw, dtype="<f4").reshape(-1, self.n_in).copy()
        outputs = np.zeros((inputs.shape[0], self.n_out), dtype="<f4")
        in_address, out_address = inputs.ctypes.data, outputs.ctypes.data
        for row in range(inputs.shape[0]):
            self._function(in_address + row * self.in_bytes, out_address + row * self.out_bytes)
        self.packets.append(outputs.tobytes())

    def receive(self, nbytes: int) -> bytes:
        """One S2MM transfer of at most ``nbytes``: the oldest output packet."""
        if not self.packets:
            raise DMATimeoutError("timed out: the accelerator has produced nothing to receive (no send transfer "
                                  "was made); on the board wait() would never return")
        if len(self.packets[0]) > nbytes:
            raise EmulatedDMAError("DMA Internal Error: the accelerator sent a {}-byte packet into a {}-byte "
                                   "receive transfer".format(len(self.packets[0]), nbytes))
        return self.packets.pop(0)

    def reset(self) -> None:
        self.packets = []

    def figures(self) -> dict:
        return {"emulated": self.emulated}


class _RtlAccelerator:
    """The project's Verilog IP, Verilated (``myproject_rtl.so``), clocked behind the DMA's streams.

    A send queues its words (TLAST on the last, as the MM2S channel does); a receive runs the clock
    until the IP's TLAST, a full buffer, or IDLE_CYCLE_CAP cycles in which no word moved: what would
    hang a board ends here as a timeout. ``PYNQ_EMULATION_PAUSES=SEED`` adds seeded random pauses on
    both streams (the outputs must not change; the cycles do).
    """

    emulated = "rtl"
    IDLE_CYCLE_CAP = 10000  # the IP's latency is tens of cycles: this many idle cycles means it never will

    def __init__(self, config: dict):
        self.n_in, self.n_out, self.library = config["n_in"], config["n_out"], config["library"]
        self.expected_sha256 = config.get("verilog_sha256")
        lib = _load_library(self.library, "Verilated IP")
        handle, words = ctypes.c_void_p, ctypes.c_uint64
        try:
            for name, restype, argtypes in (
                ("ipemu_create", handle, []), ("ipemu_destroy", None, [handle]),
                ("ipemu_verilog_sha256", ctypes.c_char_p, []), ("ipemu_reset", None, [handle]),
                ("ipemu_pauses", None, [handle, words, ctypes.c_uint32, ctypes.c_uint32]),
                ("ipemu_push", None, [handle, handle, handle, words]), ("ipemu_pending", words, [handle]),
                ("ipemu_pull", words, [handle, handle, handle, words, words]), ("ipemu_cycles", words, [handle]),
            ):
                function = getattr(lib, name)
                function.restype, function.argtypes = restype, argtypes
        except AttributeError as exc:
            raise RuntimeError("emulated board: {} is not the Verilated IP ({})".format(self.library, exc)) from None
        self._lib = lib
        self.verilog_sha256 = lib.ipemu_verilog_sha256().decode("ascii")
        self._handle = lib.ipemu_create()
        self.pauses = _pause_seed()
        self.cycles = 0  # clock cycles of the receives that completed, and their samples
        self.samples = 0
        self.reset()

    def reset(self) -> None:
        self._lib.ipemu_reset(self._handle)
        if self.pauses is not None:  # ~30% of cycles paused at the source, ~40% at the sink
            self._lib.ipemu_pauses(self._handle, self.pauses, 19661, 26214)
        self._unanswered = 0  # words sent since the last complete output packet

    def send(self, raw: bytes) -> None:
        if len(raw) % STREAM_WORD_BYTES:
            raise EmulatedDMAError("a send of {} bytes is not a whole number of 32-bit stream words".format(len(raw)))
        words = np.frombuffer(raw, dtype="<u4").copy()
        last = np.zeros(len(words), dtype=np.uint8)
        last[-1] = 1
        self._lib.ipemu_push(self._handle, words.ctypes.data, last.ctypes.data, len(words))
        self._unanswered += len(words)

    def receive(self, nbytes: int) -> bytes:
        capacity = nbytes // STREAM_WORD_BYTES
        words = np.zeros(capacity, dtype="<u4")
        last = np.zeros(capacity, dtype=np.uint8)
        began = self._lib.ipemu_cycles(self._handle)
        taken = self._lib.ipemu_pull(self._handle, words.ctypes.data, last.ctypes.data, capacity,
                                     self.IDLE_CYCLE_CAP)
        spent = self._lib.ipemu_cycles(self._handle) - began
        if taken and last[taken - 1]:
            self.cycles += spent
            self.samples += taken // self.n_out
            self._unanswered = 0
            return words[:taken].tobytes()
        if taken == capacity:
            raise EmulatedDMAError("DMA Internal Error: the {}-byte receive transfer filled up without the IP's TLAST: "
                                   "its packet is longer than the buffer, or the IP still waits for input "
                                   "({})".format(nbytes, self._why_stuck()))
        raise DMATimeoutError("timed out: the IP moved no word for {} clock cycles after {} output word(s) without "
                              "TLAST; {}; on the board wait() would never return".format(
                                  self.IDLE_CYCLE_CAP, taken, self._why_stuck()))

    def _why_stuck(self) -> str:
        if self._unanswered == 0:
            return "no send transfer was made"
        if self._unanswered % self.n_in:  # hls4ml's IP reads n_in words per sample, TLAST or not
            return ("{} word(s) were sent, not a whole number of {}-word input samples: the IP waits for the rest "
                    "of the last sample".format(self._unanswered, self.n_in))
        return "{} word(s) were sent, {} whole sample(s)".format(self._unanswered, self._unanswered // self.n_in)

    def figures(self) -> dict:
        return {"emulated": self.emulated, "verilog_sha256": self.verilog_sha256, "ip_cycles": self.cycles,
                "ip_samples": self.samples, "pause_seed": self.pauses}

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle:
            self._lib.ipemu_destroy(handle)
            self._handle = None


def _pause_seed():
    value = os.environ.get(PAUSES_ENV)
    if not value:
        return None
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if not 0 <= seed < 1 << 64:  # the Verilated IP's generator takes a 64-bit seed
        raise EmulationSettingError("{}={!r} is not a seed (a whole number from 0 to 2**64-1)".format(
            PAUSES_ENV, value))
    return seed


# --------------------------------------------------------------------------- DMA

DMA_TYPE_TX = 1
DMA_TYPE_RX = 0


class _DMAChannel:
    """One channel of the AXI DMA in simple mode, as ``pynq.lib.dma._SDMAChannel`` drives it."""

    def __init__(self, accelerator, max_size: int, tx_rx: int):
        self._accelerator = accelerator
        self._max_size = max_size
        self._align = STREAM_WORD_BYTES
        self._tx_rx = tx_rx
        self._running = True
        self._active = None  # (buffer, start, nbytes) of the transfer in flight
        self._error = None  # message of the fault that halted this channel
        self.transferred = 0

    @property
    def _name(self):
        return "send (MM2S)" if self._tx_rx == DMA_TYPE_TX else "receive (S2MM)"

    @property
    def running(self):
        return self._running

    @property
    def idle(self):
        return self._active is None

    @property
    def error(self):
        return self._error is not None

    def start(self):
        self._running = True
        self._error = None

    def stop(self):
        self._running = False
        self._active = None
        self._accelerator.reset()

    def _fault(self, exc_type, message):
        self._error = message
        self._active = None
        return exc_type("emulated DMA {}: {}".format(self._name, message))

    def transfer(self, array, start=0, nbytes=0):
        if not self._running:
            raise RuntimeError("DMA channel not started")
        if self._error is not None:
            raise EmulatedDMAError(
                "emulated DMA {} is halted after an earlier fault ({}); load the overlay again".format(
                    self._name, self._error
                )
            )
        if not self.idle:
            raise RuntimeError("DMA channel not idle")
        if getattr(array, "physical_address", None) is None or getattr(array, "freed", False):
            raise ValueError("DMA transfers need a live buffer from pynq.allocate()")
        if not array.flags["C_CONTIGUOUS"]:
            raise ValueError("DMA transfers need a contiguous buffer")
        if nbytes == 0:
            nbytes = array.nbytes - start
        if nbytes > self._max_size:
            raise ValueError(
                "Transfer size is {} bytes, which exceeds "
                "the maximum DMA buffer size {}.".format(nbytes, self._max_size)
            )
        if nbytes <= 0 or start < 0 or start + nbytes > array.nbytes:
            raise self._fault(
                EmulatedDMAError,
                "DMA Internal Error: transfer of {} bytes at offset {} of a {}-byte buffer".format(
                    nbytes, start, array.nbytes
                ),
            )
        if (array.physical_address + start) % self._align:
            raise RuntimeError(
                "DMA does not support unaligned transfers; Starting address must be aligned to "
                "{} bytes.".format(self._align)
            )
        if self._tx_rx == DMA_TYPE_TX:
            raw = memoryview(array).cast("B")[start : start + nbytes].tobytes()
            self._guarded(self._accelerator.send, raw)
            self.transferred = nbytes  # the IP's input side takes a whole transfer here
        else:
            self._active = (array, start, nbytes)

    def _guarded(self, action, *args):
        """Run an accelerator action; a fault it reports halts this channel, as on the board."""
        try:
            return action(*args)
        except EmulatedDMAError as exc:
            raise self._fault(type(exc), str(exc)) from None

    def wait(self):
        if not self._running:
            raise RuntimeError("DMA channel not started")
        if self._error is not None:
            raise EmulatedDMAError("emulated DMA {}: {}".format(self._name, self._error))
        if self._tx_rx == DMA_TYPE_TX or self._active is None:
            return
        array, start, nbytes = self._active
        packet = self._guarded(self._accelerator.receive, nbytes)
        memoryview(array).cast("B")[start : start + len(packet)] = packet
        self.transferred = len(packet)  # TLAST ends the transfer early if the buffer is larger
        self._active = None


class AxiDMA:
    """``hier_0.axi_dma_0``: the two channels and the length limit pynq reads from the .hwh."""

    def __init__(self, accelerator, max_size: int):
        self.buffer_max_size = max_size
        self.sendchannel = _DMAChannel(accelerator, max_size, DMA_TYPE_TX)
        self.recvchannel = _DMAChannel(accelerator, max_size, DMA_TYPE_RX)


class _Hierarchy:
    def __init__(self, **members):
        self.__dict__.update(members)


def _max_transfer() -> int:
    value = os.environ.get(MAX_TRANSFER_ENV)
    if not value:
        return DEFAULT_MAX_TRANSFER
    try:
        limit = int(value)
    except ValueError:
        raise EmulationSettingError("{}={!r} is not a number of bytes".format(MAX_TRANSFER_ENV, value)) from None
    if not 0 < limit <= DEFAULT_MAX_TRANSFER:
        raise EmulationSettingError("{}={} is outside 1..{}".format(MAX_TRANSFER_ENV, limit, DEFAULT_MAX_TRANSFER))
    return limit


# --------------------------------------------------------------------------- overlay


def _check_bitstream(bitfile_name):
    """What pynq checks when an overlay is given a bitstream; returns the absolute path."""
    if not isinstance(bitfile_name, str):
        raise TypeError("Bitstream name has to be a string.")
    bitfile = os.path.abspath(bitfile_name)
    if not os.path.isfile(bitfile):
        raise IOError("Bitstream file {} does not exist.".format(bitfile_name))
    hwh = os.path.splitext(bitfile)[0] + ".hwh"
    if not os.path.isfile(hwh):
        raise RuntimeError(
            "Cannot find the metadata file {}: an overlay needs its .hwh beside the .bit".format(hwh)
        )
    try:
        ElementTree.parse(hwh)
    except ElementTree.ParseError as exc:
        raise RuntimeError("Unable to parse metadata {}: {}".format(hwh, exc)) from None
    return bitfile


class Overlay:
    """An emulated overlay: the hls4ml block design with ``hier_0/axi_dma_0`` and the IP.

    ``bitfile_name=None`` means "no bitstream" (users without Vivado have none): the
    C-simulation library stands in for the whole design. A name is checked as pynq would.
    """

    def __init__(self, bitfile_name, dtbo=None, download=True, ignore_version=False, device=None,
                 gen_cache=False):
        if bitfile_name is None:
            self.bitfile_name = None
            log.info("emulated overlay without a bitstream")
        else:
            self.bitfile_name = _check_bitstream(bitfile_name)
        self.dtbo = dtbo
        self.device = device
        self._accelerator = _accelerator(EMULATION_DIR)
        max_size = _max_transfer()
        self.hier_0 = _Hierarchy(
            axi_dma_0=AxiDMA(self._accelerator, max_size),
            myproject_axi_0=_Hierarchy(library=str(self._accelerator.library)),
        )
        self.ip_dict = {
            "hier_0/axi_dma_0": {"type": "xilinx.com:ip:axi_dma:7.1",
                                 "parameters": {"c_sg_length_width": str(SG_LENGTH_WIDTH)}},
            "hier_0/myproject_axi_0": {"type": "xilinx.com:hls:myproject_axi:1.0", "parameters": {}},
        }
        self._loaded = False
        if download:
            self.download()

    def download(self, dtbo=None):
        """Programming the PL is emulated: it resets the DMA and the accelerator."""
        for channel in (self.hier_0.axi_dma_0.sendchannel, self.hier_0.axi_dma_0.recvchannel):
            channel.stop()
            channel.start()
        self._loaded = True

    def is_loaded(self):
        return self._loaded

    def emulation_figures(self):
        """What the emulated IP is ("csim" or "rtl") and, for rtl, the clock cycles it has counted."""
        return self._accelerator.figures()
