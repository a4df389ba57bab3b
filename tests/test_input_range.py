"""The out-of-range rule (flow/checks.py, and on_target.py by test_on_target_drift.py) against hls4ml's own
ap_fixed C++: for every rounding mode, a float is counted as outside the input type exactly when the cast
changes its value by overflow, i.e. when it differs from the same cast into a type of the same step
and rounding with more range (20 bits more, up to 64 in all)."""
from __future__ import annotations

import numpy as np
import pytest

from iris_fpga.datapath.fixedpoint import FixedType
from iris_fpga.flow import checks
from iris_fpga.ip import cast_check

pytestmark = pytest.mark.slow  # one g++ build of the ap_fixed reference

ROUNDING = sorted(checks.EDGES)
SHAPES = [(True, 8, 3), (False, 6, 2), (True, 16, 6), (True, 1, 1), (False, 1, 0), (True, 4, -2), (True, 5, 9),
          (True, 40, 20), (True, 60, 30)]  # 60 bits: edges half a step off 2**29 that float64 cannot hold
SATURATION = ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]


def _wider(t: FixedType) -> int:
    """Bits of range the wide type adds: 20, as far as the reference's 64-bit codes allow."""
    return min(20, 64 - t.width)


def _cases() -> list[FixedType]:
    return [FixedType(signed=s, width=w, integer=i, rounding=r, saturation=o)
            for s, w, i in SHAPES for r in ROUNDING for o in SATURATION]


def _wide(t: FixedType) -> FixedType:
    """The same step and rounding, more range: it holds the words each test keeps without overflow."""
    return FixedType(signed=True, width=t.width + _wider(t), integer=t.integer + _wider(t), rounding=t.rounding)


def _words(rng: np.random.Generator) -> np.ndarray:
    """float32 values on, just inside and just outside each possible edge of every shape, on ties of its
    grid and anywhere near its range: one list for every type (the reference casts each word to each)."""
    words = []
    for signed, width, integer in SHAPES:
        step, top = 2.0 ** -(width - integer), integer - int(signed)
        low, high = (-(2.0 ** top) if signed else 0.0), 2.0 ** top
        edges = np.array([e for base in (low, high) for e in (base, base - step, base - step / 2, base + step / 2)]
                         + [0.0], dtype=np.float32)
        near = np.concatenate([edges, np.nextafter(edges, np.float32(-np.inf)),
                               np.nextafter(edges, np.float32(np.inf))])
        anywhere = rng.uniform(-4 * high, 4 * high, 400).astype(np.float32)
        ties = ((rng.integers(-4 << width, 4 << width, 300) + 0.5) * step).astype(np.float32)
        words += [near, -near, anywhere, ties]
    return np.concatenate(words)


def _signed(bits: np.ndarray, width: int) -> np.ndarray:
    """Two's complement codes of ``width`` bits as Python integers (up to 64 bits: no numpy overflow)."""
    return np.array([int(v) - (1 << width) if int(v) >> (width - 1) else int(v) for v in bits], dtype=object)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """The words, and for each case and its wide type the codes ap_fixed's cast gives them (one g++ build)."""
    x = _words(np.random.default_rng(0))
    types = [u for t in _cases() for u in (t, _wide(t))]
    return x, cast_check.ap_fixed_codes(types, x.view(np.uint32), tmp_path_factory.mktemp("range"))


@pytest.mark.parametrize("k", range(len(_cases())), ids=[str(t) for t in _cases()])
def test_counted_outside_exactly_when_the_cast_overflows(reference, k):
    x, codes = reference
    t = _cases()[k]
    held_by_wide = np.abs(x.astype(np.float64)) < 2.0 ** (t.integer + _wider(t) - 2)
    x = x[held_by_wide]
    narrow = codes[2 * k][held_by_wide]
    narrow = _signed(narrow, t.width) if t.signed else narrow.astype(object)
    wide = _signed(codes[2 * k + 1][held_by_wide], t.width + _wider(t))
    overflowed = narrow != wide
    outside = checks.input_range(t).outside(x)
    wrong = np.flatnonzero(outside != overflowed)
    assert wrong.size == 0, (f"{t} {checks.input_range(t)}: x={float(x[wrong[0]])!r} counted "
                             f"{'outside' if outside[wrong[0]] else 'inside'}, ap_fixed code {narrow[wrong[0]]}, "
                             f"wide {wide[wrong[0]]}; {wrong.size} of {x.size} wrong")


def test_the_edges_of_each_mode_as_the_message_shows_them():
    shown = {mode: str(checks.input_range(FixedType(signed=True, width=16, integer=6, rounding=mode)))
             for mode in ROUNDING}
    assert shown == {"TRN": "[-32, 32)", "TRN_ZERO": "(-32.001, 32)", "RND": "[-32.0005, 31.9995)",
                     "RND_CONV": "[-32.0005, 31.9995)", "RND_ZERO": "[-32.0005, 31.9995]",
                     "RND_INF": "(-32.0005, 31.9995)", "RND_MIN_INF": "(-32.0005, 31.9995]"}
