#!/usr/bin/env python3
"""Find the smallest Iris network that still classifies: a design-space explorer on Dask.

Every point of a space of ``BuildModel.py`` settings is scored by K-fold cross-validation on the
training samples, each fold as its own ``BuildModel.py --cv-fold I/K`` process up to the
C-simulation; da4ml estimates its datapath; yosys measures the whole IP of the qualifying points on
the accuracy/LUT Pareto front. The winner is the measured point with the fewest whole-IP LUT whose
worst fold reaches ``--min-cv``; only then is it built on all the training samples and scored once
on the test set. See README.md, "Design-space explorer", and ``--help``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iris_fpga.explore.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
