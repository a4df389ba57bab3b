"""``python utilities/explore.py``: the command line of the design-space explorer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iris_fpga.arguments import DefaultsHelpFormatter, OneLineParser
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.explore import outputs
from iris_fpga.config import MAX_FOLDS
from iris_fpga.explore.front import MIN_CV
from iris_fpga.explore.runner import Cluster, Sweep, progress_for
from iris_fpga.explore.space import expand, load_space
from iris_fpga.terminal import report_error, show


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description="Find the cheapest Iris network that still classifies: BuildModel.py over a "
                     "space of settings on a Dask cluster, each point scored by K-fold cross-validation on the "
                     "training samples, yosys for the whole IP of the qualifying Pareto front; the winner is then "
                     "built once on all of them and scored on the test set.", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--space", type=Path, help="JSON: BuildModel.py option names to lists of values "
                        "(default: the built-in 24 points over --hidden, --weight-bits, --sparsity, --epochs)")
    parser.add_argument("--folds", type=int, default=3, help="K: each point is trained K times, each without one "
                        "stratified fold of the training samples (fold I: seed I-1), and scored on that fold")
    parser.add_argument("--min-cv", type=float, default=MIN_CV, help="the winner's worst fold must reach this "
                        "C-simulation accuracy (0 to 1)")
    parser.add_argument("--out", type=Path, default=Path("explore"), help="results.json, pareto.md, pareto.png, "
                        "winner.txt and every run's folder (runs/)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://HOST:8786 "
                        "(default: a local cluster)")
    parser.add_argument("--workers", type=int, help="workers of the local cluster (default: one per CPU)")
    for option, help_text in DATA_OPTIONS.items():
        parser.add_argument(option, type=Path if option == "--csv" else str, help=f"{help_text}: passed to every run")
    args = parser.parse_args(argv)
    if not 2 <= args.folds <= MAX_FOLDS:
        raise ToolError(f"--folds must be 2 to {MAX_FOLDS} (got {args.folds})")
    if not 0 <= args.min_cv <= 1:  # NaN too
        raise ToolError(f"--min-cv must be a fraction from 0 to 1, e.g. 0.95 (got {args.min_cv})")
    if args.workers is not None and (args.scheduler or args.workers < 1):
        raise ToolError("--workers sizes the local cluster: at least 1, and not with --scheduler "
                        "(the scheduler's own workers run the points)")
    return args


def main(argv: list[str] | None = None) -> int:
    cluster = None
    try:
        args = parse_args(argv)
        space = with_data(load_space(args.space), args)
        points = expand(space, str(args.space) if args.space else "the default space")
        prepare_out(args.out)
        cluster = Cluster(args.scheduler, args.workers)
        show(f"{len(points)} points x {args.folds} folds; results in {args.out / outputs.RESULTS}")
        with progress_for() as progress:
            sweep = Sweep(points, args.folds, args.min_cv, args.out, space, cluster, progress)
            result = sweep.run()
        return report(result, args.out, args.min_cv)
    except ToolError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        show(f"interrupted: every finished run is kept in {args.out / outputs.RESULTS}; run the same command "
             "again to go on", file=sys.stderr)
        return 130
    finally:
        if cluster is not None:
            cluster.close()


# BuildModel.py's data options (issue 32), which the explorer passes to every run of every point
DATA_OPTIONS = {"--dataset": "the data set (BuildModel.py --dataset)", "--csv": "a CSV table (BuildModel.py --csv)",
                "--target": "the --csv table's class column (BuildModel.py --target)"}


def with_data(space: dict, args: argparse.Namespace) -> dict:
    """The space with the data options given on this command line, as one value each (a run's cwd is the
    repository, so the table's path is made absolute); an option both here and in the space is refused."""
    given = {option: getattr(args, option[2:]) for option in DATA_OPTIONS if getattr(args, option[2:]) is not None}
    if "--csv" in given:
        given["--csv"] = given["--csv"].resolve()
    twice = sorted(set(given) & set(space))
    if twice:
        raise ToolError(f"{twice[0]} is both an option here and a key of the space: give it once")
    return {**space, **{option: [str(value)] for option, value in given.items()}}


def prepare_out(out: Path) -> None:
    """Refuse, before anything is written, a stranger's results.json, pareto.md, pareto.png or winner.txt."""
    outputs.check_ours(out, outputs.load_results(out).get("outputs", {}))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"cannot create --out {out} ({exc.strerror}): choose a writable folder") from None


def report(result: dict, out: Path, min_cv: float) -> int:
    failed = [p for p in result["points"] if p["status"] == "failed"]
    for point in failed:
        show(f"failed point {' '.join(point['args'])}: {'; '.join(point['errors'])}", file=sys.stderr)
    show(f"\n{outputs.front_table(result['front'])}", end="")
    show(f"\n{len(result['points']) - len(failed)} points done, {len(failed)} failed, in {result['seconds']:.0f} s; "
         f"{out / outputs.TABLE}, {out / outputs.PLOT}")
    if result.get("phases"):
        show("this sweep: " + ", ".join(f"{phase} {spent['runs']} runs in {spent['seconds']:.0f} s"
                                        for phase, spent in result["phases"].items()))
    error = result["estimate_error"]
    if error:
        show(f"da4ml's LUT estimate against yosys on the {error['runs']} measured folds: median "
             f"{error['median_percent']:+.1f}%, from {error['min_percent']:+.1f}% to {error['max_percent']:+.1f}%")
    win = result["winner"]
    if win is None:
        show(outputs.winner_text(None, min_cv), end="")
        return ExitCode.CHECK_FAILED
    show(f"winner (fewest whole-IP LUT with every fold >= {100 * min_cv:.2f}%): {' '.join(win['args'])}: "
         f"CV {100 * win['cv_accuracy']:.2f}% mean, {100 * win['cv_min']:.2f}% worst fold, whole IP "
         f"{win['cv_ip_lut']:,} LUT (largest of its folds)")
    if "error" in win:
        show(f"the winner's final build failed: {win['error']}", file=sys.stderr)
        return ExitCode.CHECK_FAILED
    show(f"built on all the training samples: whole IP {win['ip_lut']:,} LUT, {win['ip_ff']:,} FF, {win['ip_dsp']} "
         f"DSP, {win['ip_bram']:g} BRAM (datapath {win['lut']:,} LUT, {win['latency_cycles']} cycles); test accuracy "
         f"{100 * win['test_accuracy']:.2f}% on the test set, scored once, after the choice\n"
         f"rebuild it: {win['command']}")
    return ExitCode.OK
