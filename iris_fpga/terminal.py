"""What every command prints goes through here: names, paths and text from files never reach the
terminal raw.

A file name or a string read from a file may hold ``ESC ] ... BEL`` (set the window title, write
a link), ``ESC [2J`` (clear the screen), the C1 control ``0x9b`` (a one-byte CSI) or U+202E (print
the rest backwards). Escaping each message where it is written would need a call at every
``log.info`` and every ``ToolError``; instead the commands escape at the output boundary, once:

* :class:`EscapingFormatter` formats a log record as usual and then escapes it line by line
  (:func:`escape_lines`), so multi-line output (the build's summary, the board's output tail)
  keeps its line breaks and nothing else;
* :func:`report_error` prints a :class:`~iris_fpga.errors.ToolError` as its one line
  ``error: ...`` (a line break inside is escaped too) and returns its exit code;
* :func:`show` is ``print`` for the commands that print rather than log (the explorer).
"""
from __future__ import annotations

import logging
import sys

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable


def escape_lines(text: object) -> str:
    """``text`` with every line passed through :func:`printable`: only ``\\n`` stays a control
    character (``str.splitlines`` would also split at ``\\r``, ``\\x85`` or U+2028 and let them
    through, hence ``split("\\n")``)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


class EscapingFormatter(logging.Formatter):
    """A logging formatter whose every line of output is :func:`escape_lines`'d."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_lines(super().format(record))


def setup_logging(quiet: bool = False, stream=None) -> None:
    """Log the commands' messages (``%(message)s``, INFO or, with ``quiet``, WARNING and up) to
    ``stream`` (default stdout) through :class:`EscapingFormatter`. Like ``logging.basicConfig``,
    it leaves a root logger that already has handlers alone."""
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(EscapingFormatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler])


def report_error(exc: ToolError, stream=None) -> ExitCode:
    """Print ``error: <message>`` on one line to ``stream`` (default stderr); return the exit code."""
    print(f"error: {printable(exc)}", file=sys.stderr if stream is None else stream, flush=True)
    return exc.code


def show(text: object = "", *, file=None, end: str = "\n") -> None:
    """``print(text)`` with :func:`escape_lines` (default stdout, flushed)."""
    print(escape_lines(text), file=sys.stdout if file is None else file, end=end, flush=True)
