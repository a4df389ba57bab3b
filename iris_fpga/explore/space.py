"""The search space: BuildModel.py option names to lists of values; its points are their product.

Every point is checked with BuildModel.py's own parser (``iris_fpga.flow.cli``), in this process,
before any work: an unknown option, a value BuildModel.py refuses (on the full argument list a run
gets), an unknown board, a deploy option, or an option the explorer sets itself is one line and exit 2.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from iris_fpga.cache import fingerprint
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import load_json
from iris_fpga.flow.cli import make_parser, parse_args

#: 3 x 2 x 2 x 2 = 24 points: one or two small hidden layers, 3- or 5-bit weights, 4-bit activations,
#: half and three quarters pruned, and the training budget tiny networks need (30 or 150 epochs at
#: lr 0.01). The whole IP's fixed part (float casts, softmax, AXI-Stream) is most of a small IP's LUT.
DEFAULT_SPACE = {
    "--hidden": ["4", "8", "8,8"],
    "--weight-bits": [3, 5],
    "--activation-bits": [4],
    "--sparsity": [0.5, 0.75],
    "--epochs": [30, 150],
    "--lr": [0.01],
}
#: Options the explorer sets for every run (folders, seed, fold, steps) and why a space cannot.
OWNED = {
    "--seed": "each fold has its own seed (fold I: seed I-1), the final build seed 0",
    "--cv-fold": "the folds come from --folds",
    "--output-dir": "every run gets its own folder under --out",
    "--package-dir": "every run gets its own folder under --out",
    "--from": "the explorer chooses the steps",
    "--to": "the explorer chooses the steps",
    "--rtl": "the explorer measures the front's whole IP itself",
    "--accelerator": "the explorer measures the project's own IP (--accelerator rtl) on the front itself",
    "--quiet": "the explorer keeps each run's output in its log",
    "-q": "the explorer keeps each run's output in its log",
}
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Point:
    """One combination of settings: ``settings`` as the space gave them, ``args`` as BuildModel.py's argv."""

    settings: dict
    args: tuple[str, ...]
    latency_cutoff: float  # the rtl step's, for da4ml's estimate of the same pipeline

    @property
    def id(self) -> str:
        return fingerprint(list(self.args))[:12]


def load_space(path: Path | None) -> dict:
    """The space in ``path`` (JSON), or the built-in default one."""
    if path is None:
        return dict(DEFAULT_SPACE)
    space = load_json(Path(path))
    if not isinstance(space, dict) or not space:
        raise ToolError(f"{path}: a space is a JSON object of BuildModel.py options to lists of values, "
                        'e.g. {"--hidden": ["16", "16,16"]}')
    return space


def expand(space: dict, source: str = "the default space") -> list[Point]:
    """Every point of the space, each checked by BuildModel.py's parser; duplicates once."""
    options = {name: action for action in make_parser()._actions for name in action.option_strings}
    for key, values in space.items():
        check_entry(key, values, options, source)
    size = math.prod(len(values) for values in space.values())
    if size > MAX_POINTS:
        raise ToolError(f"{source}: {size:,} points; the explorer takes at most {MAX_POINTS:,}")
    points = {}
    for combo in itertools.product(*space.values()):
        settings = dict(zip(space, combo))
        args = tuple(part for key, value in settings.items() for part in (key, str(value)))
        try:
            config = check_point(args, parse_args)
        except ToolError as exc:
            raise ToolError(f"{source}: point {' '.join(args)}: {exc}", ExitCode.USAGE) from None
        point = Point(settings, args, config.latency_cutoff)
        points.setdefault(point.id, point)
    return list(points.values())


def check_point(args: tuple[str, ...], parse_args):
    """The point's BuildConfig, after everything a run of it would check before its first step:
    BuildModel.py's parser and BuildConfig on the full argument list of both kinds of run (the
    explorer's own options included), and the board."""
    from iris_fpga.explore.task import CSIM, IP, Run
    from iris_fpga.hls import check_board

    for fold, kind in ((1, CSIM), (1, IP), (None, IP)):
        _, config = parse_args(Run("check", args, fold, 2, "runs/check", 0, kind).argv()[1:])
    check_board(config.board)
    return config


def deploy_options() -> set[str]:
    """BuildModel.py's deploy options: the explorer's runs stop before deploy, so none belongs in a space."""
    import argparse

    from iris_fpga.deploy import add_deploy_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_deploy_arguments(parser)
    return {name for action in parser._actions for name in action.option_strings}


def check_entry(key, values, options: dict, source: str) -> None:
    """One key and its values: a BuildModel.py option that takes a value, and a list of strings or numbers."""
    if not isinstance(key, str) or key not in options:
        raise ToolError(f"{source}: {key!r} is not a BuildModel.py option (see python BuildModel.py --help)")
    if key in OWNED:
        raise ToolError(f"{source}: {key} cannot be part of a space: {OWNED[key]}")
    if options[key].nargs == 0:
        raise ToolError(f"{source}: {key} takes no value and cannot be part of a space")
    if key in deploy_options():
        raise ToolError(f"{source}: {key} is a deploy option, and the explorer's runs stop before deploy: "
                        "it cannot be part of a space")
    if not isinstance(values, list) or not values:
        raise ToolError(f"{source}: {key} needs a non-empty list of values, e.g. [{_example(key)}]")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ToolError(f"{source}: {key}: {value!r} is not a string or a number")


def _example(key: str) -> str:
    return '"16", "16,16"' if key == "--hidden" else "4, 6"
