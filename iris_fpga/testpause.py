"""Pause points for race tests, and only for them.

With ``IRIS_FPGA_TEST_PAUSE=POINT:FILE`` in the environment, the code at the named point creates
FILE and waits (at most ``WAIT`` seconds) until it is removed, so that a test can change a folder
at exactly that moment instead of guessing with sleeps. Points: ``package-carried`` and
``package-removing`` (the local package swap), ``board-copied`` and ``board-removing`` (the board's
swap, where deploy forwards the request). Without the variable nothing pauses.
"""
from __future__ import annotations

import os
import time

ENV = "IRIS_FPGA_TEST_PAUSE"
WAIT = 60.0


def requested(point: str) -> str | None:
    """The file to wait on when the environment asks for a pause at ``point``."""
    name, _, file = os.environ.get(ENV, "").partition(":")
    return file if name == point and file else None


def pause(point: str) -> None:
    file = requested(point)
    if file is None:
        return
    with open(file, "x"):
        pass
    deadline = time.monotonic() + WAIT
    while os.path.lexists(file) and time.monotonic() < deadline:
        time.sleep(0.05)
