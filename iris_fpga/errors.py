"""Exit codes shared by every command (see README, "Exit codes") and the error that carries them.

A user mistake or a failed check raises ``ToolError``; the command-line entry points turn it into
one line on stderr and the exit code, never a traceback.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    CHECK_FAILED = 1  # hardware and C-simulation disagree, accuracy too low, y_hw from another build
    USAGE = 2  # bad option; missing, corrupt or inconsistent file
    EXTERNAL_TOOL = 3  # g++, Vivado HLS / Vivado, verilator, yosys failed
    BOARD = 4  # overlay or driver does not load, DMA timeout, not root on a board
    SSH_UNREACHABLE = 5
    SSH_AUTH = 6
    SSH_HOST_KEY = 7
    REMOTE_NOT_WRITABLE = 8  # remote folder not writable or remote disk full
    REMOTE_ENVIRONMENT = 9  # python3, numpy or pynq missing on the board


class ToolError(Exception):
    """An error to report as one line, with the exit code it maps to."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.code = ExitCode(code)
