"""The ``--plot`` figures (matplotlib, imported only when they are asked for)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_bytes, printable
from iris_fpga.validation.checks import Report
from iris_fpga.validation.load import PackageData

#: The ``--plot`` files, in the order :func:`render_figures` makes them.
FIGURES = ("confusion.png", "probabilities.png")


def render_figures(report: Report, data: PackageData) -> dict[str, bytes]:
    """The figures as PNG bytes by file name: confusion.png and probabilities.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ToolError("figures need matplotlib: pip install matplotlib") from None
    figures = dict(zip(FIGURES, (_confusion_figure(plt, report.data), _probabilities_figure(plt, report.data, data))))
    pngs = {}
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        pngs[name] = buf.getvalue()
    return pngs


def write_plots(report: Report, data: PackageData, out_dir: Path | str,
                pngs: dict[str, bytes] | None = None) -> list[Path]:
    """Write confusion.png and probabilities.png into ``out_dir``; return their paths.

    Both figures are rendered (or given, from :func:`render_figures`) before either is written,
    and each is written atomically.
    """
    pngs = render_figures(report, data) if pngs is None else pngs
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"cannot create plot folder {out}: {printable(exc)}") from None
    for name, png in pngs.items():
        try:
            atomic_write_bytes(out / name, png)
        except OSError as exc:
            raise ToolError(f"cannot write {out / name}: {printable(exc)}") from None
    return [out / name for name in pngs]


def _labels(classes: list[str]) -> list[str]:
    """Class names as figure text: escaped, and a ``$`` never starts matplotlib's math mode."""
    return [printable(c).replace("$", r"\$") for c in classes]


def _confusion_figure(plt, d: dict):
    """One confusion matrix per source, side by side."""
    classes, sources = _labels(d["classes"]), d["sources"]
    fig, axes = plt.subplots(1, len(sources), figsize=(3.8 * len(sources), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sources.values()):
        cm = np.asarray(s["confusion"])
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, cm.max()))
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{s['label']}: {s['correct']}/{s['total']}")
    fig.tight_layout()
    return fig


def _probabilities_figure(plt, d: dict, data: PackageData):
    """Per class, every sample's probability from each source, with the true classes marked."""
    classes, sources = _labels(d["classes"]), d["sources"]
    idx = np.arange(len(data.y_true))
    preds = {k: v for k, v in data.predictions.items() if k in sources}
    has_hw = "hardware" in preds
    fig, axes = plt.subplots(len(classes), 1, figsize=(9, 2.2 * len(classes)), sharex=True,
                             squeeze=False)
    for c, ax in enumerate(axes[:, 0]):
        ax.bar(idx, preds["csim"][:, c], color="#9ecae1", label="HLS C-sim")
        if has_hw:
            ax.plot(idx, preds["hardware"][:, c], "kx", label="hardware")
        ax.plot(idx, preds["keras"][:, c], "o", mfc="none", color="#e6550d", ms=4, label="Keras")
        truth = idx[data.y_true == c]
        ax.plot(truth, np.full(truth.shape, -0.08), "|", color="green", label="true class")
        ax.set_ylabel(classes[c])
        ax.set_ylim(-0.15, max(1.05, float(preds["csim"][:, c].max()) + 0.05))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("test sample")
    if has_hw:
        hw = next(a for a in d["agreement"] if a["a"] == "hardware")
        title = f"Per-sample probabilities, hardware vs C-sim (max |diff| {hw['max_abs_diff']:.3g})"
    else:
        title = "Per-sample probabilities, Keras vs C-sim (no y_hw.npy)"
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
