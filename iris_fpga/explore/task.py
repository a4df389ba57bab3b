"""One build of one point (on one fold or on the whole training part) or a front fold's synthesis, run
on a Dask worker.

This module is what the workers import (start them from the repository root). A build runs in the
worker's own process, as ``BuildModel.py``'s ``main`` with the run's arguments: TensorFlow and
hls4ml are imported once per worker, not once per run. Each run is isolated as its own process
would be: a fresh Keras session (the seed is set by the train step), its own hls4ml project and its
own copy of the C-simulation library beside its own ``weights/`` (``iris_fpga.hls``), everything it
prints in its own log, and one build at a time per worker process. A front fold's measurement
(``synthesis``) runs the same way, in its own folder beside the fold's. Failures come back as a
record with an ``error`` line, never as an exception.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import load_json, open_for_writing

# The three kinds of run: a fold up to the C-simulation; a front fold's yosys figures of the datapath
# and the whole IP, synthesized from its exported graph but not verified (``synthesis``); the winner's
# final build through the ip step (bit-exact Verilog, cocotb, yosys, the netlist's simulation).
CSIM, SYNTH, IP = "csim", "synth", "ip"
#: The whole IP's yosys figures a run's record keeps (``ip_figures`` and ``synthesis.synthesize_fold``).
IP_RESOURCES = ("LUT", "FF", "DSP", "BRAM")


@dataclass(frozen=True)
class Run:
    """``python BuildModel.py ARGS --seed S [--cv-fold I/K]`` into its own folder, up to ``kind``'s step
    (a ``SYNTH`` run: the command that builds, and verifies, the IP it synthesizes).

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
        accelerator = ["--accelerator", "rtl"] if self.kind in (SYNTH, IP) else []
        return [*self.args, "--seed", str(self.seed), *fold, *accelerator]

    def argv(self) -> list[str]:
        # The package folder beside the build's, never inside it (BuildModel refuses nested folders).
        return ["BuildModel.py", *self.build_args(), "--output-dir", self.output_dir,
                "--package-dir", self.output_dir + "-package", "--to", IP if self.kind == SYNTH else self.kind, "-q"]

    def command(self) -> str:
        return shlex.join(["python", *self.argv()])


def run_build(run: Run) -> dict:
    """Run the build (or a front fold's synthesis); return its figures (or ``error``), the worker that
    ran it and the seconds it took."""
    started = time.monotonic()
    folder = Path(run.output_dir)
    log = folder.with_name(f"{folder.name}.{run.kind}.log")  # beside it: BuildModel's folder holds only its own
    record = {**worker_identity(), "command": run.command(), "output_dir": run.output_dir}
    try:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ToolError(f"cannot create the run's folder {folder} ({exc.strerror})") from None
        record.update(synthesized(run, log) if run.kind == SYNTH else built(run, log))
    except (ToolError, OSError, ValueError, KeyError, TypeError) as exc:
        record["error"] = str(exc) if isinstance(exc, ToolError) else f"unreadable results in {folder} ({exc!r})"
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def built(run: Run, log: Path) -> dict:
    """``BuildModel.py`` for ``run``: a fold's C-simulation figures, or the final build's (test accuracy)
    with the whole IP its ip step verified and synthesized (``rtl``)."""
    folder = Path(run.output_dir)
    with open_for_writing(log) as out:
        code = build_here(run.argv()[1:], out)
    if code:
        raise ToolError(f"BuildModel.py exit {code}: {last_error(log)} (log: {log})")
    steps = load_json(folder / "pipeline" / "state.json")
    figures = csim_figures(steps, folder, run.latency_cutoff)
    return {**figures, "rtl": ip_figures(steps)} if run.kind == IP else figures


def synthesized(run: Run, log: Path) -> dict:
    """A front fold's yosys figures (``synthesis``), from its C-simulation run's folder, made in
    ``<folder>.synth/``, with the settings BuildModel.py's parser gives its command; output into ``log``."""
    from iris_fpga.explore.synthesis import synthesize_fold
    from iris_fpga.flow.cli import parse_args
    from iris_fpga.hls import board_part

    folder = Path(run.output_dir)
    _, config = parse_args(run.argv()[1:])
    with open_for_writing(log) as out, _ONE_BUILD, _output_to(out):
        try:
            return synthesize_fold(folder, folder.with_name(f"{folder.name}.{SYNTH}"), config.latency_cutoff,
                                   board_part(config.board))
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - a library's error fails this run only, traceback in its log
            traceback.print_exc()
            raise ToolError(f"the synthesis failed ({exc!r}; log: {log})") from None


def csim_figures(steps: dict, folder: Path, latency_cutoff: float) -> dict:
    """Accuracies on the build's held-out set (its fold, or the 30 test samples for the final build),
    validation accuracy, sparsity and da4ml's estimate of the datapath."""
    from iris_fpga.flow.context import GRAPH
    from iris_fpga.datapath.estimate import estimate_datapath

    accuracy, train = steps["csim"]["result"]["accuracy"], steps["train"]["result"]
    return {
        "library_from": steps["csim"]["result"].get("library_from", "g++"),
        "keras": accuracy["keras"],
        "csim": accuracy["csim"],
        "val_accuracy": train["final_val_accuracy"],
        "sparsity": train["sparsity"]["overall"],
        "da4ml": estimate_datapath(folder / "pipeline" / GRAPH, latency_cutoff),
    }


def ip_figures(steps: dict) -> dict:
    """What yosys measured: the datapath (the rtl step's bit-exact Verilog) and the whole IP (the ip
    step's, verified word for word with cocotb and on its netlist): float casts, softmax tables and
    AXI-Stream control too."""
    report = steps["rtl"]["result"]["report"]
    whole = steps["ip"]["result"]["ip"]["resources"]
    return {"yosys": {"LUT": report["resources"]["LUT"], "FF": report["resources"]["FF"],
                      "latency_cycles": report["latency_cycles"],
                      "bit_exact": {k: report["bit_exact"][k] for k in ("test", "random") if k in report["bit_exact"]}},
            "ip": {k: whole[k] for k in IP_RESOURCES}, "verified": True}


_ONE_BUILD = threading.Lock()  # a worker with several threads still runs one build at a time


def build_here(argv: list[str], out) -> int:
    """``BuildModel.py ARGV`` in this process, in a fresh Keras session, everything it prints (its
    log, Keras, hls4ml, the tools it starts) into the file ``out``; its exit code."""
    from iris_fpga.flow.cli import main
    from iris_fpga.keras_compat import tf_keras

    with _ONE_BUILD, _output_to(out):
        tf_keras().backend.clear_session()
        try:
            return main(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
        except Exception:  # noqa: BLE001 - a bug or a library's error is this run's failure, in its log
            traceback.print_exc()
            return ExitCode.CHECK_FAILED


@contextlib.contextmanager
def _output_to(out):
    """File descriptors 1 and 2, Python's streams and the root logger (at -q's level, as the runs ask)
    into ``out`` for the block; everything as it was afterwards."""
    from iris_fpga.terminal import EscapingFormatter

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(EscapingFormatter("%(message)s"))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved_fds = [os.dup(1), os.dup(2)]
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        root.handlers = [handler]  # BuildModel's setup_logging keeps a root logger that has handlers
        root.setLevel(logging.WARNING)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for fd, saved in zip((1, 2), saved_fds):
            os.dup2(saved, fd)
            os.close(saved)


def worker_identity() -> dict:
    """The Dask worker running this task (name and address), its host and process (every run of a
    worker runs in that one process)."""
    from distributed import get_worker

    try:
        worker = get_worker()
        name, address = str(worker.name), worker.address
    except ValueError:  # not on a Dask worker (called directly)
        name, address = "none", ""
    return {"worker": name, "worker_address": address, "host": socket.gethostname(), "pid": os.getpid()}


def last_error(log: Path) -> str:
    """BuildModel.py's own one-line error, else the log's last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "interrupted:"))]
    return (errors or lines or ["no output"])[-1]
