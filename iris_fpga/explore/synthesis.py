"""The front's measurement of one fold: yosys on the Verilog the rtl and ip steps write, without their checks.

The rule needs a fold's cost only: the datapath's LUT and the whole IP's. So a fold of the front gets
what the two steps would synthesize, made and counted by the steps' own functions: the rtl step's
datapath (da4ml's Verilog, ``simulate.write_verilog``, synthesized as ``run_rtl`` does) and the ip
step's whole IP (``ip.run.write_ip``, synthesized by ``ip.run.synthesize_ip``, which also checks
its logic delay), into ``<fold's folder>.synth/``. Nothing is verified here: no Verilator
simulation of the datapath, no cocotb runs, no netlist simulation; the record says so (``verified``
False). The winner's final build runs both steps in full, every check included.
"""
from __future__ import annotations

import time
from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.explore.task import IP_RESOURCES
from iris_fpga.fileio import printable, refuse_link
from iris_fpga.flow.context import GRAPH

#: What a front fold's record says of its figures.
NOT_VERIFIED = ("synthesized, not verified: yosys on the Verilog the rtl and ip steps write, without their "
                "Verilator, cocotb and netlist simulations (its command builds and verifies the same IP)")


def synthesize_fold(build_dir: Path, measure_dir: Path, latency_cutoff: float, part: str) -> dict:
    """yosys' figures of the datapath and of the whole IP for the build in ``build_dir`` (its csim
    step's exported graph), made in ``measure_dir``; the keys of ``task.ip_figures``, ``verified`` False."""
    from iris_fpga.datapath import simulate, synth
    from iris_fpga.datapath.run import load_graph, prepare_dir
    from iris_fpga.datapath.tracing import build_comb_logic
    from iris_fpga.ip.run import synthesize_ip, write_ip

    started = time.monotonic()
    refuse_link(measure_dir, "the synthesis folder")
    try:
        measure_dir.mkdir(exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ToolError(f"the synthesis folder {printable(measure_dir)} is not a folder: move it away") from None
    graph = load_graph(build_dir / "pipeline" / GRAPH)
    rtl_dir, ip_dir = measure_dir / "rtl", measure_dir / "ip"
    prepare_dir(rtl_dir)
    model = simulate.write_verilog(build_comb_logic(graph), rtl_dir, latency_cutoff, part)
    datapath = synth.resources(synth.synthesize(rtl_dir, simulate.TOP)["cells"])
    prepare_dir(ip_dir)
    design, sources = write_ip(graph, ip_dir, latency_cutoff, part)
    whole = synth.resources(synthesize_ip(ip_dir, design.module, sources)["cells"])
    return {"yosys": {"LUT": datapath["LUT"], "FF": datapath["FF"], "latency_cycles": simulate.pipeline_stages(model)},
            "ip": {k: whole[k] for k in IP_RESOURCES},
            "verified": False, "checks": NOT_VERIFIED, "synthesis_s": round(time.monotonic() - started, 1)}
