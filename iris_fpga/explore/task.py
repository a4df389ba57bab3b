"""One build of one point, on one fold or on the whole training part, run on a Dask worker as its
own ``BuildModel.py`` process.

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
# The two kinds of run: up to the C-simulation, then the whole IP (the rtl and ip steps: bit-exact
# Verilog, cocotb, yosys) in the same folder, whose earlier steps are reused.
CSIM, IP = "csim", "ip"


@dataclass(frozen=True)
class Run:
    """``python BuildModel.py ARGS --seed S [--cv-fold I/K]`` into its own folder, up to ``kind``'s step.

    A fold run (``fold`` 1 to ``folds``) trains without fold I and scores on it, with seed I-1: each
    fold its own seed. ``fold`` None is the final build of the winner: all 120 training samples,
    seed 0, scored on the 30 test samples.
    """

    point_id: str
    args: tuple[str, ...]
    fold: int | None
    folds: int
    output_dir: str
    latency_cutoff: float
    kind: str = CSIM

    @property
    def seed(self) -> int:
        return self.fold - 1 if self.fold else 0

    @property
    def name(self) -> str:
        """``fold2`` or ``final``: the run's key in its point's record and in its folder's name."""
        return f"fold{self.fold}" if self.fold else "final"

    def build_args(self) -> list[str]:
        """The settings: what rebuilds this run's package (without folders and steps)."""
        fold = ["--cv-fold", f"{self.fold}/{self.folds}"] if self.fold else []
        accelerator = ["--accelerator", "rtl"] if self.kind == IP else []
        return [*self.args, "--seed", str(self.seed), *fold, *accelerator]

    def argv(self) -> list[str]:
        # The package folder beside the build's, never inside it (BuildModel refuses nested folders).
        return ["BuildModel.py", *self.build_args(), "--output-dir", self.output_dir,
                "--package-dir", self.output_dir + "-package", "--to", self.kind, "-q"]

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
        if run.kind == IP and run.fold:  # a fold's measurement, added to its C-simulation run
            record.update(ip_figures(steps))
        else:  # a fold's C-simulation, or the final build: test accuracy and the whole IP at once
            record.update(csim_figures(steps, folder, run.latency_cutoff))
            if run.kind == IP:
                record["rtl"] = ip_figures(steps)
    except (ToolError, OSError, ValueError, KeyError, TypeError) as exc:
        record["error"] = str(exc) if isinstance(exc, ToolError) else f"unreadable results in {folder} ({exc!r})"
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def csim_figures(steps: dict, folder: Path, latency_cutoff: float) -> dict:
    """Accuracies on the build's held-out set (its fold, or the 30 test samples for the final build),
    validation accuracy, sparsity and da4ml's estimate of the datapath."""
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


def ip_figures(steps: dict) -> dict:
    """What yosys measured: the datapath (the rtl step's bit-exact Verilog) and the whole IP (the ip
    step's, verified word for word with cocotb): float casts, softmax tables and AXI-Stream control too."""
    report = steps["rtl"]["result"]["report"]
    whole = steps["ip"]["result"]["ip"]["resources"]
    return {"yosys": {"LUT": report["resources"]["LUT"], "FF": report["resources"]["FF"],
                      "latency_cycles": report["latency_cycles"],
                      "bit_exact": {k: report["bit_exact"][k] for k in ("test", "random") if k in report["bit_exact"]}},
            "ip": {k: whole[k] for k in ("LUT", "FF", "DSP", "BRAM")}}


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
