"""The bitstream step for the ``rtl`` accelerator: our Verilog IP in hls4ml's block design, Vivado alone.

The Tcl script is hls4ml's own board design script (for the pynq-z2: PS7, AXI DMA, the IP beside the
DMA in ``hier_0``, FCLK0 at 100 MHz), read from the installed hls4ml and changed only where it names
the HLS IP: the IP's Verilog is added to the project instead of an HLS IP repository, and the block
design instantiates it as a module reference (``create_bd_cell -type module -reference``, documented
from Vivado 2021.1), checked to have resolved. The block design's wrapper is added from the path
``make_wrapper`` returns and set as the top, and a timing report is written beside the utilization
report. ``SUBSTITUTIONS`` lists every change with its reason; a test diffs the two scripts. The IP
keeps the port names of hls4ml's ``myproject_axi``, so the template's connections, clock automation
and ``group_bd_cells hier_0`` stay as they are and PYNQ still finds ``hier_0.axi_dma_0``.

Before the long run a short Vivado run (``probe.tcl``) asks ``version -short`` and
``get_board_parts``: Vivado before 2020.2 and a Vivado without the board files are refused there.
A bitstream counts as built only when the .bit, the .hwh and both reports exist and the timing
report shows no negative setup or hold slack (unless the caller accepts timing violations).
"""
from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

from iris_fpga.contract import BITSTREAM_FILES, VIVADO_REPORTS
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes
from iris_fpga.vivado import BIT_RELATIVE, board_files_message, board_name
from iris_fpga.vivado_timing import Timing, read_timing

log = logging.getLogger(__name__)

RTL_PROJECT_DIR = "vivado_rtl"  # under the output directory: design.tcl, project.tcl, vivado.log, the project
PROJECT_NAME = "myproject"  # hls4ml's project name: the template's folder and cell names derive from it
STREAM_WIDTH = 32  # float32 words on both AXI-Streams, as hls4ml's myproject_axi
DESIGN_SCRIPT = "design.tcl"
PROJECT_SCRIPT = "project.tcl"  # the template sources it from its own folder
LOG_NAME = "vivado.log"
PROBE_SCRIPT, PROBE_LOG = "probe.tcl", "probe.log"  # the version and board check before the long run
PROBE_MARK = "iris-fpga-probe:"
PROBE_TIMEOUT_S = 600
OLDEST_VERSION = (2020, 2)  # generated block design files under project_1.gen (HWH_RELATIVE)
DOCUMENTED_VERSION = (2021, 1)  # module references are documented (UG994) from this version on
BOARD_PART = re.compile(r"^set_property board_part (\S+) \[current_project\]", re.M)
HWH_RELATIVE = Path(
    f"{PROJECT_NAME}_vivado_accelerator/project_1.gen/sources_1/bd/design_1/hw_handoff/design_1.hwh"
)
# Vivado's reports as the script writes them (cwd: the project folder) -> names beside the bitstream.
REPORTS = dict(zip(("util.rpt", "timing.rpt"), VIVADO_REPORTS))  # Vivado's name -> the package's

HLS_IP_MARKS = ("ip_repo_paths", "xilinx.com:hls:")  # none may be left once the IP lines are replaced
VERILOG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IP_FILES = "@IP_FILES@"
TOP = "@TOP@"
# (hls4ml's template line, its replacement lines, why). Placeholders are filled in per build.
SUBSTITUTIONS = (
    ("set_property  ip_repo_paths  ${project_name}_prj [current_project]",
     (f"add_files -norecurse {IP_FILES}", "update_compile_order -fileset sources_1"),
     "the IP is Verilog in the project, not an HLS IP repository; the module reference needs it in the hierarchy"),
    ("create_bd_cell -type ip -vlnv xilinx.com:hls:${project_name}_axi:1.0 ${project_name}_axi_0",
     (f"create_bd_cell -type module -reference {TOP} ${{project_name}}_axi_0",
      f"if {{![string match xilinx.com:module_ref:{TOP}:* "
      f"[get_property VLNV [get_bd_cells ${{project_name}}_axi_0]]]}} "
      f"{{ error \"the module reference {TOP} did not resolve\" }}"),
     "the IP as a module reference (documented from Vivado 2021.1) under the HLS IP's cell name, checked"),
    ("make_wrapper -files [get_files ./${project_name}_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/"
     "design_1.bd] -top",
     ("set wrapper [make_wrapper -files [get_files ./${project_name}_vivado_accelerator/project_1.srcs/sources_1/bd/"
      "design_1/design_1.bd] -top]",),
     "the wrapper's path as Vivado gives it (project_1.gen from 2020.2 on, project_1.srcs before)"),
    ("add_files -norecurse ./${project_name}_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/hdl/"
     "design_1_wrapper.v",
     ("add_files -norecurse $wrapper", "set_property top [file rootname [file tail $wrapper]] [current_fileset]",
      "update_compile_order -fileset sources_1"),
     "that wrapper, set as the top explicitly (the IP's module is a top candidate too)"),
    ("report_utilization -file util.rpt -hierarchical -hierarchical_percentages",
     ("report_utilization -file util.rpt -hierarchical -hierarchical_percentages",
      "report_timing_summary -file timing.rpt"),
     "the timing report, beside the utilization report"),
)


def design_template(board: str) -> Path:
    """hls4ml's installed AXI-Stream block design script for ``board``."""
    from iris_fpga.hls import check_board, supported_boards

    check_board(board)
    script = supported_boards()[board].get("tcl_scripts", {}).get("axi_stream")
    spec = find_spec("hls4ml")
    if script is None or spec is None or not spec.submodule_search_locations:
        raise ToolError(f"hls4ml has no AXI-Stream design script for board {board!r}", ExitCode.USAGE)
    return Path(spec.submodule_search_locations[0]) / "templates" / "vivado_accelerator" / board / "tcl_scripts" / script


def design_script(template_text: str, ip_files: Sequence[Path], top: str, board: str) -> str:
    """``template_text`` with ``SUBSTITUTIONS`` applied; each template line must occur exactly once."""
    if not VERILOG_NAME.fullmatch(top):
        raise ToolError(f"the IP's top module name {top!r} is not a plain Verilog identifier", ExitCode.USAGE)
    lines = template_text.splitlines()
    fills = {IP_FILES: " ".join(_tcl_word(str(Path(f).resolve())) for f in ip_files), TOP: top}
    for old, new, _why in SUBSTITUTIONS:
        where = [i for i, line in enumerate(lines) if line.rstrip() == old]
        if len(where) != 1:
            raise ToolError(f"hls4ml's {board} design script has {len(where)} lines `{old}` where the rtl flow "
                            "expects one: it supports hls4ml's pynq-z2 script", ExitCode.USAGE)
        lines[where[0]:where[0] + 1] = [_fill(line, fills) for line in new]
    left = next((line for line in lines if any(mark in line for mark in HLS_IP_MARKS)), None)
    if left is not None:
        raise ToolError(f"hls4ml's {board} design script names the HLS IP where the rtl flow does not expect it "
                        f"(`{left.strip()}`): it supports hls4ml's pynq-z2 script", ExitCode.USAGE)
    return "\n".join(lines) + "\n"


def write_design_tcl(project_dir: Path, ip_files: Sequence[Path], top: str, board: str = "pynq-z2") -> Path:
    """Write ``design.tcl`` and the ``project.tcl`` it sources into ``project_dir``; return the script.

    ``ip_files`` are the IP's sources (Verilog and any memory files it reads), ``top`` its top
    module, with the ports of hls4ml's ``myproject_axi``. The part is the one hls4ml's design script
    for ``board`` creates the project for (xc7z020clg400-1 for the pynq-z2).
    """
    missing = [str(f) for f in ip_files if not Path(f).is_file()]
    if not ip_files or missing:
        raise ToolError(f"the IP's Verilog is missing ({missing[0] if missing else 'no files given'}): "
                        "run the ip step first", ExitCode.USAGE)
    script = design_script(design_template(board).read_text(), ip_files, top, board)
    project_dir = Path(project_dir)
    project_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(project_dir / PROJECT_SCRIPT, _project_tcl().encode())
    atomic_write_bytes(project_dir / DESIGN_SCRIPT, script.encode())
    return project_dir / DESIGN_SCRIPT


@dataclass(frozen=True)
class RtlBitstream:
    outputs: list  # the files copied into the destination
    version: str  # Vivado's ``version -short``
    timing: Timing


def build_rtl_bitstream(vivado: Path, script: Path, dest: Path, accept_timing_violations: bool = False) -> RtlBitstream:
    """Check Vivado (``check_vivado``), then run ``vivado -mode batch -source script`` in the script's folder.

    Copies into ``dest``: ``hls4ml_nn.bit``, ``hls4ml_nn.hwh``, ``vivado_utilization.rpt``,
    ``vivado_timing.rpt``. A non-zero exit, a missing file or (without ``accept_timing_violations``)
    negative setup or hold slack is exit 3 naming the log or the report, and nothing is copied.
    """
    project_dir = Path(script).parent
    made = [project_dir / BIT_RELATIVE, project_dir / HWH_RELATIVE, *(project_dir / r for r in REPORTS)]
    outputs = [dest / name for name in (*BITSTREAM_FILES, *REPORTS.values())]
    for stale in made + outputs:
        stale.unlink(missing_ok=True)  # an old bitstream must not pass for a new one
    board_part = BOARD_PART.search(Path(script).read_text())
    version = check_vivado(vivado, project_dir, board_part.group(1) if board_part else None)
    log_path = project_dir / LOG_NAME
    log.info("bitstream: running %s -mode batch -source %s (log: %s)", vivado, script.name, log_path)
    with open(log_path, "wb") as log_file:
        result = subprocess.run([str(vivado), "-mode", "batch", "-source", script.name, "-nolog", "-nojournal"],
                                cwd=project_dir, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    missing = [p.name for p in made if not p.is_file()]
    if result.returncode != 0 or missing:
        what = f"exited with code {result.returncode}" if result.returncode else "finished"
        lacking = f" without {', '.join(missing)}" if missing else ""
        raise ToolError(f"Vivado {what}{lacking}{_first_error(log_path)}; read {log_path}", ExitCode.EXTERNAL_TOOL)
    timing = checked_timing(project_dir / "timing.rpt", accept_timing_violations)
    dest.mkdir(parents=True, exist_ok=True)
    for source, target in zip(made, outputs):
        atomic_write_bytes(target, source.read_bytes())
    return RtlBitstream(outputs, version, timing)


def checked_timing(report: Path, accept_timing_violations: bool) -> Timing:
    """The implemented design's timing; not met is exit 3 naming the worst slack, or a warning when accepted."""
    timing = read_timing(report)
    if not timing.met:
        if not accept_timing_violations:
            raise ToolError(f"timing not met: {timing.violations()}; no bitstream packaged (read {report}; "
                            "--accept-timing-violations packages it anyway)", ExitCode.EXTERNAL_TOOL)
        log.warning("bitstream: timing NOT met (%s): packaged on --accept-timing-violations; the board may compute "
                    "wrong results", timing.violations())
    return timing


def check_vivado(vivado: Path, project_dir: Path, board_part: str | None) -> str:
    """Vivado's ``version -short``, after refusing (exit 3) a version before 2020.2 or missing board files."""
    probe = f'puts "{PROBE_MARK} version [version -short]"\n'
    if board_part is not None:
        probe += f'puts "{PROBE_MARK} board_parts [get_board_parts -quiet *{board_name(board_part)}*]"\n'
    atomic_write_bytes(project_dir / PROBE_SCRIPT, probe.encode())
    log_path = project_dir / PROBE_LOG
    with open(log_path, "wb") as log_file:
        try:
            result = subprocess.run([str(vivado), "-mode", "batch", "-source", PROBE_SCRIPT, "-nolog", "-nojournal"],
                                    cwd=project_dir, stdout=log_file, stderr=subprocess.STDOUT, check=False,
                                    timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ToolError(f"Vivado did not answer its version in {PROBE_TIMEOUT_S} s; read {log_path}",
                            ExitCode.EXTERNAL_TOOL) from None
    answers = _probe_answers(log_path)
    version = re.match(r"(\d{4})\.(\d+)", answers.get("version", ""))
    if result.returncode != 0 or version is None:
        raise ToolError(f"Vivado's version check (`version -short`) failed (exit code {result.returncode})"
                        f"{_first_error(log_path)}; read {log_path}", ExitCode.EXTERNAL_TOOL)
    number, text = (int(version.group(1)), int(version.group(2))), version.group(0)
    if number < OLDEST_VERSION:
        raise ToolError(f"Vivado {text} is too old for the rtl accelerator: it needs 2020.2 or later (module references "
                        "are documented from 2021.1); install Vivado 2021.1 or later", ExitCode.EXTERNAL_TOOL)
    if number < DOCUMENTED_VERSION:
        log.warning("bitstream: Vivado %s: module references are documented from Vivado 2021.1; this version is "
                    "untested with the rtl accelerator", text)
    if board_part is not None and board_part not in answers.get("board_parts", "").split():
        raise ToolError(board_files_message(board_part, "rtl"), ExitCode.EXTERNAL_TOOL)
    return text


def _probe_answers(log_path: Path) -> dict[str, str]:
    """``{"version": ..., "board_parts": ...}`` from the probe's marked lines (Vivado echoes commands as "# ...")."""
    answers = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith(PROBE_MARK):
            key, _, value = line[len(PROBE_MARK):].strip().partition(" ")
            answers.setdefault(key, value.strip())
    return answers


def _project_tcl() -> str:
    """The variables hls4ml's design script reads from the project.tcl that hls4ml writes."""
    return (f'variable project_name\nset project_name "{PROJECT_NAME}"\n'
            f"set bit_width_hls_output {STREAM_WIDTH}\nset bit_width_hls_input {STREAM_WIDTH}\n")


def _tcl_word(text: str) -> str:
    """``text`` as one braced Tcl word; characters that would end or escape the braces are refused."""
    if re.search(r"[{}\\\n\r]", text) or not text:
        raise ToolError(f"cannot pass {text!r} to Vivado's Tcl: rename it without braces, backslashes or "
                        "line breaks", ExitCode.USAGE)
    return "{" + text + "}"


def _fill(line: str, fills: dict[str, str]) -> str:
    for key, value in fills.items():
        line = line.replace(key, value)
    return line


def _first_error(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    error = next((ln.strip() for ln in lines if ln.startswith("ERROR")), None)
    return f" ({error[:200]})" if error else ""
