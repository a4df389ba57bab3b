"""Signs of life (iris_fpga/progress.py), as the Verilator build and yosys show them: a live elapsed time
in a terminal, one plain line otherwise."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LABEL = "rtl: building the Verilator simulation"
# What BuildModel.py does (log to stderr at INFO), then one long piece of work.
SCRIPT = f"""
import logging, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from iris_fpga.progress import working
with working({LABEL!r}):
    time.sleep(2.2)
logging.info("done")
"""


def _run(stderr) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})


def test_not_a_terminal_gives_plain_lines():
    proc = _run(subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert err.decode() == f"{LABEL} ...\ndone\n"  # no spinner, no control codes, nothing else


def test_a_terminal_shows_the_elapsed_time():
    master, slave = pty.openpty()
    proc = _run(slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 4096) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    assert LABEL in text and "0:00:01" in text and "0:00:02" in text  # the clock ticks while it works
    assert "\x1b[" in text and text.rstrip().endswith("done")  # drawn live, then cleared
