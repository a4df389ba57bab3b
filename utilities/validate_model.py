#!/usr/bin/env python3
"""Tell whether the FPGA computed what the software computed, and how good the model is.

    python utilities/validate_model.py [PACKAGE_DIR=package] [--json] [--plot DIR] [--html FILE]
                                       [--min-accuracy A] [--tolerance T]

Exit codes: 0 every check passed; 1 a check failed (hardware vs C-simulation classes or
probabilities, accuracy below --min-accuracy, y_hw.npy from another build); 2 unusable input or
bad option. The logic lives in iris_fpga/validation/; this script imports no TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iris_fpga import contract  # noqa: E402
from iris_fpga.errors import ExitCode, ToolError  # noqa: E402
from iris_fpga import terminal  # noqa: E402
from iris_fpga import validation  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit 2, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        sys.exit(int(terminal.report_error(ToolError(f"{message} (see --help)", ExitCode.USAGE))))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1 (0.9 for 90%)")
    return value


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        description="Validate package/: accuracy of Keras, HLS C-simulation and hardware, and "
        "whether the hardware matches the C-simulation.",
        epilog="Exit codes: 0 all checks pass, 1 a check failed, 2 unusable input.",
    )
    parser.add_argument("package_dir", nargs="?", default="package", type=Path,
                        help="package folder (default: package)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    parser.add_argument("--plot", metavar="DIR", type=Path,
                        help="write confusion.png and probabilities.png into DIR")
    parser.add_argument("--html", metavar="FILE", type=Path,
                        help="write one self-contained page (the report, every figure inlined) to FILE")
    parser.add_argument("--min-accuracy", metavar="A", type=_fraction, default=0.0,
                        help="fail when any source's accuracy is below A (fraction, default 0)")
    parser.add_argument("--tolerance", metavar="T", type=_tolerance,
                        default=validation.DEFAULT_TOLERANCE,
                        help="largest allowed |hardware - C-sim| probability difference "
                        f"(default {validation.DEFAULT_TOLERANCE:g}); Keras vs C-sim is "
                        "reported, never checked")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        validation.check_outputs(args.package_dir, args.plot, args.html)
        data = validation.load_package(args.package_dir)
        report = validation.validate(data, min_accuracy=args.min_accuracy,
                                     tolerance=args.tolerance)
        if args.plot is not None or args.html is not None:
            figures = validation.render_figures(report, data)
            if args.plot is not None:
                report.plots = [str(p) for p in validation.write_plots(report, data, args.plot, figures)]
            if args.html is not None:
                profile = validation.package_profile(data)
                page_figures = {**figures, **({contract.PROFILE: profile} if profile else {})}
                validation.write_html(report, page_figures, args.html)
    except ToolError as exc:
        return int(terminal.report_error(exc))
    text = json.dumps(report.to_dict(), indent=2) if args.json else validation.format_report(report)
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `| head`: the reader left; the verdict still stands
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
