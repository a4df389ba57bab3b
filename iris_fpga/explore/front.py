"""Scores of a point over its seeds, the accuracy/LUT Pareto front, and the winner.

A point's accuracy is its worst seed's C-simulation accuracy on the 30 test samples, and its
cost the largest LUT count of its seeds (whatever seed you build, it costs at most that), from
yosys when every seed was measured, else from da4ml's estimate, and ``estimated_by`` says which.
"""
from __future__ import annotations

import statistics

#: The winner's every seed must reach this C-simulation accuracy: 29 of the 30 test samples.
MIN_ACCURACY = 29 / 30
DONE, FAILED, PENDING = "done", "failed", "pending"


def summarize(point: dict, seeds: list[int]) -> dict:
    """The point with its summary fields (status, accuracies, lut, ff, latency_cycles, estimated_by, workers)."""
    runs = {seed: point["runs"].get(str(seed)) for seed in seeds}
    errors = [f"seed {seed}: {err}" for seed, run in runs.items() if run
              for err in (run.get("error"), run.get("rtl", {}).get("error")) if err]
    summary = {"status": FAILED if errors else PENDING if None in runs.values() else DONE,
               "errors": errors, "workers": sorted({run["worker"] for run in runs.values() if run})}
    if summary["status"] != DONE:
        return {**point, **summary, "accuracy": None, "lut": None, "ff": None, "latency_cycles": None,
                "estimated_by": None}
    measured = all("yosys" in run.get("rtl", {}) for run in runs.values())
    figures = [run["rtl"]["yosys"] if measured else run["da4ml"] for run in runs.values()]
    return {
        **point, **summary,
        "accuracy": min(run["csim"] for run in runs.values()),
        "keras_accuracy": min(run["keras"] for run in runs.values()),
        "val_accuracy": min(run["val_accuracy"] for run in runs.values()),
        "sparsity": min(run["sparsity"] for run in runs.values()),
        "lut": max(f["LUT"] for f in figures),
        "ff": max(f["FF"] for f in figures),
        "latency_cycles": max(f["latency_cycles"] for f in figures),
        "estimated_by": "yosys" if measured else "da4ml",
    }


def pareto(points: list[dict]) -> list[dict]:
    """The finished points no other finished point beats (at least as accurate and at most as many
    LUT, better in one), cheapest first."""
    done = [p for p in points if p["status"] == DONE]
    front = [p for p in done if not any(_dominates(q, p) for q in done)]
    return sorted(front, key=lambda p: (p["lut"], -p["accuracy"], p["id"]))


def _dominates(q: dict, p: dict) -> bool:
    return (q["accuracy"] >= p["accuracy"] and q["lut"] <= p["lut"]
            and (q["accuracy"] > p["accuracy"] or q["lut"] < p["lut"]))


def qualifies(point: dict) -> bool:
    return point["status"] == DONE and point["accuracy"] >= MIN_ACCURACY - 1e-9


def winner(points: list[dict], seeds: list[int]) -> dict | None:
    """The measured point with the fewest LUT whose every seed reaches MIN_ACCURACY, and the seed to
    rebuild (its cheapest); None when no measured point qualifies."""
    measured = [p for p in points if qualifies(p) and p["estimated_by"] == "yosys"]
    if not measured:
        return None
    best = min(measured, key=lambda p: (p["lut"], -p["accuracy"], p["latency_cycles"], p["id"]))
    seed = min(seeds, key=lambda s: (best["runs"][str(s)]["rtl"]["yosys"]["LUT"], s))
    run = best["runs"][str(seed)]
    return {"id": best["id"], "seed": seed, "command": rebuild_command(best["args"], seed),
            "lut": run["rtl"]["yosys"]["LUT"], "ff": run["rtl"]["yosys"]["FF"],
            "latency_cycles": run["rtl"]["yosys"]["latency_cycles"], "keras": run["keras"], "csim": run["csim"],
            "val_accuracy": run["val_accuracy"], "point_lut": best["lut"], "point_accuracy": best["accuracy"]}


def estimate_error(points: list[dict]) -> dict | None:
    """How far da4ml's LUT estimate is from yosys on every measured run: (da4ml - yosys) / yosys in percent."""
    errors = sorted(100 * (run["da4ml"]["LUT"] - run["rtl"]["yosys"]["LUT"]) / run["rtl"]["yosys"]["LUT"]
                    for p in points for run in p["runs"].values() if "yosys" in run.get("rtl", {}))
    if not errors:
        return None
    return {"runs": len(errors), "median_percent": round(statistics.median(errors), 1),
            "min_percent": round(errors[0], 1), "max_percent": round(errors[-1], 1)}


def rebuild_command(args: list[str], seed: int) -> str:
    """What a user types to rebuild a point at a seed, package and rtl figures included."""
    import shlex

    return shlex.join(["python", "BuildModel.py", *args, "--seed", str(seed), "--rtl"])
