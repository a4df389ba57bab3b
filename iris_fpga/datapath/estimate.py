"""da4ml's own estimate of the datapath, in a fraction of a second: no Verilog, Verilator or yosys.

The design-space explorer ranks many networks with it and measures only the promising ones with
the full ``rtl`` step. It is the figure the rtl step logs ("its own estimate") and records as
``da4ml_estimate``: the same traced datapath (checked against the C-simulation with da4ml's
interpreter) and the same pipelining as the Verilog the rtl step writes.
"""
from __future__ import annotations

from pathlib import Path

from iris_fpga.config import CHAINS_PER_STAGE
from iris_fpga.datapath.run import Reference, check_arguments, trace_datapath


def estimate_datapath(graph_path: Path, latency_cutoff: float = CHAINS_PER_STAGE) -> dict:
    """{"LUT", "FF", "latency_cycles"} of the datapath that ``rtl_graph.json`` describes, by da4ml.

    ``latency_cutoff`` as the rtl step's (0: combinational, no registers). Raises ToolError for a
    missing or inconsistent graph, or a datapath that differs from the C-simulation.
    """
    from iris_fpga.datapath.stages import to_stages

    check_arguments(latency_cutoff, "", synthesize=False)
    comb = trace_datapath(Reference.load(Path(graph_path)), {})
    if latency_cutoff == 0:
        return {"LUT": round(comb.cost), "FF": 0, "latency_cycles": 0}
    pipe = to_stages(comb, latency_cutoff)  # the rtl step's own cut
    return {"LUT": round(comb.cost), "FF": int(pipe.reg_bits), "latency_cycles": len(pipe.solutions)}
