"""The ``ip`` step (``--accelerator rtl``): the project's own accelerator IP in Verilog-2005, a drop-in
for hls4ml's ``myproject_axi`` (AXI-Stream float32 in/out), built from the exported hls4ml graph:
da4ml's datapath plus hls4ml's softmax, verified word for word against the C-simulation with cocotb
on Verilator (with and without stream pauses), synthesized with yosys. See ``run.run_ip``.
"""

from iris_fpga.ip.run import run_ip

__all__ = ["run_ip"]
