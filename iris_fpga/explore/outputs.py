"""What a sweep leaves in ``--out``: results.json (after every run), the front's table, pareto.png, the winner.

results.json lists the other three with their sha256 (``outputs``): a sweep replaces them only
when they are what an earlier sweep wrote, never a user's file of the same name.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.explore.records import check_results
from iris_fpga.fileio import atomic_write_bytes, atomic_write_json, is_regular_file, load_json, sha256_file

RESULTS, TABLE, PLOT, WINNER = "results.json", "pareto.md", "pareto.png", "winner.txt"
FORMAT = "iris-fpga-explore/2"  # 2: cross-validated folds (1: seeds scored on the test set)
MAX_RESULTS_BYTES = 256 * 2**20


def load_results(out: Path) -> dict:
    """An earlier sweep's results.json in ``out``, checked field by field ({} when there is none);
    exit 2, naming the file, for anything this explorer did not write."""
    path = Path(out) / RESULTS
    if not os.path.lexists(path):
        return {}
    data = load_json(path, max_bytes=MAX_RESULTS_BYTES)
    check_results(data, str(path), FORMAT)
    return data


def points_by_id(results: dict) -> dict:
    """The points of a loaded results.json (this space's and others') by id."""
    return {p["id"]: p for p in results.get("points", []) + results.get("other_points", [])}


def check_ours(out: Path, made: dict) -> None:
    """Refuse (exit 2) a pareto.md, pareto.png or winner.txt in ``out`` that ``made`` (results.json's
    ``outputs``) does not list with its sha256: the explorer did not write it, so it stays."""
    for name in (TABLE, PLOT, WINNER):
        path = Path(out) / name
        if os.path.lexists(path) and (not is_regular_file(path) or made.get(name) != sha256_file(path)):
            raise ToolError(f"{path} is not a file this explorer wrote ({RESULTS} does not list it with its "
                            "sha256), so it is left alone: move it away or choose another --out")


def save_results(out: Path, results: dict) -> None:
    atomic_write_json(out / RESULTS, {"format": FORMAT, **results})


def front_table(front: list[dict]) -> str:
    """The Pareto front as a Markdown table, cheapest first."""
    lines = ["| settings | CV mean | CV worst fold | Keras (worst fold) | validation (worst) | sparsity | "
             "datapath LUT | whole IP LUT | FF | latency | by |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in front:
        ip_lut = f"{p['ip_lut']:,}" if p["ip_lut"] is not None else "-"
        by = p["estimated_by"] + (" (synthesized, not verified)" if p.get("ip_verified") is False else "")
        lines.append(f"| `{' '.join(p['args'])}` | {100 * p['cv_accuracy']:.2f}% | {100 * p['cv_min']:.2f}% | "
                     f"{100 * p['keras_accuracy']:.2f}% | {100 * p['val_accuracy']:.2f}% | "
                     f"{100 * p['sparsity']:.1f}% | {p['lut']:,} | {ip_lut} | {p['ff']:,} | {p['latency_cycles']} | "
                     f"{by} |")
    return "\n".join(lines) + "\n"


def winner_text(winner: dict | None, min_cv: float) -> str:
    """winner.txt: the rebuild command, or why there is none."""
    if winner is None:
        return f"no measured point reaches {100 * min_cv:.2f}% C-simulation accuracy on its worst fold\n"
    return winner["command"] + "\n"


def write_outputs(out: Path, points: list[dict], front: list[dict], winner: dict | None, folds: int,
                  min_cv: float, made: dict) -> dict:
    """The table, the plot and the winner's command, replacing only what ``made`` lists (see
    :func:`check_ours`); returns their sha256 for results.json, which the caller writes."""
    head = (f"Pareto front: C-simulation accuracy on held-out folds of the training samples ({folds}-fold "
            "cross-validation; the test set takes no part) against datapath LUT (largest of the folds)\n\n")
    files = {TABLE: (head + front_table(front)).encode(), PLOT: pareto_png(points, front, winner, folds, min_cv),
             WINNER: winner_text(winner, min_cv).encode()}
    check_ours(out, made)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def pareto_png(points: list[dict], front: list[dict], winner: dict | None, folds: int, min_cv: float) -> bytes:
    """Worst fold's accuracy against datapath LUT; colour = latency in cycles; filled = yosys, hollow =
    da4ml's estimate; the front's points labelled with their settings' values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [p for p in points if p["status"] == "done"]
    fig, ax = plt.subplots(figsize=(8, 5))
    cycles = sorted({p["latency_cycles"] for p in done}) or [0]
    bounds = [c - 0.5 for c in range(cycles[0], cycles[-1] + 2)]
    cmap = plt.get_cmap("viridis", len(bounds) - 1)
    norm = matplotlib.colors.BoundaryNorm(bounds, cmap.N)
    for by, filled in (("yosys", True), ("da4ml", False)):
        group = [p for p in done if p["estimated_by"] == by]
        if not group:
            continue
        colors = [cmap(norm(p["latency_cycles"])) for p in group]
        ax.scatter([p["lut"] for p in group], [100 * p["cv_min"] for p in group], s=60,
                   c=colors if filled else "none", edgecolors=colors, linewidths=1.5,
                   label="LUT measured by yosys" if filled else "LUT estimated by da4ml")
    for p in front:
        ax.annotate(short_label(p["args"]), (p["lut"], 100 * p["cv_min"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.step([p["lut"] for p in front], [100 * p["cv_min"] for p in front], where="post", color="grey", lw=1,
            label="Pareto front")
    ax.axhline(100 * min_cv, color="tab:red", ls="--", lw=1, label=f"--min-cv {min_cv:g}")
    if winner:
        ax.scatter([winner["cv_lut"]], [100 * winner["cv_min"]], marker="*", s=300, c="tab:red", zorder=3,
                   label=f"winner: whole IP {winner['cv_ip_lut']:,} LUT")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, ticks=cycles,
                 label="latency (clock cycles)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel(f"datapath LUT (largest of the {folds} folds)")
    ax.set_ylabel(f"C-simulation accuracy, worst of {folds} held-out folds (%)")
    ax.set_title("Iris networks: cross-validated accuracy against datapath LUT")
    ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def short_label(args: list[str]) -> str:
    """``--hidden 16,16 --weight-bits 4`` -> ``h16,16 wb4``: option initials and values."""
    return " ".join("".join(word[0] for word in key.lstrip("-").split("-")) + value
                    for key, value in zip(args[::2], args[1::2]))
