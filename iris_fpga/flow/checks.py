"""Checks the steps make on what they produced, before anything is cached or published."""
from __future__ import annotations

import math

import numpy as np

from iris_fpga.datapath.fixedpoint import FixedType


def non_finite_layers(model) -> list[str]:
    """Names of the Keras layers holding a NaN or an infinity among their weights."""
    return [layer.name for layer in model.layers
            if any(not np.all(np.isfinite(w)) for w in layer.get_weights())]


def input_range(t: FixedType) -> tuple[float, float]:
    """[low, high): the inputs that ``t`` holds without overflow.

    ap_fixed first rounds a float to the type's step (truncation, hls4ml's default, or a rounding
    mode, which moves both edges down by half a step), then wraps or saturates what lies outside.
    For ap_fixed<16,6> with truncation this is [-32, 32).
    """
    step = 2.0 ** -t.frac
    top = t.integer - int(t.signed)  # high = 2**top
    high = math.inf if top >= 1024 else math.ldexp(1.0, top)
    low = -high if t.signed else 0.0
    if t.rounding.startswith("RND"):
        return low - step / 2, high - step / 2
    return low, high


def out_of_range(x: np.ndarray, t: FixedType) -> list[int]:
    """Indices of the rows of ``x`` with a value the input type cannot hold (NaN and infinities too)."""
    low, high = input_range(t)
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x) | (x < low) | (x >= high)
    return [int(i) for i in np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))]


def sample_list(indices: list[int], most: int = 10) -> str:
    """"2, 24" or "1, 2, ... (15 in all)": sample numbers for a message."""
    shown = ", ".join(map(str, indices[:most]))
    return shown if len(indices) <= most else f"{shown}, ... ({len(indices)} in all)"
