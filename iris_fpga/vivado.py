"""The bitstream step: Vivado HLS + Vivado through hls4ml, and proof that they made something.

hls4ml runs both tools with ``os.system`` and ignores their exit codes, so a failed build returns
normally. Only the existence of the .bit and the .hwh counts as a built bitstream; when they are
missing because Vivado lacks the PYNQ-Z2 board files (``[Board 49-71]`` in its log), the error says
how to install them. The ``rtl`` accelerator needs Vivado alone (``find_vivado_rtl``; its flow is in
``vivado_ip``).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from iris_fpga.contract import BITSTREAM_STEM
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable, read_untrusted

log = logging.getLogger(__name__)

BIT_RELATIVE = Path("myproject_vivado_accelerator/project_1.runs/impl_1/design_1_wrapper.bit")
HWH_RELATIVE = Path(
    "myproject_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/hw_handoff/design_1.hwh"
)
INSTALL_HINT = (
    "install Vivado HLS + Vivado 2020.1 (the versions hls4ml's VivadoAccelerator backend targets) and the PYNQ-Z2 "
    "board files from Vivado's Board Store, then run `python BuildModel.py --from bitstream` on that machine"
)
RTL_INSTALL_HINT = (
    "install Vivado 2021.1 or later (module references need 2021.1; the free Standard edition covers "
    "the xc7z020; Vivado HLS is not needed) and the PYNQ-Z2 board files from Vivado's Board Store, then run "
    "`python BuildModel.py --accelerator rtl --from "
    "bitstream` on that machine"
)


BOARD_NOT_FOUND = re.compile(r"Board 49-71\].*?not found for (\S+)")  # Vivado's error for a missing board part
MAX_LOG_BYTES = 1 << 28  # more than a Vivado log of this design holds
RESUME = {"hls": "python BuildModel.py --from bitstream",
          "rtl": "python BuildModel.py --accelerator rtl --from bitstream"}


def board_files_message(board_part: str, accelerator: str) -> str:
    """How to install the board files Vivado lacks for ``board_part`` (Vivado ships none for the PYNQ-Z2)."""
    name = board_name(board_part)
    return (f"Vivado has no board files for {board_part} (it does not ship them): install them from Vivado's Board "
            f"Store (Tools > Vivado Store > Boards, {name}), or in Vivado's Tcl console `xhub::refresh_catalog "
            f"[xhub::get_xstores xilinx_board_store]; xhub::install [xhub::get_xitems *{name}*]`, or copy the "
            f"vendor's board files (github.com/Xilinx/XilinxBoardStore, boards/TUL/{name}) into Vivado's "
            f"data/boards/board_files; then run `{RESUME[accelerator]}`")


def board_name(board_part: str) -> str:
    """The board's name in a board part: ``pynq-z2`` in ``tul.com.tw:pynq-z2:part0:1.0``."""
    fields = board_part.split(":")
    return fields[1] if len(fields) >= 2 else board_part


def missing_board_part(log_path: Path) -> str | None:
    """The board part a ``[Board 49-71]`` error in ``log_path`` names, if there is one."""
    if not Path(log_path).is_file():
        return None
    try:
        text = read_untrusted(log_path, MAX_LOG_BYTES, ExitCode.EXTERNAL_TOOL).decode(errors="replace")
    except ToolError:
        return None
    found = BOARD_NOT_FOUND.search(text)
    return printable(found.group(1).rstrip("."))[:200] if found else None


@dataclass
class VivadoTools:
    vivado_hls: Path
    vivado: Path


def _find_tool(name: str) -> Path | None:
    """``name`` from PATH, else from ``$XILINX_VIVADO/bin``."""
    search = os.environ.get("PATH", "")
    if os.environ.get("XILINX_VIVADO"):
        search = os.pathsep.join([search, str(Path(os.environ["XILINX_VIVADO"]) / "bin")])
    found = shutil.which(name, path=search)
    return None if found is None else Path(found)


def find_vivado() -> VivadoTools | None:
    """Both commands hls4ml calls (the ``hls`` accelerator), from PATH or from ``$XILINX_VIVADO/bin``."""
    hls, vivado = _find_tool("vivado_hls"), _find_tool("vivado")
    if hls is None or vivado is None:
        return None
    return VivadoTools(hls, vivado)


def find_vivado_rtl() -> Path | None:
    """``vivado`` alone, all the ``rtl`` accelerator needs, from PATH or from ``$XILINX_VIVADO/bin``."""
    return _find_tool("vivado")


def installed() -> str:
    """Which Vivado (and Vivado HLS) a bitstream step would run: each tool's resolved path, size and
    modification time, so that another installation or version changes the bitstream step's key.

    Starting Vivado to ask its version takes seconds, and the cache keys are computed on every run;
    Xilinx installs each version in its own folder (``.../Vivado/2020.1/bin``), which the path shows.
    """
    found = []
    for name in ("vivado_hls", "vivado"):
        tool = _find_tool(name)
        if tool is not None:
            real = tool.resolve()
            try:
                info = real.stat()
            except OSError:
                continue
            found.append(f"{name}={real} ({info.st_size} bytes, mtime {info.st_mtime_ns})")
    return "; ".join(found) or "not found"


def not_found_message(accelerator: str) -> str:
    """What the summary says when the bitstream step finds no Vivado for ``accelerator``."""
    if accelerator == "rtl":
        return f"Vivado not found (no vivado on PATH or in $XILINX_VIVADO/bin); {RTL_INSTALL_HINT}"
    return f"Vivado not found (no vivado_hls and vivado on PATH or in $XILINX_VIVADO/bin); {INSTALL_HINT}"


def build_bitstream(hls_model, tools: VivadoTools, output_dir: Path, dest: Path) -> list[Path]:
    """Run synthesis, export and the bitstream build; copy .bit and .hwh to ``dest`` under one stem."""
    for stale in (output_dir / BIT_RELATIVE, output_dir / HWH_RELATIVE):
        stale.unlink(missing_ok=True)  # an old bitstream must not pass for a new one
    tool_dirs = os.pathsep.join(sorted({str(tools.vivado_hls.parent), str(tools.vivado.parent)}))
    saved_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([tool_dirs, saved_path])  # hls4ml looks them up on PATH
    try:
        hls_model.build(csim=False, synth=True, export=True, bitfile=True)
    finally:
        os.environ["PATH"] = saved_path
    bit, hwh = output_dir / BIT_RELATIVE, output_dir / HWH_RELATIVE
    missing = [p for p in (bit, hwh) if not p.is_file()]
    if missing:
        # the bitstream build's own logs first: a missing .bit is decided there
        logs = [output_dir / "myproject_vivado_accelerator/project_1.runs/impl_1/runme.log",
                output_dir / "vivado.log", output_dir / "vivado_hls.log"]
        existing = [str(p) for p in logs if p.is_file()] or [str(output_dir)]
        for log_path in logs:
            board_part = missing_board_part(log_path)
            if board_part is not None:
                raise ToolError(f"{board_files_message(board_part, 'hls')} (read {log_path})", ExitCode.EXTERNAL_TOOL)
        raise ToolError(
            f"Vivado finished without {', '.join(p.name for p in missing)}; read {existing[0]}",
            ExitCode.EXTERNAL_TOOL,
        )
    dest.mkdir(parents=True, exist_ok=True)
    outputs = [dest / f"{BITSTREAM_STEM}.bit", dest / f"{BITSTREAM_STEM}.hwh"]
    shutil.copyfile(bit, outputs[0])
    shutil.copyfile(hwh, outputs[1])
    return outputs
