"""The build's command line: ``python BuildModel.py`` (or ``iris-fpga-build``) and its options.

The options of the settings are made from ``BuildConfig``'s declarations (``iris_fpga.config``):
one per field whose ``Setting`` offers one, named after the field (``rtl_random`` is
``--rtl-random``), with its help, type, choices and default; a training setting that a recipe
holds defaults to the recipe's. ``--from``, ``--to``, ``-q`` and deploy's options are the run's,
not the build's, and are added here by hand.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from iris_fpga import terminal
from iris_fpga.arguments import DefaultsHelpFormatter, OneLineParser
from iris_fpga.data import with_csv_digest
from iris_fpga.config import RECIPES, SETTING, BuildConfig, option_name
from iris_fpga.errors import ToolError
from iris_fpga.flow.steps import STEP_NAMES

def option_fields() -> list[dataclasses.Field]:
    """The ``BuildConfig`` fields the command line offers, in declaration order."""
    return [f for f in dataclasses.fields(BuildConfig) if f.metadata[SETTING].option]


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per declared setting: ``--`` + the field name, its help, type, choices and default."""
    types = typing.get_type_hints(BuildConfig)
    recipe_held = set(RECIPES["default"])
    for field in option_fields():
        declared = field.metadata[SETTING]
        spec: dict = {"dest": field.name, "help": declared.help}
        if types[field.name] is bool:
            spec["action"] = "store_true"
        else:
            spec["type"] = declared.parse or types[field.name]
            spec["default"] = declared.show(field.default) if declared.show else field.default
            spec.update({k: v for k, v in (("choices", declared.choices), ("metavar", declared.metavar)) if v})
        if field.name in recipe_held:  # None: BuildConfig.for_recipe takes the recipe's
            spec.update(default=None, help=f"{declared.help} (default: the recipe's)")
        parser.add_argument(option_name(field.name), **spec)


def make_parser() -> OneLineParser:
    """The command line's options (also what utilities/explore.py checks a search space against)."""
    parser = OneLineParser(
        description="Train the Iris network, convert it with hls4ml for a PYNQ-Z2 and write package/.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--from", dest="start", choices=STEP_NAMES, default="data", help="first step to run")
    parser.add_argument("--to", dest="stop", choices=STEP_NAMES, default="deploy", help="last step to run")
    add_setting_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    from iris_fpga.deploy import add_deploy_arguments

    add_deploy_arguments(parser)
    return parser


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, BuildConfig]:
    """The options and the checked ``BuildConfig`` they give; a usage error raises ``ToolError`` (exit 2)."""
    args = make_parser().parse_args(argv)
    if STEP_NAMES.index(args.start) > STEP_NAMES.index(args.stop):
        raise ToolError(f"--from {args.start} comes after --to {args.stop}: swap them")
    values = {field.name: getattr(args, field.name) for field in option_fields()}
    return args, with_csv_digest(BuildConfig.for_recipe(values.pop("recipe"), **values))


def main(argv: list[str] | None = None) -> int:
    """Run the build; every error is one line on stderr and an exit code (README, "Exit codes")."""
    from iris_fpga.flow.runner import BuildModel

    try:
        args, config = parse_args(argv)
        terminal.setup_logging(args.quiet)
        return BuildModel(config, args).run(args.start, args.stop)
    except ToolError as exc:
        return terminal.report_error(exc)
    except KeyboardInterrupt:
        print("interrupted: the previous package is unchanged", file=sys.stderr)
        return 130

