"""What a results.json must hold before a sweep reads it back: every field a later sweep uses,
checked for its type, so that a damaged or forged file is one line and exit 2 instead of a
TypeError in the middle of a sweep.

A run is either a failure (``error``: text; a later sweep retries it) or a success: ``worker``,
the accuracies and sparsity as fractions, da4ml's figures, and optionally the measurement of the
rtl and ip steps (its own ``error``, or yosys's figures of the datapath and of the whole IP, and
optionally ``verified``: false for a front fold's synthesis alone; records of explorers before it
were all verified). A
point is ``id``, ``settings``, ``args`` (text), ``runs`` by fold (``fold1`` ..) and, once chosen,
its ``final`` run.
"""
from __future__ import annotations

import re
from typing import Any

from iris_fpga.errors import ToolError

FRACTIONS = ("csim", "keras", "val_accuracy", "sparsity")
FIGURES = ("LUT", "FF", "latency_cycles")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_count(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _figures_problem(figures: Any, least_lut: int) -> str | None:
    if not isinstance(figures, dict):
        return "is not an object of LUT, FF and latency_cycles"
    wrong = [k for k in FIGURES if not _is_count(figures.get(k), least_lut if k == "LUT" else 0)]
    return f"has no count {wrong[0]!r}" if wrong else None


def run_problem(run: Any) -> str | None:
    """Why ``run`` is no run record the explorer writes, or None."""
    if not isinstance(run, dict):
        return "is not an object"
    if "error" in run:
        return None if isinstance(run["error"], str) else "has an 'error' that is not text"
    if not isinstance(run.get("worker"), str):
        return "has no 'worker' name"
    wrong = [k for k in FRACTIONS if not _is_fraction(run.get(k))]
    if wrong:
        return f"has no fraction {wrong[0]!r} (0 to 1)"
    problem = _figures_problem(run.get("da4ml"), 0)
    if problem:
        return f"'da4ml' {problem}"
    rtl = run.get("rtl")
    if rtl is None:
        return None
    if not isinstance(rtl, dict):
        return "has an 'rtl' that is not an object"
    if "error" in rtl:
        return None if isinstance(rtl["error"], str) else "has an rtl 'error' that is not text"
    problem = _figures_problem(rtl.get("yosys"), 1)  # a LUT count divides da4ml's error: never 0
    if problem:
        return f"'rtl.yosys' {problem}"
    if not isinstance(rtl.get("verified", True), bool):
        return "has an rtl 'verified' that is not true or false"
    problem = _ip_problem(rtl.get("ip"))
    return f"'rtl.ip' {problem}" if problem else None


def _ip_problem(figures: Any) -> str | None:
    """The whole IP's yosys figures: LUT (at least 1), FF and DSP counts, BRAM (halves: a number)."""
    if not isinstance(figures, dict):
        return "is not an object of LUT, FF, DSP and BRAM"
    wrong = [k for k in ("LUT", "FF", "DSP") if not _is_count(figures.get(k), 1 if k == "LUT" else 0)]
    bram = figures.get("BRAM")
    if not wrong and (isinstance(bram, bool) or not isinstance(bram, (int, float)) or not 0 <= bram < 1e9):
        wrong = ["BRAM"]
    return f"has no count {wrong[0]!r}" if wrong else None


def point_problem(point: Any) -> str | None:
    """Why ``point`` is no point record the explorer writes, or None (its runs included)."""
    if not isinstance(point, dict):
        return "is not an object"
    if not isinstance(point.get("id"), str):
        return "has no 'id' text"
    if not isinstance(point.get("settings"), dict):
        return "has no 'settings' object"
    args = point.get("args")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return "has no 'args' list of text"
    runs = point.get("runs")
    if not isinstance(runs, dict):
        return "has no 'runs' object"
    for name, run in runs.items():
        problem = run_problem(run)
        if problem:
            return f"run {name!r} {problem}"
    if "final" in point:
        problem = run_problem(point["final"])
        if problem:
            return f"'final' {problem}"
        if "error" not in point["final"] and "rtl" not in point["final"]:
            return "'final' has no 'rtl' measurement"
    return None


def check_results(doc: Any, name: str, fmt: str) -> None:
    """Refuse (exit 2, naming the file ``name``) a results document the explorer did not write."""
    def refuse(what: str):
        raise ToolError(f"{name} {what}: not a results file of this explorer ({fmt}); "
                        "choose another --out")

    if not isinstance(doc, dict) or doc.get("format") != fmt:
        refuse(f"has no \"format\": \"{fmt}\"")
    for key in ("points", "other_points"):
        points = doc.get(key, [] if key == "other_points" else None)
        if not isinstance(points, list):
            refuse(f"has no {key!r} list")
        for i, point in enumerate(points):
            problem = point_problem(point)
            if problem:
                refuse(f"{key}[{i}] {problem}")
    made = doc.get("outputs", {})
    if not isinstance(made, dict) or not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in made.values()):
        refuse("has an 'outputs' that is not an object of sha256 sums")
