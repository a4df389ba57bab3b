"""The accelerator IP as a shared library for the emulated board: Verilator, a plain C++ harness, no cocotb.

``build_library`` verilates the ip step's Verilog (only the top's ports are reachable: no
``--public`` of any kind, so the C++ stays small) together with ``verilated_ip_harness.cpp`` and links one
self-contained ``.so`` (libstdc++ and libc only). Its C interface is documented in the harness;
the stand-in ``pynq`` loads it with ctypes, and so does ``stream_frame`` here (the ip step runs yosys'
netlist of the IP through it: no VPI, no cocotb, so its large model builds and runs fast). The library carries the sha256 of the Verilog it was
built from (``verilog_sha256``), which the package's manifest and ``accelerator.json`` record.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes
from iris_fpga.datapath import simulate

log = logging.getLogger(__name__)

HARNESS = Path(__file__).resolve().with_name("verilated_ip_harness.cpp")
HARNESS_SOURCE = HARNESS.read_text()  # part of the step's cache key: a changed harness rebuilds the library
LIBRARY_NAME = "myproject_rtl.so"  # in package/emulation/, beside the C-simulation's name for hls packages
PREFIX = "Vip"  # the Verilated class the harness includes
# Verilator's options for the library (with the harness, part of the step's cache key): no --public of any kind
BUILD_FLAGS = ("--cc", "--exe", "--build", "--prefix", PREFIX, "--Mdir", "obj_dir", "-O3", "-Wno-fatal", "-Wno-lint",
               "-Wno-style", "-CFLAGS", "-fPIC", "-CFLAGS", "-I..", "-LDFLAGS", "-shared", "-o", LIBRARY_NAME,
               "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")


def verilog_sha256(sources: list[Path]) -> str:
    """sha256 of the Verilog files' bytes, concatenated in build order (submodules first, top last)."""
    digest = hashlib.sha256()
    for path in sources:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def build_library(sources: list[Path], top: str, build_dir: Path, extra_flags: tuple[str, ...] = ()) -> dict:
    """Build ``build_dir/LIBRARY_NAME`` from ``sources``; returns its path, the Verilog's sha256, seconds.
    ``extra_flags``: Verilator options after BUILD_FLAGS (the ip step's netlist build: ``netlist_flags``).

    Raises ToolError(EXTERNAL_TOOL) when Verilator or g++ fail (naming the log).
    """
    simulate.check_build_tools()
    started = time.monotonic()
    build_dir = Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)  # no object or library of another design
    build_dir.mkdir(parents=True)
    sha = verilog_sha256(sources)
    (build_dir / "ip_identity.h").write_text(f'#define IRIS_VERILOG_SHA256 "{sha}"\n')
    shutil.copyfile(HARNESS, build_dir / HARNESS.name)
    copies = []  # Verilator compiles its sources' paths into the library: relative ones name nothing outside it
    (build_dir / "verilog").mkdir()
    for source in sources:
        copies.append(f"verilog/{Path(source).name}")
        shutil.copyfile(source, build_dir / copies[-1])
    root = simulate.verilator_root()
    env = simulate.verilator_env()
    env.pop("MAKEFLAGS", None)
    command = [str(root / "bin" / "verilator"), *BUILD_FLAGS, *extra_flags, "-j", str(min(os.cpu_count() or 1, 4)),
               "--top-module", top, HARNESS.name, *copies]
    log_path = build_dir / "verilator_build.log"
    with open(log_path, "wb") as log_file:
        done = subprocess.run(command, cwd=build_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    built = build_dir / "obj_dir" / LIBRARY_NAME
    if done.returncode != 0 or not built.is_file():
        raise ToolError(f"verilator: the build of {build_dir.name}/{LIBRARY_NAME} failed; see {log_path}",
                        ExitCode.EXTERNAL_TOOL)
    library = build_dir / LIBRARY_NAME
    atomic_write_bytes(library, built.read_bytes())
    library.chmod(0o755)
    shutil.rmtree(build_dir / "obj_dir")  # object files and generated C++; the library stays
    seconds = round(time.monotonic() - started, 2)
    log.info("verilator: %s built from Verilog with sha256 %s... in %.1f s", library, sha[:12], seconds)
    return {"library": library, "verilog_sha256": sha, "seconds": seconds}


#: Simulated clocks above which a netlist's clocked code is compiled at -O1, below which at -O0.
#: Measured on the default IP's netlist (20,000 cells, 44 MB of C++; load 3-8): -O1 builds in 204 s
#: and simulates 11,786 clocks in 4.5-5.6 s, -O0 builds in 110 s and needs 23-29 s for them, about
#: 1.7 ms more per clock; both scale with the netlist, so -O0 wins below about 50,000 clocks
#: whatever its size.
NETLIST_O1_CLOCKS = 40_000


def netlist_flags(clocks: int) -> tuple[str, ...]:
    """Verilator options for a synthesized netlist's model that will simulate about ``clocks`` clocks:
    its clocked code at -O0 or -O1 (``NETLIST_O1_CLOCKS``), the rest (initial values, settling)
    unoptimized, and X values made the fastest way (the reset sequence sets every register the
    outputs depend on)."""
    fast = "-O1" if clocks > NETLIST_O1_CLOCKS else "-O0"
    return ("-MAKEFLAGS", f"OPT_FAST={fast} OPT_SLOW=-O0 OPT_GLOBAL=-O0", "--x-assign", "fast", "--x-initial", "fast")
#: Pauses per 65536 cycles on the input and output streams (the stand-in pynq's PYNQ_EMULATION_PAUSES too).
PAUSES = (19661, 26214)


def paused_clocks(samples: int, n_in: int, n_out: int) -> int:
    """About how many clocks ``stream_frame`` takes for ``samples`` under ``PAUSES``: the slower stream's."""
    return int(samples * max(n_in / (1 - PAUSES[0] / 65536), n_out / (1 - PAUSES[1] / 65536)))


IDLE_CYCLE_CAP = 10000  # cycles in which no word moves: the IP will never answer


def stream_frame(library: Path, words: np.ndarray, n_out: int, seed: int) -> dict:
    """``words`` (uint32, one row per sample) into the library's IP as one frame, TLAST on the last word,
    under seeded random pauses on both streams; returns ``frames`` (the output words, split after each
    TLAST), ``timed_out`` and ``cycles``. The board's stand-in has its own driver: it cannot import this."""
    lib = ctypes.CDLL(str(library))
    handle, count = ctypes.c_void_p, ctypes.c_uint64
    for name, restype, argtypes in (("ipemu_create", handle, []), ("ipemu_destroy", None, [handle]),
                                    ("ipemu_reset", None, [handle]),
                                    ("ipemu_pauses", None, [handle, count, ctypes.c_uint32, ctypes.c_uint32]),
                                    ("ipemu_push", None, [handle, handle, handle, count]),
                                    ("ipemu_pull", count, [handle, handle, handle, count, count]),
                                    ("ipemu_cycles", count, [handle])):
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
    sent = np.ascontiguousarray(words, dtype="<u4").ravel()
    last = np.zeros(sent.size, dtype=np.uint8)
    last[-1] = 1
    want = len(words) * n_out
    got, got_last = np.zeros(want + 1, dtype="<u4"), np.zeros(want + 1, dtype=np.uint8)  # room for one word too many
    ip = lib.ipemu_create()
    try:
        lib.ipemu_reset(ip)
        lib.ipemu_pauses(ip, seed, *PAUSES)
        lib.ipemu_push(ip, sent.ctypes.data, last.ctypes.data, sent.size)
        taken = 0
        while taken <= want:  # a pull ends at a TLAST; the last one waits briefly for a word too many
            pulled = lib.ipemu_pull(ip, got[taken:].ctypes.data, got_last[taken:].ctypes.data, want + 1 - taken,
                                    IDLE_CYCLE_CAP if taken < want else 100)
            taken += pulled
            if not pulled:
                break
        cycles = lib.ipemu_cycles(ip)
    finally:
        lib.ipemu_destroy(ip)
    ends = np.flatnonzero(got_last[:taken]) + 1
    frames = [part.tolist() for part in np.split(got[:taken], ends) if part.size]
    return {"frames": frames, "timed_out": taken < want, "cycles": int(cycles)}
