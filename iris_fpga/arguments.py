"""The argument parser of every workstation command (build, validate, explore).

A usage error is one line on stderr and exit code 2, like every other error of these commands,
instead of argparse's usage block: ``OneLineParser.error`` raises ``ToolError``, which each
command's ``main`` prints. (``on_target.py`` keeps its own copy: it runs on the board alone.)
"""
from __future__ import annotations

import argparse

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error raises a one-line ``ToolError`` (exit code 2); user text is escaped."""

    def error(self, message: str):
        raise ToolError(f"{printable(message)} (see --help)", ExitCode.USAGE)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except the empty ones (None, False) that would only add noise (0 is shown)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)
