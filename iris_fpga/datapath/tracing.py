"""Rebuild the exported network in da4ml's tracing, so that it computes what the C-simulation computes.

What hls4ml's C++ does (``nnet::dense_latency``, ``nnet::relu``), and what is reproduced here:
- the float input is cast to the input type;
- Dense: every product ``x[i] * w[i][j]`` is cast to ``accum_t`` *on its own* (hls4ml's default
  ``accum_t`` is the model default, e.g. fixed<16,6>, coarser than the product, so with TRN each
  product is truncated before the sum), the bias is cast to ``accum_t``, the sum wraps around in
  ``accum_t``, and the result is cast to ``result_t``;
- ReLU: ``x > 0 ? x : 0`` cast to the ReLU's result type, e.g. ufixed<6,0,RND_CONV,SAT>.

Truncated products stay linear where possible, so da4ml's constant-matrix optimisation still sees
(almost) the whole layer: with X the input's integer code, c the weight's and e the excess bits,
floor(X*c / 2**e) = X*(c >> e) + floor(X*c_lo / 2**e) with c_lo = c mod 2**e; when c_lo is 0 or a
power of two 2**m, the second term is X >> (e-m), a truncated copy of the input shared by every
output. Only the remaining products are formed one by one.

da4ml 0.6.0 rounds only by truncation or half up. Half to even (ap_fixed's RND_CONV, hls4ml's
ReLU default) is built from truncation: add half an LSB of the target minus one LSB of the source,
plus the target's kept LSB moved down to the source's LSB, then truncate.

da4ml keeps each signal as an integer and its scale as a power of two (``_factor``); every layer's
weights (``c * 2**-frac``) multiply that scale again, so a deep or wide-bit network carries signals
at scales far from 1 (2**-71 for six 16-bit layers). da4ml 0.6.0 finds a constant's exponent by a
search bounded to [-32, 32] (``_const_f``) and silently gets the constants of such signals wrong
(its interpreter then fails: "Unsupported msb_mux shift configuration"). ``_exact_constants``
computes that exponent exactly while tracing; within the bounds the result is the same.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.datapath.fixedpoint import FixedType


def build_comb_logic(graph: dict):
    """The whole chain, input to compared layer, as a da4ml ``CombLogic``."""
    with _exact_constants():
        return _trace(graph)


def _trace(graph: dict):
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    in_type = FixedType.from_dict(graph["input"]["type"])
    inp = FixedVariableArrayInput((int(graph["input"]["size"]),))
    k, i, f = in_type.kif
    x = inp.quantize(k, i, f)  # the input port carries exactly the input type
    for layer in graph["layers"]:
        kind = layer.get("kind")
        if kind == "dense":
            x = dense(x, layer)
        elif kind == "relu":
            x = cast(x.relu(), FixedType.from_dict(layer["result_type"]))
        elif kind == "linear":
            x = cast(x, FixedType.from_dict(layer["result_type"]))
        else:
            raise ToolError(f"exported graph: layer {layer.get('name')} has unknown kind {kind!r}", ExitCode.USAGE)
    return comb_trace(inp, x)


@contextlib.contextmanager
def _exact_constants():
    """Replace da4ml's bounded search for a constant's fractional bits by the exact answer."""
    from da4ml.trace import fixed_variable, tracer

    bounded = fixed_variable._const_f

    def exact(const) -> int:
        numerator, denominator = float(const).as_integer_ratio()
        if numerator == 0:
            return bounded(const)  # da4ml's own convention for zero
        if denominator > 1:
            return denominator.bit_length() - 1
        return 1 - (numerator & -numerator).bit_length()  # minus the trailing zero bits

    fixed_variable._const_f = tracer._const_f = exact
    try:
        yield
    finally:
        fixed_variable._const_f = tracer._const_f = bounded


def dense(x, layer: dict):
    """``nnet::dense_latency`` bit for bit: per-product cast to accum_t, wrap-around sum, cast."""
    from da4ml.trace import FixedVariableArray

    name = layer["name"]
    w_t, b_t, acc_t, res_t = (
        FixedType.from_dict(layer[key]) for key in ("weight_type", "bias_type", "accum_type", "result_type")
    )
    codes = np.asarray(layer["weight"], dtype=np.int64)
    b_codes = np.asarray(layer["bias"], dtype=np.int64)
    n_in, n_out = int(layer["n_in"]), int(layer["n_out"])
    if codes.shape != (n_in, n_out) or b_codes.shape != (n_out,) or x.shape != (n_in,):
        raise ToolError(
            f"exported graph: layer {name} has weights {codes.shape}, biases {b_codes.shape} "
            f"and {x.shape[0]} inputs for ({n_in}, {n_out})",
            ExitCode.USAGE,
        )
    if acc_t.saturation != "WRAP":
        raise ToolError(f"rtl: layer {name} accumulator {acc_t}: only wrap-around is supported", ExitCode.USAGE)

    hw = x.hwconf
    const = acc_t.requantize(b_codes, b_t.frac).astype(np.float64) * 2.0**-acc_t.frac  # (accum_t) bias
    columns: list[tuple[object, np.ndarray]] = []  # (signal, its row of the constant matrix)
    shared: dict[tuple[int, int], int] = {}  # (input, dropped bits) -> index in columns
    single: list[list] = [[] for _ in range(n_out)]  # products that must be rounded one by one
    for i, v in enumerate(x._vars.ravel()):
        row = np.zeros(n_out)
        columns.append((v, row))
        x_frac = _var_frac(v)
        for j in np.nonzero(codes[i])[0]:
            c = int(codes[i, j])
            excess = x_frac + w_t.frac - acc_t.frac
            if v.low == v.high:  # constant input (a pruned unit): fold the product into the bias
                const[j] += _cast_value(float(v.low) * c * 2.0**-w_t.frac, acc_t, wrap=False)
            elif excess <= 0:
                row[j] += c * 2.0**-w_t.frac
            elif acc_t.rounding == "TRN" and _is_zero_or_pow2(c % (1 << excess)):
                c_lo = c % (1 << excess)
                row[j] += (c - c_lo) * 2.0**-w_t.frac  # exact: c - c_lo is a multiple of 2**excess
                if c_lo:
                    drop = excess - (c_lo.bit_length() - 1)  # floor(X * 2**m / 2**e) = X >> (e - m)
                    if (i, drop) not in shared:
                        vk, vi, _ = v.kif
                        shared[(i, drop)] = len(columns)
                        columns.append((v.quantize(vk, vi, x_frac - drop, "WRAP", "TRN"), np.zeros(n_out)))
                    columns[shared[(i, drop)]][1][j] += 2.0 ** (x_frac - drop - acc_t.frac)
            else:
                product = FixedVariableArray(np.array([v * (c * 2.0**-w_t.frac)]), hwconf=hw)
                single[j].append(cast(product, acc_t, wrap=False)._vars[0])
    signals = FixedVariableArray(np.array([s for s, _ in columns], dtype=object), hwconf=hw)
    matrix = np.array([row for _, row in columns])
    linear = signals @ matrix  # da4ml's distributed-arithmetic constant-matrix product
    out = [_tree_sum([linear._vars[j], *single[j]]) + float(const[j]) for j in range(n_out)]
    acc = FixedVariableArray(np.array(out, dtype=object), hwconf=hw)
    return cast(cast(acc, acc_t), res_t)


def cast(x, t: FixedType, wrap: bool = True):
    """ap_fixed assignment ``(t) x`` for every element: rounding, then overflow (skipped if not ``wrap``).

    ``wrap=False`` only rounds; the caller wraps later (exact for a wrap-around type, since
    wrapping commutes with addition).
    """
    from da4ml.trace import FixedVariableArray
    from da4ml.trace.fixed_variable import FixedVariable

    k, i, f = t.kif
    out = []
    for v in x._vars.ravel():
        if v.low == v.high:  # a constant (e.g. a pruned unit's bias): computed exactly here
            out.append(FixedVariable.from_const(_cast_value(float(v.low), t, wrap), hwconf=x.hwconf))
            continue
        v_frac = _var_frac(v)
        if v_frac > f and t.rounding != "TRN":
            v = _add_rounding_offset(v, t.rounding, f, v_frac)
        if wrap:
            v = v.quantize(k, i, f, t.saturation, "TRN")
        elif v_frac > f:
            vk, vi, _ = v.kif
            v = v.quantize(vk, vi, f, "WRAP", "TRN")  # drop low bits only
        out.append(v)
    return FixedVariableArray(np.array(out, dtype=object).reshape(x.shape), hwconf=x.hwconf)


def _add_rounding_offset(v, mode: str, f: int, v_frac: int):
    """Add what makes a later truncation to ``f`` fractional bits round as ``mode``."""
    half = 2.0 ** -(f + 1)
    lsb = 2.0**-v_frac
    if mode == "RND":  # half up
        return v + half
    if mode == "RND_MIN_INF":  # half down
        return v + (half - lsb)
    if mode == "RND_CONV":  # half to even: a tie goes up only when the kept LSB is 1
        kept_lsb = v.quantize(0, 1 - f, f, "WRAP", "TRN")  # 0 or 2**-f: bit f of v
        return v + (half - lsb) + kept_lsb * 2.0 ** (f - v_frac)
    raise ToolError(f"rtl: rounding mode {mode} not supported", ExitCode.USAGE)


def _cast_value(value: float, t: FixedType, wrap: bool = True) -> float:
    if not wrap:
        t = FixedType(signed=True, width=62, integer=62 - t.frac, rounding=t.rounding)
    return float(t.quantize_float(value)) * 2.0**-t.frac


def _tree_sum(terms: list):
    """Add terms pairwise, earliest-ready first, so the adder depth stays logarithmic."""
    if len(terms) == 1:
        return terms[0]
    counter = itertools.count()
    heap = [(float(getattr(t, "latency", 0.0)), next(counter), t) for t in terms]
    heapq.heapify(heap)
    while len(heap) > 1:
        _, _, a = heapq.heappop(heap)
        _, _, b = heapq.heappop(heap)
        s = a + b
        heapq.heappush(heap, (float(getattr(s, "latency", 0.0)), next(counter), s))
    return heap[0][2]


def _var_frac(v) -> int:
    """Fractional bits of a traced variable (of its value, for a constant)."""
    if v.low == v.high:
        denominator = float(v.low).as_integer_ratio()[1]
        return denominator.bit_length() - 1
    return int(v.kif[2])


def _is_zero_or_pow2(n: int) -> bool:
    return n & (n - 1) == 0
