"""What a sweep leaves in ``--out``: results.json (after every run), the front's table, pareto.png, the winner."""
from __future__ import annotations

import io
from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_bytes, atomic_write_json, load_json
from iris_fpga.explore.front import MIN_ACCURACY

RESULTS, TABLE, PLOT, WINNER = "results.json", "pareto.md", "pareto.png", "winner.txt"
FORMAT = "iris-fpga-explore/1"
MAX_RESULTS_BYTES = 256 * 2**20


def load_results(out: Path) -> dict:
    """The points of an earlier sweep into ``out`` ({} when there is none); exit 2 for a stranger's file."""
    path = out / RESULTS
    if not path.exists():
        return {}
    data = load_json(path, max_bytes=MAX_RESULTS_BYTES)
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list) or data.get("format") != FORMAT or not all(
            isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("runs"), dict) for p in points):
        raise ToolError(f"{path} is not an explorer results file ({FORMAT}): choose another --out")
    return {p["id"]: p for p in points + data.get("other_points", [])}


def save_results(out: Path, results: dict) -> None:
    atomic_write_json(out / RESULTS, {"format": FORMAT, **results})


def front_table(front: list[dict]) -> str:
    """The Pareto front as a Markdown table, cheapest first."""
    lines = ["| settings | C-sim (worst seed) | Keras (worst) | validation (worst) | sparsity | LUT | FF | "
             "latency | by |", "|---|---|---|---|---|---|---|---|---|"]
    for p in front:
        lines.append(f"| `{' '.join(p['args'])}` | {100 * p['accuracy']:.2f}% | {100 * p['keras_accuracy']:.2f}% | "
                     f"{100 * p['val_accuracy']:.2f}% | {100 * p['sparsity']:.1f}% | {p['lut']:,} | {p['ff']:,} | "
                     f"{p['latency_cycles']} | {p['estimated_by']} |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, points: list[dict], front: list[dict], winner: dict | None, seeds: list[int]) -> None:
    """The table, the plot and the winner's command (results.json is written by the caller)."""
    n = len(seeds)
    head = (f"Pareto front: C-simulation accuracy on the 30 test samples (worst of {n} seed{'s' * (n > 1)}) "
            "against datapath LUT (largest of the seeds)\n\n")
    atomic_write_bytes(out / TABLE, (head + front_table(front)).encode())
    atomic_write_bytes(out / PLOT, pareto_png(points, front, winner, n))
    text = winner["command"] + "\n" if winner else f"no measured point reaches {100 * MIN_ACCURACY:.2f}% on every seed\n"
    atomic_write_bytes(out / WINNER, text.encode())


def pareto_png(points: list[dict], front: list[dict], winner: dict | None, n_seeds: int) -> bytes:
    """Accuracy against LUT; colour = latency in cycles; filled = yosys, hollow = da4ml's estimate;
    the front's points labelled with their settings' values."""
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
        ax.scatter([p["lut"] for p in group], [100 * p["accuracy"] for p in group], s=60,
                   c=colors if filled else "none", edgecolors=colors, linewidths=1.5,
                   label="LUT measured by yosys" if filled else "LUT estimated by da4ml")
    for p in front:
        ax.annotate(short_label(p["args"]), (p["lut"], 100 * p["accuracy"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.step([p["lut"] for p in front], [100 * p["accuracy"] for p in front], where="post", color="grey", lw=1,
            label="Pareto front")
    ax.axhline(100 * MIN_ACCURACY, color="tab:red", ls="--", lw=1, label="29 of 30 test samples")
    if winner:
        ax.scatter([winner["point_lut"]], [100 * winner["point_accuracy"]], marker="*", s=300, c="tab:red",
                   zorder=3, label=f"winner: {winner['point_lut']:,} LUT")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, ticks=cycles,
                 label="latency (clock cycles)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel("datapath LUT (largest of the seeds)")
    ax.set_ylabel(f"C-simulation accuracy, worst of {n_seeds} seeds (%)")
    ax.set_title("Iris networks: accuracy on the 30 test samples against datapath LUT")
    ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def short_label(args: list[str]) -> str:
    """``--hidden 16,16 --weight-bits 4`` -> ``h16,16 wb4``: option initials and values."""
    return " ".join("".join(word[0] for word in key.lstrip("-").split("-")) + value
                    for key, value in zip(args[::2], args[1::2]))
