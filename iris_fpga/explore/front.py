"""Cross-validated scores of a point, the accuracy/LUT Pareto front, and the rule that picks the winner.

A point is trained K times, each time without one stratified fold of the 120 training samples, and
scored by the C-simulation on that fold: ``cv_accuracy`` is the mean over the folds, ``cv_min`` the
worst fold. The 30 test samples take no part. Its datapath cost ``lut`` is the largest over its
folds, from yosys when every fold was measured, else from da4ml's estimate (``estimated_by`` says
which); ``ip_lut`` is the whole IP's (yosys), once measured; ``ip_verified`` False when the folds
were synthesized alone (the front's measurement), never verified.

The rule: the winner is the measured point with the fewest ``ip_lut`` whose ``cv_min`` reaches
``--min-cv``. Only then is it built on all 120 training samples and scored once on the test set.
"""
from __future__ import annotations

import shlex
import statistics

from iris_fpga.explore.task import IP, Run

#: The winner's worst fold must reach this C-simulation accuracy (``--min-cv``).
MIN_CV = 0.95
DONE, FAILED, PENDING = "done", "failed", "pending"


def fold_names(folds: int) -> list[str]:
    """The keys of a point's fold runs: ``fold1`` .. ``foldK``."""
    return [f"fold{i}" for i in range(1, folds + 1)]


def summarize(point: dict, folds: int) -> dict:
    """The point with its summary fields (status, CV accuracies, lut, ip_lut, ff, latency, estimated_by, workers)."""
    runs = {name: point["runs"].get(name) for name in fold_names(folds)}
    errors = [f"{name}: {err}" for name, run in runs.items() if run
              for err in (run.get("error"), run.get("rtl", {}).get("error")) if err]
    summary = {"status": FAILED if errors else PENDING if None in runs.values() else DONE,
               "errors": errors, "workers": sorted({run["worker"] for run in runs.values() if run})}
    if summary["status"] != DONE:
        return {**point, **summary, "cv_accuracy": None, "cv_min": None, "lut": None, "ip_lut": None, "ff": None,
                "latency_cycles": None, "estimated_by": None, "ip_verified": None}
    measured = all("yosys" in run.get("rtl", {}) for run in runs.values())
    figures = [run["rtl"]["yosys"] if measured else run["da4ml"] for run in runs.values()]
    return {
        **point, **summary,
        "cv_accuracy": statistics.fmean(run["csim"] for run in runs.values()),
        "cv_min": min(run["csim"] for run in runs.values()),
        "keras_accuracy": min(run["keras"] for run in runs.values()),
        "val_accuracy": min(run["val_accuracy"] for run in runs.values()),
        "sparsity": min(run["sparsity"] for run in runs.values()),
        "lut": max(f["LUT"] for f in figures),
        "ip_lut": max(run["rtl"]["ip"]["LUT"] for run in runs.values()) if measured else None,
        "ff": max(f["FF"] for f in figures),
        "latency_cycles": max(f["latency_cycles"] for f in figures),
        "estimated_by": "yosys" if measured else "da4ml",
        "ip_verified": all(run["rtl"].get("verified", True) for run in runs.values()) if measured else None,
    }


def pareto(points: list[dict]) -> list[dict]:
    """The finished points no other finished point beats (worst fold at least as accurate and at most as
    many datapath LUT, better in one), cheapest first."""
    done = [p for p in points if p["status"] == DONE]
    front = [p for p in done if not any(_dominates(q, p) for q in done)]
    return sorted(front, key=lambda p: (p["lut"], -p["cv_min"], p["id"]))


def _dominates(q: dict, p: dict) -> bool:
    return (q["cv_min"] >= p["cv_min"] and q["lut"] <= p["lut"]
            and (q["cv_min"] > p["cv_min"] or q["lut"] < p["lut"]))


def qualifies(point: dict, min_cv: float) -> bool:
    return point["status"] == DONE and point["cv_min"] >= min_cv - 1e-9


def candidates(points: list[dict], min_cv: float) -> list[dict]:
    """The front's points that qualify and are not measured yet: the only ones the rule can still pick."""
    return [p for p in pareto(points) if qualifies(p, min_cv) and p["estimated_by"] != "yosys"]


def choose(points: list[dict], min_cv: float) -> dict | None:
    """The rule: the measured point with the fewest whole-IP LUT whose worst fold reaches ``min_cv``
    (ties: the better worst fold, then fewer datapath LUT); None when none does. The test set plays no part."""
    measured = [p for p in points if qualifies(p, min_cv) and p["estimated_by"] == "yosys"]
    if not measured:
        return None
    return min(measured, key=lambda p: (p["ip_lut"], -p["cv_min"], p["lut"], p["id"]))


def winner(point: dict, final: dict | None) -> dict:
    """The chosen point's CV figures beside its final build's (all 120 training samples, seed 0): the
    30 test samples' accuracy, scored once, and the whole IP that rebuild command makes."""
    chosen = {"id": point["id"], "args": point["args"], "command": rebuild_command(point["args"]),
              "cv_accuracy": point["cv_accuracy"], "cv_min": point["cv_min"], "cv_ip_lut": point["ip_lut"],
              "cv_lut": point["lut"]}
    if final is None or "error" in final:
        return {**chosen, "error": final["error"] if final else "the final build did not run"}
    ip, datapath = final["rtl"]["ip"], final["rtl"]["yosys"]
    return {**chosen, "test_accuracy": final["csim"], "keras_test_accuracy": final["keras"],
            "val_accuracy": final["val_accuracy"], "ip_lut": ip["LUT"], "ip_ff": ip["FF"], "ip_dsp": ip["DSP"],
            "ip_bram": ip["BRAM"], "lut": datapath["LUT"], "ff": datapath["FF"],
            "latency_cycles": datapath["latency_cycles"], "bit_exact": datapath["bit_exact"],
            "verified": final["rtl"].get("verified", True)}


def estimate_error(points: list[dict]) -> dict | None:
    """How far da4ml's LUT estimate is from yosys on every measured fold: (da4ml - yosys) / yosys in percent."""
    errors = sorted(100 * (run["da4ml"]["LUT"] - run["rtl"]["yosys"]["LUT"]) / run["rtl"]["yosys"]["LUT"]
                    for p in points for run in p["runs"].values() if "yosys" in run.get("rtl", {}))
    if not errors:
        return None
    return {"runs": len(errors), "median_percent": round(statistics.median(errors), 1),
            "min_percent": round(errors[0], 1), "max_percent": round(errors[-1], 1)}


def rebuild_command(args: list[str]) -> str:
    """What a user types to build the winner's package: the final run's settings (all 120 training
    samples, seed 0, the project's own IP), without the explorer's folders and steps."""
    final = Run("", tuple(args), None, 0, "", 0, IP)
    return shlex.join(["python", "BuildModel.py", *final.build_args()])
