#!/usr/bin/env python3
"""Train a pruned, quantized Iris network and take it to a PYNQ-Z2 package with hls4ml.

The command line and the runner, in the shape of FINN's dataflow builder: the steps (data, train,
convert, csim, rtl, bitstream, package, deploy) are declared in one table, ``STEPS`` in
``iris_fpga/flow/steps.py``, and share one ``BuildConfig``. ``--from`` / ``--to`` run a range;
each step's time is recorded; a step whose inputs, settings and versions are unchanged is reused.
Run ``python BuildModel.py --help`` for the options, README.md for the whole flow.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from iris_fpga.flow.context import Build, Step
from iris_fpga.flow.steps import STEP_NAMES, STEPS
from iris_fpga.cache import cache_keys
from iris_fpga.config import ACCELERATORS, ARTICLE_BITS, ARTICLE_HIDDEN, BOARDS, MAX_REUSE_FACTOR, RECIPES, BuildConfig, parse_widths
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_json
from iris_fpga.packaging import check_folders
from iris_fpga.versions import versions_of

log = logging.getLogger("BuildModel")


class BuildModel(Build):
    """The whole workstation flow: runs the steps of ``iris_fpga.flow.steps.STEPS`` in order."""

    def keys(self) -> dict[str, str]:
        """Cache keys of all cached steps, from settings and versions alone (no heavy import)."""
        names = tuple(sorted({name for step in STEPS for name in step.versions}))
        return cache_keys(STEPS, self.config, versions_of(names))

    def run(self, start: str = "data", stop: str = "deploy") -> int:
        steps = STEPS[STEP_NAMES.index(start): STEP_NAMES.index(stop) + 1]
        self.skipped.update({step.name: why for step in steps if (why := step.when(self))})
        active = [step for step in steps if step.name not in self.skipped]
        if not active:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.skipped.items())
            raise ToolError(f"--from {start} --to {stop} runs no step ({reasons})")
        self.prepare([step.name for step in steps])
        self.step_keys = self.keys()
        self.gather(active, start)
        for i, step in enumerate(active, 1):
            self.run_step(step, f"[{i}/{len(active)}]")
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.work / "last_run.json", {
            "seconds": self.timings,
            "reused": [step.name for step in active if step.name not in self.timings],
            "skipped": self.skipped,
        })
        self.summary()
        return ExitCode.OK

    def prepare(self, names: list[str]) -> None:
        """Refuse what would fail later, before any step runs: unknown board, unwritable folders."""
        from iris_fpga.hls import check_board

        check_board(self.config.board)
        check_folders(self.output_dir, self.package_dir, replace_package="package" in names)
        for folder in (self.output_dir, self.package_dir.parent):
            _check_writable(folder)

    def gather(self, active: list[Step], start: str) -> None:
        """Results of the cached steps before the last active one that do not run now.

        A step before ``--from`` must have finished with today's settings, unless it is not part
        of this run or may skip; the result of any other earlier run is used when still valid.
        """
        if all(step.standalone for step in active):
            return
        running = {step.name for step in active}
        for step in STEPS[: STEP_NAMES.index(active[-1].name)]:
            if step.name in running or step.name not in self.step_keys:
                continue
            result = self.state.reusable(step.name, self.step_keys[step.name])
            if result is not None:
                self.results[step.name] = result
            elif STEP_NAMES.index(step.name) < STEP_NAMES.index(start) and not step.may_skip \
                    and step.when(self) is None:
                raise ToolError(
                    f"--from {start} needs the outputs of step {step.name!r} made with these settings, "
                    f"and {self.work} has none: run with --from {step.name} (or without --from)"
                )

    def run_step(self, step: Step, counter: str) -> None:
        """Reuse the step's recorded result when its key matches, else run it and record what it made."""
        key = self.step_keys.get(step.name)
        reused = self.state.reusable(step.name, key) if key else None
        if reused is not None:
            self.results[step.name] = reused
            log.info("%s %-9s reused (inputs unchanged, key %s)", counter, step.name, key)
            return
        log.info("%s %-9s ...", counter, step.name)
        t0 = time.perf_counter()
        outcome = step.run(self)
        seconds = time.perf_counter() - t0
        self.timings[step.name] = round(seconds, 3)
        if outcome.skipped:
            self.skipped[step.name] = outcome.skipped
        else:
            self.results[step.name] = outcome.result
            if key:
                self.state.record(step.name, key, outcome.result, list(outcome.outputs), seconds)
        done = "skipped (see the summary) after" if outcome.skipped else "done in"
        log.info("%s %-9s %s %.1f s", counter, step.name, done, seconds)

    def summary(self) -> None:
        log.info("")
        log.info("Summary")
        for step in STEPS:
            if step.name in self.skipped:
                lines = [(step.name, f"skipped: {self.skipped[step.name]}")]
            elif step.name in self.results and step.summary:
                lines = step.summary(self, self.results[step.name])
            else:
                lines = []
            for label, text in lines:
                log.info("  %-12s %s", label, text)
        if self.timings:
            log.info("  time         %s", ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ToolError(f"cannot write to {folder} ({exc.strerror}): choose a writable folder") from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except the empty ones (None, False) that would only add noise."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) instead of the usage block."""

    def error(self, message: str):
        raise ToolError(f"{message} (see --help)", ExitCode.USAGE)


def make_parser() -> OneLineParser:
    """The command line's options (also what utilities/explore.py checks a search space against)."""
    parser = OneLineParser(
        description="Train the Iris network, convert it with hls4ml for a PYNQ-Z2 and write package/.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--from", dest="start", choices=STEP_NAMES, default="data", help="first step to run")
    parser.add_argument("--to", dest="stop", choices=STEP_NAMES, default="deploy", help="last step to run")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                        help="training settings: 'default' prunes for real; 'article' is the seed article's")
    parser.add_argument("--seed", type=int, default=0, help="weight init and shuffling (the split is fixed)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    parser.add_argument("--sparsity", type=float, help="fraction of weights pruned to zero, in [0, 1) (default: the recipe's)")
    parser.add_argument("--hidden", type=parse_widths, default=",".join(map(str, ARTICLE_HIDDEN)), metavar="W1,W2,...",
                        help="hidden layer widths, 1 to 6 of them, each 1 to 256")
    parser.add_argument("--weight-bits", type=int, default=ARTICLE_BITS,
                        help="bits of every weight and bias, quantized_bits(B, 0, alpha=1), 2 to 16")
    parser.add_argument("--activation-bits", type=int, default=ARTICLE_BITS,
                        help="bits of every hidden ReLU, quantized_relu(B), 2 to 16")
    parser.add_argument("--reuse-factor", type=int, default=512,
                        help=f"hls4ml ReuseFactor of every Dense layer, 1 to {MAX_REUSE_FACTOR}")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="hls",
                        help="hls: hls4ml's IP (Vivado HLS 2020.1 + Vivado builds it), as in the article; rtl: this "
                        "project's own Verilog IP, verified here cycle by cycle (Vivado alone builds it); implies --rtl")
    parser.add_argument("--board", default="pynq-z2",
                        help=f"hls4ml VivadoAccelerator board; only {', '.join(BOARDS)} works end to end "
                        "(on_target.py drives a PYNQ-Z2, part xc7z020)")
    parser.add_argument("--default-precision", default="ap_fixed<16,6>",
                        help="hls4ml default precision (also the IP's input type): ap_fixed<W,I> or ap_ufixed<W,I>, "
                        "optionally with rounding and overflow modes")
    parser.add_argument("--exp-table-t", default="ap_fixed<18,8>", help="softmax exp table type (same form)")
    parser.add_argument("--inv-table-t", default="ap_fixed<18,4>", help="softmax inverse table type (same form)")
    parser.add_argument("--output-dir", default="hls4ml_prj_pynq", help="hls4ml project (and the build's work files)")
    parser.add_argument("--package-dir", default="package", help="what the board gets")
    parser.add_argument("--rtl", action="store_true", help="add the rtl step: Verilog, bit-exact simulation, resources")
    parser.add_argument("--latency-cutoff", type=float, default=2.5,
                        help="da4ml pipelining: adder delays per register stage (0: combinational)")
    parser.add_argument("--rtl-random", type=int, default=2000, help="random inputs the rtl step compares")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    from iris_fpga.deploy import add_deploy_arguments

    add_deploy_arguments(parser)
    return parser


def parse_args(argv: list[str] | None):
    args = make_parser().parse_args(argv)
    if STEP_NAMES.index(args.start) > STEP_NAMES.index(args.stop):
        raise ToolError(f"--from {args.start} comes after --to {args.stop}: swap them")
    config = BuildConfig.for_recipe(
        args.recipe,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        sparsity=args.sparsity,
        hidden=args.hidden,
        accelerator=args.accelerator,
        weight_bits=args.weight_bits,
        activation_bits=args.activation_bits,
        board=args.board,
        reuse_factor=args.reuse_factor,
        default_precision=args.default_precision,
        exp_table_t=args.exp_table_t,
        inv_table_t=args.inv_table_t,
        rtl=args.rtl,
        latency_cutoff=args.latency_cutoff,
        rtl_random=args.rtl_random,
        output_dir=args.output_dir,
        package_dir=args.package_dir,
    )
    return args, config


def main(argv: list[str] | None = None) -> int:
    try:
        args, config = parse_args(argv)
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                            stream=sys.stdout)
        return BuildModel(config, args).run(args.start, args.stop)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted: the previous package is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
