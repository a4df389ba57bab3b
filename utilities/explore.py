#!/usr/bin/env python3
"""Find the smallest Iris network that still classifies: a design-space explorer on Dask.

Every point of a space of ``BuildModel.py`` settings, at every seed, runs as its own
``BuildModel.py`` process up to the C-simulation; da4ml estimates its datapath; the points on the
accuracy/LUT Pareto front get the full rtl step (bit-exact Verilog, yosys) until the front is all
measured. See README.md, "Design-space explorer", and ``--help``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iris_fpga.explore.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
