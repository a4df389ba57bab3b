"""The accelerator IP as a shared library for the emulated board: Verilator, a plain C++ harness, no cocotb.

``build_library`` verilates the ip step's Verilog (only the top's ports are reachable: no
``--public`` of any kind, so the C++ stays small) together with ``verilated_ip_harness.cpp`` and links one
self-contained ``.so`` (libstdc++ and libc only). Its C interface is documented in the harness;
the stand-in ``pynq`` loads it with ctypes. The library carries the sha256 of the Verilog it was
built from (``verilog_sha256``), which the package's manifest and ``accelerator.json`` record.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

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


def build_library(sources: list[Path], top: str, build_dir: Path) -> dict:
    """Build ``build_dir/LIBRARY_NAME`` from ``sources``; returns its path, the Verilog's sha256, seconds.

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
    command = [str(root / "bin" / "verilator"), *BUILD_FLAGS, "-j", str(min(os.cpu_count() or 1, 4)),
               "--top-module", top, HARNESS.name, *copies]
    log_path = build_dir / "verilator_build.log"
    with open(log_path, "wb") as log_file:
        done = subprocess.run(command, cwd=build_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    built = build_dir / "obj_dir" / LIBRARY_NAME
    if done.returncode != 0 or not built.is_file():
        raise ToolError(f"emulator: the Verilator build of the IP's library failed; see {log_path}",
                        ExitCode.EXTERNAL_TOOL)
    library = build_dir / LIBRARY_NAME
    atomic_write_bytes(library, built.read_bytes())
    library.chmod(0o755)
    shutil.rmtree(build_dir / "obj_dir")  # object files and generated C++; the library stays
    seconds = round(time.monotonic() - started, 2)
    log.info("emulator: %s built from the IP's Verilog (sha256 %s...) in %.1f s", library.name, sha[:12], seconds)
    return {"library": library, "verilog_sha256": sha, "seconds": seconds}
