"""Checks the steps make on what they produced, before anything is cached or published."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from iris_fpga.datapath.fixedpoint import FixedType


def non_finite_layers(model) -> list[str]:
    """Names of the Keras layers holding a NaN or an infinity among their weights."""
    return [layer.name for layer in model.layers
            if any(not np.all(np.isfinite(w)) for w in layer.get_weights())]


#: Per rounding mode: how many steps below the lowest held value and below 2**top each edge lies, and
#: whether a float exactly on it is held. Truncation keeps [low, high); truncation toward zero also
#: keeps the step below ``low``; the rounding modes move both edges down by half a step, and a float
#: exactly half a step beyond an edge (a tie) rounds inward (held) or outward by the mode. RND_CONV
#: rounds a tie to the even code: ``input_range`` settles its edges by the codes' parity.
EDGES = {"TRN": (0.0, 0.0, True, False), "TRN_ZERO": (1.0, 0.0, False, False),
         "RND": (0.5, 0.5, True, False), "RND_CONV": (0.5, 0.5, True, False),
         "RND_ZERO": (0.5, 0.5, True, True), "RND_INF": (0.5, 0.5, False, False),
         "RND_MIN_INF": (0.5, 0.5, False, True)}


class InputRange(NamedTuple):
    """The floats an ap_fixed type holds without overflow, from ``low`` to ``high`` (each edge in or out)."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    def outside(self, x: np.ndarray) -> np.ndarray:
        """True where a value of ``x`` is not held (NaN and infinities too)."""
        x = np.asarray(x, dtype=np.float64)  # float32 against the edges would round them (NEP 50)
        below = (x < self.low) if self.low_closed else (x <= self.low)
        above = (x > self.high) if self.high_closed else (x >= self.high)
        return ~np.isfinite(x) | below | above

    def __str__(self) -> str:
        return f"{'[' if self.low_closed else '('}{self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"


def input_range(t: FixedType) -> InputRange:
    """The floats ``t`` holds: those ap_fixed's cast keeps without overflow (it first rounds a float to
    the type's step by its mode, then wraps or saturates what lies outside). ap_fixed<16,6>
    (truncation, hls4ml's default): [-32, 32). Symmetric saturation (signed) also changes the lowest
    code (from 2 bits on), so the lowest value it holds is one step higher.

    Exact for every float64: an edge a fraction of a step off -2**top, 0 or 2**top that float64
    cannot hold rounds onto it (the step is below float64's resolution there), and no float lies
    between the two, so the edge is then closed if the exact one lies below, open if above.
    """
    step = 2.0 ** -t.frac  # 0.0 below float64's range: the edges are then absorbed, as above
    top = t.integer - int(t.signed)  # high = 2**top
    high = math.inf if top >= 1024 else math.ldexp(1.0, top)
    nominal_low = -high if t.signed else 0.0
    symmetric = int(t.signed and t.width > 1 and t.saturation == "SAT_SYM")  # 1 bit: ap_fixed keeps code -1
    low_steps, high_steps, low_closed, high_closed = EDGES[t.rounding]
    if t.rounding == "RND_CONV":  # a tie goes to the even code
        low_closed, high_closed = (t.code_min + symmetric) % 2 == 0, (t.code_max + 1) % 2 == 1
    edge_low, edge_high = nominal_low + (symmetric - low_steps) * step, high - high_steps * step
    if edge_low == nominal_low and low_steps != symmetric:
        low_closed = low_steps > symmetric
    if edge_high == high and high_steps:
        high_closed = False
    return InputRange(edge_low, edge_high, low_closed, high_closed)


def out_of_range(x: np.ndarray, t: FixedType) -> list[int]:
    """Indices of the rows of ``x`` with a value the input type cannot hold (NaN and infinities too)."""
    bad = input_range(t).outside(x)
    return [int(i) for i in np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))]


def sample_list(indices: list[int], most: int = 10) -> str:
    """"2, 24" or "1, 2, ... (15 in all)": sample numbers for a message."""
    shown = ", ".join(map(str, indices[:most]))
    return shown if len(indices) <= most else f"{shown}, ... ({len(indices)} in all)"
