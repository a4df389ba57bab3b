#!/usr/bin/env python3
"""Train a pruned, quantized Iris network and take it to a PYNQ-Z2 package with hls4ml.

The command users run (``iris-fpga-build`` after ``pip install -e .`` is the same). The build is
in the package, in the shape of FINN's dataflow builder: its 11 steps (data, train, convert,
profile, csim, rtl, ip, emulator, bitstream, package, deploy) are declared in one table, ``STEPS``
in ``iris_fpga/flow/steps.py``, and share one ``BuildConfig`` (``iris_fpga/config.py``, where
each setting is declared once); ``iris_fpga/flow/runner.py`` runs them and
``iris_fpga/flow/cli.py`` is the command line. ``--from`` / ``--to`` run a range; each step's time
is recorded; a step whose inputs, settings and versions are unchanged is reused.
Run ``python BuildModel.py --help`` for the options, README.md for the whole flow.
"""
from __future__ import annotations

import sys

from iris_fpga.flow.cli import main, make_parser, parse_args
from iris_fpga.flow.runner import BuildModel

__all__ = ["BuildModel", "main", "make_parser", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
