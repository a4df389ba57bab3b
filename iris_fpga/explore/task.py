"""One build of one point at one seed, run on a Dask worker as its own ``BuildModel.py`` process.

This module is what the workers import (start them from the repository root): the task needs
only the standard library, the project and da4ml; TensorFlow and hls4ml load in the build's own
process. Failures come back as a record with an ``error`` line, never as an exception.
"""
from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.fileio import load_json, open_for_writing

REPO = Path(__file__).resolve().parents[2]
CSIM, RTL = "csim", "rtl"  # the two kinds of run: up to the C-simulation, then the rtl step (yosys)


@dataclass(frozen=True)
class Run:
    """``python BuildModel.py ARGS --seed SEED`` into its own folder, up to ``kind``'s step."""

    point_id: str
    args: tuple[str, ...]
    seed: int
    output_dir: str
    latency_cutoff: int
    kind: str = CSIM

    def argv(self) -> list[str]:
        steps = ["--rtl", "--to", "rtl"] if self.kind == RTL else ["--to", "csim"]
        # The package folder beside the build's, never inside it (BuildModel refuses nested folders).
        return ["BuildModel.py", *self.args, "--seed", str(self.seed), "--output-dir", self.output_dir,
                "--package-dir", self.output_dir + "-package", *steps, "-q"]

    def command(self) -> str:
        return shlex.join(["python", *self.argv()])


def run_build(run: Run) -> dict:
    """Run the build; return its figures (or ``error``), the worker that ran it and the seconds it took."""
    started = time.monotonic()
    folder = Path(run.output_dir)
    log = folder.with_name(f"{folder.name}.{run.kind}.log")  # beside it: BuildModel's folder holds only its own
    record = {**worker_identity(), "command": run.command(), "output_dir": run.output_dir}
    try:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ToolError(f"cannot create the run's folder {folder} ({exc.strerror})") from None
        with open_for_writing(log) as out:
            code = subprocess.run([sys.executable, *run.argv()], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, preexec_fn=_interruptible).returncode
        if code:
            raise ToolError(f"BuildModel.py exit {code}: {last_error(log)} (log: {log})")
        steps = load_json(folder / "pipeline" / "state.json")
        record.update(rtl_figures(steps) if run.kind == RTL else csim_figures(steps, folder, run.latency_cutoff))
    except (ToolError, OSError, ValueError, KeyError, TypeError) as exc:
        record["error"] = str(exc) if isinstance(exc, ToolError) else f"unreadable results in {folder} ({exc!r})"
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def csim_figures(steps: dict, folder: Path, latency_cutoff: int) -> dict:
    """Accuracies (30 test samples), validation accuracy, sparsity and da4ml's estimate of the datapath."""
    from iris_fpga.flow.context import GRAPH
    from iris_fpga.datapath.estimate import estimate_datapath

    accuracy, train = steps["csim"]["result"]["accuracy"], steps["train"]["result"]
    return {
        "keras": accuracy["keras"],
        "csim": accuracy["csim"],
        "val_accuracy": train["final_val_accuracy"],
        "sparsity": train["sparsity"]["overall"],
        "da4ml": estimate_datapath(folder / "pipeline" / GRAPH, latency_cutoff),
    }


def rtl_figures(steps: dict) -> dict:
    """What yosys measured on the bit-exact Verilog (the rtl step fails unless it is bit-exact)."""
    report = steps["rtl"]["result"]["report"]
    return {"yosys": {"LUT": report["resources"]["LUT"], "FF": report["resources"]["FF"],
                      "latency_cycles": report["latency_cycles"],
                      "bit_exact": {k: report["bit_exact"][k] for k in ("test", "random") if k in report["bit_exact"]}}}


def _interruptible() -> None:
    """In the build's process: Ctrl-C stops it (a local cluster's workers ignore it, the explorer handles it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def worker_identity() -> dict:
    """The Dask worker running this task (name and address), and its host."""
    from distributed import get_worker

    try:
        worker = get_worker()
        name, address = str(worker.name), worker.address
    except ValueError:  # not on a Dask worker (called directly)
        name, address = "none", ""
    return {"worker": name, "worker_address": address, "host": socket.gethostname()}


def last_error(log: Path) -> str:
    """BuildModel.py's own one-line error, else the log's last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "interrupted:"))]
    return (errors or lines or ["no output"])[-1]
