"""The sweep: every point on every fold up to the C-simulation, then yosys on the datapath and the
whole IP of the front's qualifying points until the rule can choose (synthesized, not verified),
then the winner's final build through the full rtl and ip steps; results.json is rewritten after
every run."""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from pathlib import Path

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.explore import front as fr
from iris_fpga.explore import outputs
from iris_fpga.explore.space import Point
from iris_fpga.explore.task import CSIM, IP, SYNTH, Run, run_build
from iris_fpga.terminal import escape_lines, show

CONNECT_TIMEOUT_S = 30


class Cluster:
    """A Dask client, made when the first run needs it: a local cluster of process workers with one
    thread each, or the existing scheduler at ``address`` (never a fallback to a local one)."""

    def __init__(self, address: str | None, workers: int | None):
        self.address, self.workers = address, workers or os.cpu_count() or 1
        self.client = self.local = None

    def start(self):
        if self.client is None:
            from distributed import Client, LocalCluster

            logging.getLogger("distributed").setLevel(logging.ERROR)
            if self.address is None:
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the workers inherit it: Ctrl-C is ours
                try:
                    self.local = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                              dashboard_address=None, silence_logs=logging.ERROR)
                finally:
                    signal.signal(signal.SIGINT, previous)
                self.client = Client(self.local)
            else:
                self.client = connect(Client, self.address)
        return self.client

    def slots(self) -> int:
        return max(1, sum(self.start().nthreads().values()))

    def close(self) -> None:
        for part in (self.client, self.local):
            if part is not None:
                part.close()


def connect(client_class, address: str):
    try:
        client = client_class(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ToolError(f"cannot reach the Dask scheduler at {address} ({exc}): start one with `dask scheduler` "
                        "or leave out --scheduler for a local cluster", ExitCode.USAGE) from None
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        client.close()
        raise ToolError(f"the Dask scheduler at {address} has no workers after {CONNECT_TIMEOUT_S} s: start "
                        "`dask worker` processes from the repository root", ExitCode.USAGE) from None
    return client


class Sweep:
    """The points of the space at K folds, what earlier sweeps into ``out`` kept, and the cluster."""

    def __init__(self, points: list[Point], folds: int, min_cv: float, out: Path, space: dict, cluster: Cluster,
                 progress):
        self.points, self.folds, self.min_cv, self.out, self.space = points, folds, min_cv, out, space
        self.cluster, self.progress = cluster, progress
        results = outputs.load_results(out)
        kept = outputs.points_by_id(results)
        # A kept point's settings and args are the space's own, never the file's.
        self.records = {p.id: {**(_without_errors(kept.pop(p.id, None)) or {"runs": {}}), "id": p.id,
                               "settings": p.settings, "args": list(p.args)} for p in points}
        self.other = list(kept.values())  # points of other spaces kept in results.json, untouched
        self.made = results.get("outputs", {})  # pareto.md, pareto.png, winner.txt as last written
        self.winner = None
        self.phases: dict[str, dict] = {}  # this sweep's runs and seconds per phase (csim, synth, final)

    def run(self) -> dict:
        """Score every point by cross-validation, synthesize the whole IP of the front's qualifying points
        until the rule can choose, then build the winner once on all 120 training samples (every check
        of the rtl and ip steps) and score it on the test set; return the summary (``winner`` None when
        no measured point qualifies)."""
        started = time.monotonic()
        self.execute([self.make_run(p, fold, CSIM) for p in self.points for fold in range(1, self.folds + 1)
                      if f"fold{fold}" not in self.records[p.id]["runs"]], "csim")
        while todo := [run for point in fr.candidates(self.summaries(), self.min_cv) for run in self.synth_runs(point)]:
            self.execute(todo, SYNTH)
        summaries = self.summaries()
        chosen = fr.choose(summaries, self.min_cv)
        if chosen is not None:
            if "final" not in self.records[chosen["id"]]:
                self.execute([self.make_run(self.point(chosen["id"]), None, IP)], "final")
            self.winner = fr.winner(chosen, self.records[chosen["id"]].get("final"))
        front = fr.pareto(summaries)
        self.made = outputs.write_outputs(self.out, summaries, front, self.winner, self.folds, self.min_cv,
                                          self.made)
        self.save(front)
        return {"front": front, "points": summaries, "winner": self.winner, "seconds": time.monotonic() - started,
                "estimate_error": fr.estimate_error(summaries), "phases": self.phases}

    def point(self, point_id: str) -> Point:
        return next(p for p in self.points if p.id == point_id)

    def make_run(self, point: Point, fold: int | None, kind: str) -> Run:
        run = Run(point.id, point.args, fold, self.folds, "", point.latency_cutoff, kind)
        folder = (self.out / "runs" / f"{point.id}-{run.name}").resolve()
        return dataclasses.replace(run, output_dir=str(folder))

    def synth_runs(self, summary: dict) -> list[Run]:
        return [self.make_run(self.point(summary["id"]), fold, SYNTH) for fold in range(1, self.folds + 1)
                if "rtl" not in summary["runs"][f"fold{fold}"]]

    def execute(self, runs: list[Run], phase: str) -> None:
        """Run ``runs`` on the cluster; record and save each as it finishes; report failures and go on.
        The runs and wall seconds are added to ``phase``'s (the cluster's start counts to the first phase)."""
        if not runs:
            return
        started = time.monotonic()
        try:
            self._execute(runs)
        finally:
            spent = self.phases.setdefault(phase, {"runs": 0, "seconds": 0.0})
            spent["runs"] += len(runs)
            spent["seconds"] = round(spent["seconds"] + time.monotonic() - started, 1)

    def _execute(self, runs: list[Run]) -> None:
        from distributed import as_completed

        client = self.cluster.start()
        slots = self.cluster.slots()
        futures = {client.submit(run_build, run, pure=False, key=f"{run.kind}-{run.point_id}-{run.name}"): run
                   for run in runs}
        done = 0
        try:
            for future in as_completed(futures):
                run = futures[future]
                record = _result(future)
                self.store(run, record)
                done += 1
                in_flight = len(runs) - done
                self.progress(describe(run, record), done=done, running=min(in_flight, slots),
                              left=max(0, in_flight - slots), total=len(runs), phase=run.kind)
        finally:
            client.cancel(list(futures))

    def store(self, run: Run, record: dict) -> None:
        point = self.records[run.point_id]
        if run.fold is None:
            point["final"] = record
        elif run.kind == CSIM:
            point["runs"][run.name] = record
        else:
            point["runs"][run.name]["rtl"] = record
        self.save(None)

    def summaries(self) -> list[dict]:
        return [fr.summarize(self.records[p.id], self.folds) for p in self.points]

    def save(self, front: list[dict] | None) -> None:
        on_front = {p["id"] for p in front or ()}
        points = [{**p, "pareto": p["id"] in on_front if front is not None else None} for p in self.summaries()]
        outputs.save_results(self.out, {"space": self.space, "folds": self.folds, "min_cv": self.min_cv,
                                        "points": points, "winner": self.winner,
                                        "estimate_error": fr.estimate_error(points), "other_points": self.other,
                                        "outputs": self.made, "phases": self.phases})


def _result(future) -> dict:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a task that died on its worker is one failed run, not the sweep
        return {"worker": "?", "error": f"the Dask task failed: {exc!r}"}


def _without_errors(record: dict | None) -> dict | None:
    """An earlier sweep's point with its failed runs dropped, so that this sweep retries them."""
    if record is None:
        return None
    runs = {}
    for name, run in record.get("runs", {}).items():
        if "error" in run:
            continue
        runs[name] = {k: v for k, v in run.items() if k != "rtl"} if "error" in run.get("rtl", {}) else run
    kept = {k: v for k, v in record.items() if k != "final" or "error" not in v}
    return {**kept, "runs": runs}


def describe(run: Run, record: dict) -> str:
    """One line per finished run: its command, the worker and what it gave."""
    where = f"[{record.get('worker', '?')}]"
    if "error" in record:
        return f"FAILED {where} {run.command()}: {record['error']}"
    measured = record.get("rtl", record) if run.kind in (SYNTH, IP) else None
    parts = []
    if run.kind == CSIM or run.fold is None:
        held_out = f"fold {run.fold}/{run.folds}" if run.fold else "the test set"
        parts.append(f"C-sim {100 * record['csim']:.2f}% on {held_out}, Keras {100 * record['keras']:.2f}%, "
                     f"validation {100 * record['val_accuracy']:.2f}%, da4ml {record['da4ml']['LUT']:,} LUT")
    if measured:
        y, ip = measured["yosys"], measured["ip"]
        checked = "verified" if measured.get("verified", True) else "synthesized, not verified"
        parts.append(f"yosys ({checked}): whole IP {ip['LUT']:,} LUT, datapath {y['LUT']:,} LUT, {y['FF']:,} FF, "
                     f"{y['latency_cycles']} cycles")
    return f"{where} {run.command()}: {'; '.join(parts)} ({record['seconds']:.0f} s)"


def plain_progress(line: str, *, done: int, running: int, left: int, total: int, phase: str) -> None:
    show(f"{phase} {done}/{total} done, {running} running, {left} left: {line}")


def progress_for(stream=sys.stdout):
    """A rich progress bar on a terminal, plain lines otherwise."""
    if not stream.isatty():
        return _Plain()
    return _Rich()


class _Plain:
    def __enter__(self):
        return plain_progress

    def __exit__(self, *exc):
        return False


class _Rich:
    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        self.bar.start()
        self.task = self.bar.add_task("starting", total=None)
        return self.update

    def update(self, line: str, *, done: int, running: int, left: int, total: int, phase: str) -> None:
        self.bar.update(self.task, completed=done, total=total,
                        description=f"{phase}: {done} done, {running} running, {left} left")
        self.bar.console.print(escape_lines(line), markup=False, highlight=False)

    def __exit__(self, *exc):
        self.bar.stop()
        return False
