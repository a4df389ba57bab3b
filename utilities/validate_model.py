#!/usr/bin/env python3
"""Tell whether the FPGA computed what the software computed, and how good the model is.

    python utilities/validate_model.py [PACKAGE_DIR=package] [--json] [--plot DIR] [--html FILE]
                                       [--min-accuracy A] [--tolerance T]

Exit codes: 0 every check passed; 1 a check failed (hardware vs C-simulation classes or
probabilities, accuracy below --min-accuracy, y_hw.npy from another build); 2 unusable input or
bad option. The command line is iris_fpga/validation/cli.py (also ``iris-fpga-validate``), the
logic iris_fpga/validation/; this script imports no TensorFlow.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iris_fpga.validation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
