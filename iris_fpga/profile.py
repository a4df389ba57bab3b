"""The numerical profile: do the fixed-point types hls4ml chose hold the model's values?

Per layer, the weights and the float activations of the Keras model on the training and the test
data (in a ``--cv-fold`` build its held-out fold, named so), against the range (largest magnitude)
and precision (smallest step) of the layer's type in the hls4ml model; values outside the range
are counted as they would end in hardware: wrapped (``AP_WRAP``, hls4ml's default) or saturated
(``AP_SAT``). The counts come from Keras' float
activations: the C-simulation's trace holds values that have already wrapped.

A Dense layer must fit two types: hls4ml 1.3 truncates each product to the accumulator type (the
model's default precision) and the sum wraps there (README, "Facts this path rests on"), so its
values count against the narrower of ``accum_t`` and ``result_t``.

hls4ml draws such a figure (``hls4ml.model.profiling.numerical``), but not on this stack: the module
imports pandas and seaborn at import time (hls4ml's ``profiling`` extra, not in requirements.txt);
it binds ``keras`` when first imported, to Keras 3 here, so a tf_keras model fails its
``isinstance(model, keras.Model)`` test and its activations are silently never profiled; its
activations of the hls4ml model are the C-simulation trace (already wrapped); and it converts a
second, unoptimized model into a folder it creates in the current directory. So the figure is drawn
here with matplotlib, in hls4ml's convention: |x| of the non-zero values on a log2 axis, with a
grey band from the type's step to its largest magnitude.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iris_fpga.fileio import atomic_write_bytes


@dataclass(frozen=True)
class FixedRange:
    """The values a fixed-point type holds: [low, high] in steps of ``step``; beyond, ``mode``."""

    type: str
    low: float
    high: float
    step: float
    mode: str  # "wrap" or "saturate"

    @classmethod
    def of(cls, precision) -> FixedRange | None:
        """The range of an hls4ml precision type; None for a type that is not fixed point."""
        width = getattr(precision, "width", None)
        if width is None:
            return None
        integer = getattr(precision, "integer", width)
        signed = bool(getattr(precision, "signed", True))
        step = 2.0 ** (integer - width)
        top = 2.0 ** (integer - 1 if signed else integer)
        saturation = getattr(getattr(precision, "saturation_mode", None), "name", "WRAP")
        return cls(str(precision), -top if signed else 0.0, top - step, step,
                   "wrap" if saturation == "WRAP" else "saturate")

    def count(self, values: np.ndarray) -> dict:
        """How many values the type holds, and how many wrap or saturate or fall below its step."""
        v = np.asarray(values, dtype=np.float64).ravel()
        outside = int(np.sum((v < self.low) | (v > self.high)))
        nonzero = v[v != 0]
        return {
            "values": int(v.size),
            "wrap": outside if self.mode == "wrap" else 0,
            "saturate": outside if self.mode == "saturate" else 0,
            "below_step": int(np.sum(np.abs(nonzero) < self.step)),
            "max_abs": float(np.max(np.abs(v))) if v.size else 0.0,
        }

    def to_dict(self) -> dict:
        return {"type": self.type, "low": self.low, "high": self.high, "step": self.step, "mode": self.mode}


@dataclass
class Row:
    """One line of the profile: a weight array or a layer's activations, and its type's range."""

    name: str
    range: FixedRange
    values: dict[str, np.ndarray]  # "weights", or "train" and the held-out set ("test" or the fold)


def _layer_range(layer) -> FixedRange | None:
    """The layer's result type; for a Dense layer, what both its accumulator and result hold."""
    result = FixedRange.of(layer.get_output_variable().type.precision)
    accum_t = layer.get_attr("accum_t") if type(layer).__name__.endswith("Dense") else None
    accum = FixedRange.of(accum_t.precision) if accum_t is not None else None
    if result is None or accum is None:
        return result
    narrow = min(accum, result, key=lambda r: r.high - r.low)
    return FixedRange(f"{accum.type} accumulator, {result.type} result", max(accum.low, result.low),
                      min(accum.high, result.high), max(accum.step, result.step), narrow.mode)


def weight_rows(hls_model) -> list[Row]:
    """The weights and biases of every layer, as hls4ml holds them, against their types."""
    rows = []
    for layer in hls_model.get_layers():
        for suffix, weight in zip(("w", "b"), layer.get_weights()):
            rng = FixedRange.of(weight.type.precision)
            if rng is not None:
                rows.append(Row(f"{layer.name}/{suffix}", rng, {"weights": np.asarray(weight.data)}))
    return rows


def keras_activations(keras_model, X: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's float output for ``X``, the layers applied one after another.

    (A second Keras model with every layer as an output would not do: the model the train step
    holds is the pruning wrapper's stripped copy, whose layers' symbolic outputs belong to another
    graph.)
    """
    out, activations = np.asarray(X, dtype=np.float32), {}
    for layer in keras_model.layers:
        out = np.asarray(layer(out))
        activations[layer.name] = out
    return activations


def activation_rows(hls_model, activations: dict[str, dict[str, np.ndarray]]) -> list[Row]:
    """hls4ml's layers that have a Keras counterpart (the input layer gets the input data itself).

    ``activations`` maps a data set's name ("train", "test" or the fold) to :func:`keras_activations`
    of it plus the key ``"input"`` holding the data.
    """
    rows = []
    for layer in hls_model.get_layers():
        key = "input" if type(layer).__name__.endswith("Input") else layer.name
        rng = _layer_range(layer)
        if rng is not None and all(key in acts for acts in activations.values()):
            rows.append(Row(layer.name, rng, {name: acts[key] for name, acts in activations.items()}))
    return rows


def counts(weights: list[Row], activations: list[Row]) -> dict:
    """The manifest's record: per row its range and counts, and totals per data set."""
    doc = {"weights": {}, "activations": {}, "totals": {}}
    for group, rows in (("weights", weights), ("activations", activations)):
        for row in rows:
            doc[group][row.name] = {**row.range.to_dict(), **{k: row.range.count(v) for k, v in row.values.items()}}
            for k in row.values:
                total = doc["totals"].setdefault(k, {"wrap": 0, "saturate": 0})
                for mode in total:
                    total[mode] += doc[group][row.name][k][mode]
    return doc


def profile_model(keras_model, hls_model, X_train: np.ndarray, X_test: np.ndarray, out_png: Path,
                  held_out: str = "test") -> dict:
    """Draw the numerical profile into ``out_png`` (atomically) and return its counts.

    ``hls_model`` is the converted hls4ml ModelGraph (its types are read; it need not be compiled).
    ``X_test`` is the build's held-out set, called ``held_out`` in the counts and the figure (a
    ``--cv-fold`` build holds out a fold, not the test set). The counts (see :func:`counts`) are
    JSON-ready, for the manifest.
    """
    activations = {}
    for name, X in (("train", X_train), (held_out, X_test)):
        activations[name] = {"input": np.asarray(X, dtype=np.float32), **keras_activations(keras_model, X)}
    weights, acts = weight_rows(hls_model), activation_rows(hls_model, activations)
    doc = counts(weights, acts)
    atomic_write_bytes(Path(out_png), draw(weights, acts, doc))
    return doc


# ------------------------------------------------------------------------------------ the figure
SET_COLOURS = {"weights": "#4c72b0", "train": "#4c72b0"}
HELD_OUT_COLOUR = "#dd8452"  # the test set's, or the held-out fold's


def _colour(name: str) -> str:
    return SET_COLOURS.get(name, HELD_OUT_COLOUR)


def draw(weights: list[Row], activations: list[Row], doc: dict) -> bytes:
    """The figure as PNG bytes: weights above, activations below, one band per type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 0.42 * (len(weights) + 2 * len(activations)) + 2.2),
                             height_ratios=[len(weights) + 1, 2 * len(activations) + 1])
    _panel(axes[0], weights, doc["weights"], "Weights (non-zero |w|) against their types")
    _panel(axes[1], activations, doc["activations"],
           "Float activations of the Keras model (non-zero |x|) against hls4ml's layer types")
    names = next((list(row.values) for row in activations), ["train", "test"])
    handles = [matplotlib.patches.Patch(color=_colour(k), label=k) for k in names]
    handles.append(matplotlib.patches.Patch(color="grey", alpha=0.25, label="type: step to largest magnitude"))
    fig.legend(handles=handles, loc="lower center", fontsize=8, frameon=False, ncol=3)
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _panel(ax, rows: list[Row], counted: dict, title: str) -> None:
    labels = []
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        rng = row.range
        ax.add_patch(_band(rng.step, max(-rng.low, rng.high), y))
        sets = list(row.values)
        for j, name in enumerate(sets):
            v = np.abs(np.asarray(row.values[name], dtype=np.float64).ravel())
            v = v[v != 0]
            if v.size:
                offset = (j - (len(sets) - 1) / 2) * 0.35
                ax.boxplot(v, positions=[y + offset], widths=0.3, orientation="horizontal", whis=(0, 100),
                           patch_artist=True, boxprops={"facecolor": _colour(name), "alpha": 0.8},
                           medianprops={"color": "black"}, manage_ticks=False)
        overflow = [f"{c[m]} {'wrap' if m == 'wrap' else 'saturate'} ({k})" for k, c in counted[row.name].items()
                    if isinstance(c, dict) for m in ("wrap", "saturate") if c[m]]
        ax.text(1.01, y, ", ".join(overflow) or "fits", transform=ax.get_yaxis_transform(), va="center",
                fontsize=8, color="#c0392b" if overflow else "#2e7d32")
        labels.append(f"{row.name}  {_short(rng.type)}")
    ax.set_yticks(range(len(rows)), labels[::-1], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xscale("log", base=2)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _band(step: float, top: float, y: float):
    """The grey band of a type: from its step to its largest magnitude."""
    from matplotlib.patches import Rectangle

    return Rectangle((step, y - 0.4), top - step, 0.8, color="grey", alpha=0.25, zorder=0)


def _short(type_name: str) -> str:
    """``fixed<16,6,TRN,WRAP,0>`` as ``fixed<16,6>``: the overflow mode is in the counts."""
    return re.sub(r"<(\d+),(\d+),[^>]*>", r"<\1,\2>", type_name)
