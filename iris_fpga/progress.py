"""Signs of life while an external tool works for tens of seconds (the Verilator build, yosys).

In a terminal: a rich spinner with the elapsed time on stderr, where the log goes, cleared when
the work ends (the caller logs how long it took). Not in a terminal (a pipe, a CI log): one plain
log line when the work starts, so a log shows what is running and never holds control codes.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator, TextIO

log = logging.getLogger(__name__)


@contextlib.contextmanager
def working(label: str, stream: TextIO | None = None) -> Iterator[None]:
    """Show ``label`` as running for the duration of the block (see the module's docstring)."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        log.info("%s ...", label)
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=stream)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        progress.add_task(label, total=None)
        yield
