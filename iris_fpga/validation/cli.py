"""The command line of the validation report: ``python utilities/validate_model.py`` (or
``iris-fpga-validate``). It imports no TensorFlow; the report itself is ``iris_fpga.validation``."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from iris_fpga import contract, terminal, validation
from iris_fpga.arguments import OneLineParser
from iris_fpga.errors import ToolError


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
    parser = OneLineParser(
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
    """Validate; exit codes as README's "Exit codes" (0 pass, 1 a check failed, 2 unusable input)."""
    try:
        args = build_parser().parse_args(argv)
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

