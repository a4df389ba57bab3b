"""Verilog-2005 for ap_fixed assignments between fixed-point types, and for the float32 <-> fixed
conversions of hls4ml's AXI wrapper. Everything is generated from the types, so any network's own
widths come out right; a mode this cannot reproduce bit for bit is refused, never approximated.
"""
from __future__ import annotations

from dataclasses import dataclass

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.datapath.fixedpoint import OVERFLOW_MODES as OVERFLOW
from iris_fpga.datapath.fixedpoint import ROUNDING_MODES as ROUNDING
from iris_fpga.datapath.fixedpoint import FixedType


@dataclass(frozen=True)
class Code:
    """A Verilog signal holding a fixed-point code: ``width`` bits, ``frac`` fraction bits."""

    name: str
    signed: bool
    width: int
    frac: int

    @classmethod
    def of(cls, name: str, t: FixedType) -> "Code":
        return cls(name, t.signed, t.width, t.frac)


def check_type(t: FixedType, what: str) -> None:
    problems = [p for p, bad in ((f"rounding {t.rounding}", t.rounding not in ROUNDING),
                                 (f"overflow {t.saturation}", t.saturation not in OVERFLOW),
                                 (f"{t.saturation_bits} saturation bits", bool(t.saturation_bits))) if bad]
    if problems:
        raise ToolError(f"ip: {what} has type {t}: {', '.join(problems)} not generated "
                        f"(rounding {'/'.join(ROUNDING)}, overflow {'/'.join(OVERFLOW)})", ExitCode.USAGE)


def cast(dst: str, src: Code, t: FixedType, what: str) -> list[str]:
    """Lines declaring ``wire [W-1:0] dst`` = ``(t) src`` as ap_fixed's assignment computes it."""
    check_type(t, what)
    ext = src.width + 2  # sign-extended source, room for the rounding carry
    lines = [f"wire signed [{ext - 1}:0] {dst}_s = {_signed(src, ext)};"]
    shift = src.frac - t.frac
    if shift >= ext:
        raise ToolError(f"ip: {what}: casting {src.frac} to {t.frac} fraction bits drops the whole value",
                        ExitCode.USAGE)
    if shift > 0:
        width = ext
        lines.append(f"wire signed [{width - 1}:0] {dst}_f = {dst}_s >>> {shift};")
        lines.append(f"wire {dst}_inc = {_round_increment(dst, shift, t.rounding)};")
        lines.append(f"wire signed [{width - 1}:0] {dst}_r = {dst}_f + {{{{{width - 1}{{1'b0}}}}, {dst}_inc}};")
    else:
        width = ext - shift
        lines.append(f"wire signed [{width - 1}:0] {dst}_r = {_signed_wide(dst + '_s', ext, width)} <<< {-shift};")
    if t.saturation == "SAT" and not _always_in_range(src, t):
        lines.append(f"wire signed [{width - 1}:0] {dst}_hi = {_literal(t.code_max, width)};")
        lines.append(f"wire signed [{width - 1}:0] {dst}_lo = {_literal(t.code_min, width)};")
        lines.append(f"wire [{t.width - 1}:0] {dst} = ({dst}_r > {dst}_hi) ? {dst}_hi[{t.width - 1}:0] : "
                     f"({dst}_r < {dst}_lo) ? {dst}_lo[{t.width - 1}:0] : {dst}_r[{t.width - 1}:0];")
    elif t.width <= width:
        lines.append(f"wire [{t.width - 1}:0] {dst} = {dst}_r[{t.width - 1}:0];")
    else:
        lines.append(f"wire [{t.width - 1}:0] {dst} = {_signed_wide(dst + '_r', width, t.width)};")
    return lines


def _always_in_range(src: Code, t: FixedType) -> bool:
    """Whether every code ``src`` can hold, rounded to ``t``'s fraction bits, lies in ``t``'s range:
    saturation then never acts, and its comparisons (a carry chain each) are left out."""
    lo = -(1 << (src.width - 1)) if src.signed else 0
    hi = (1 << (src.width - src.signed)) - 1
    shift = src.frac - t.frac
    if shift <= 0:
        lo, hi = lo << -shift, hi << -shift
    else:  # every rounding mode gives the floor or one LSB above it
        lo, hi = lo >> shift, (hi >> shift) + 1
    return t.code_min <= lo and hi <= t.code_max


def _round_increment(dst: str, shift: int, mode: str) -> str:
    half = f"{dst}_s[{shift - 1}]"
    below = f"(|{dst}_s[{shift - 2}:0])" if shift > 1 else "1'b0"
    return {
        "TRN": "1'b0",
        "RND": half,
        "RND_MIN_INF": f"{half} & {below}",
        "RND_CONV": f"{half} & ({below} | {dst}_f[0])",
    }[mode]


def _signed(src: Code, width: int) -> str:
    """``src`` as a signed value of ``width`` bits (sign- or zero-extended)."""
    top = f"{src.name}[{src.width - 1}]" if src.signed else "1'b0"
    return f"{{{{{width - src.width}{{{top}}}}}, {src.name}}}"


def _signed_wide(name: str, width: int, new_width: int) -> str:
    if new_width == width:
        return name
    return f"{{{{{new_width - width}{{{name}[{width - 1}]}}}}, {name}}}"


def _literal(value: int, width: int) -> str:
    return f"-{width}'sd{-value}" if value < 0 else f"{width}'sd{value}"


#: The input cast's shift by f places, 0 <= f < FINE_SHIFTS, is a product: the mantissa on a DSP48E1's
#: A port (25 bits signed) times +-2**f on its B port (18 bits signed).
FINE_SHIFTS = 16
DSP_A, DSP_B = 25, 18


@dataclass(frozen=True)
class FloatCast:
    """The float32 -> fixed cast in two register stages (``clocked`` lines go inside an
    ``always @(posedge clk)``): stage 1 decodes the word into the mantissa, a signed power of two and
    a window; stage 2 multiplies them and takes the window. ``result`` is stage 2's output."""

    declarations: list[str]
    clocked: list[str]
    stage2: list[str]
    result: str


def float_to_code(name: str, word: str, t: FixedType) -> FloatCast:
    """``word`` (float32 bits, a register) cast to ``t`` as ap_fixed's constructor from float does.

    ap_fixed_base(double) aligns the mantissa (hidden bit set, NaN/inf taken as huge numbers),
    two's-complements a negative one, then shifts: the value floor(x * 2**frac) wraps to ``width``
    bits; +-0 gives 0, inf and NaN give 0 (they shift out), a tiny negative gives -1 LSB.
    Here the signed mantissa s, placed above ``width - 1`` zero bits, is shifted right
    (arithmetically, which floors) by r = width - 1 - (exponent - 150 + frac): r < 0 leaves nothing
    in the type's bits (0), r >= the span only the sign. Written r = 16 c - f (f < 16), the shift is a
    product and a window: the code is bits [16 c, 16 c - width + 1] of s * 2**f. The product is one
    DSP48E1 (the sign goes into the power of two: -2**f is ones from bit f up), so the only logic
    left is the decode in stage 1 and one multiplexer of c windows per bit in stage 2, in place of a
    barrel shifter, sticky bits and a negation (for ap_fixed<16,6>, yosys: 36 LUT instead of 153).
    Only TRN/WRAP types (hls4ml's input default) are generated.
    """
    if t.rounding != "TRN" or t.saturation != "WRAP" or t.saturation_bits:
        raise ToolError(f"ip: input type {t}: only truncation with wrap-around is generated for the float cast "
                        "(hls4ml's default input type); set the input precision to ap_fixed<W,I>", ExitCode.USAGE)
    w = t.width
    span = 24 + w - 1  # mantissa bits above w - 1 zero bits
    top = w - 1 + 150 - t.frac  # r = top - biased exponent (exponent 0 counts as 1)
    if not 0 <= top <= 255 + span:
        raise ToolError(f"ip: input type {t} has no bit a float32 can reach", ExitCode.USAGE)
    last = -(-span // FINE_SHIFTS)  # the window for r = span; r > span takes it with f = 0: the sign alone
    cw, fw = max(1, last.bit_length()), (FINE_SHIFTS - 1).bit_length()
    product = DSP_A + DSP_B
    pw = max(product, FINE_SHIFTS * last + 1)  # the product, sign-extended up to the last window
    n = name
    return FloatCast(
        declarations=[
            f"wire [7:0] {n}_e = ({word}[30:23] == 8'd0) ? 8'd1 : {word}[30:23];",
            f"wire signed [10:0] {n}_r = 11'sd{top} - $signed({{3'b0, {n}_e}});",
            f"wire {n}_big = ({n}_r > 11'sd{span});",
            f"wire [{fw - 1}:0] {n}_f = {n}_big ? {fw}'d0 : {fw}'d0 - {n}_r[{fw - 1}:0];",
            f"wire [10:0] {n}_up = {n}_r + 11'sd{FINE_SHIFTS - 1};",
            f"wire [{DSP_B - 1}:0] {n}_pow = ({n}_r < 0) ? {DSP_B}'d0 : {_signed_power(f'{word}[31]', f'{n}_f', fw)};",
            f"reg [23:0] {n}_man;",
            f"reg [{DSP_B - 1}:0] {n}_b;",
            f"reg [{cw - 1}:0] {n}_c;",
        ],
        clocked=[
            f"{n}_man <= {{|{word}[30:23], {word}[22:0]}};",
            f"{n}_b <= {n}_pow;",
            f"{n}_c <= {n}_big ? {cw}'d{last} : {n}_up[{fw + cw - 1}:{fw}];",
        ],
        stage2=[
            f"wire signed [{product - 1}:0] {n}_p = $signed({{1'b0, {n}_man}}) * $signed({n}_b);",
            f"wire [{pw + w - 2}:0] {n}_q = " + (f"{{{_signed_wide(f'{n}_p', product, pw)}, {w - 1}'b0}};" if w > 1
                                                 else f"{_signed_wide(f'{n}_p', product, pw)};"),
            f"wire [{w - 1}:0] {n} = "
            + " : ".join(f"({n}_c == {cw}'d{k}) ? {n}_q[{FINE_SHIFTS * k + w - 1}:{FINE_SHIFTS * k}]"
                         for k in range(last))
            + f" : {n}_q[{FINE_SHIFTS * last + w - 1}:{FINE_SHIFTS * last}];",
        ],
        result=n,
    )


def _signed_power(negative: str, f: str, fw: int) -> str:
    """``DSP_B`` bits: 2**f, or -2**f (ones from bit f up) when ``negative``; each bit a function of f
    and the sign, which the LUTs that feed the DSP's B register compute directly."""
    def bit(k: int) -> str:
        if k >= FINE_SHIFTS:
            return negative
        if k == FINE_SHIFTS - 1:  # f <= k always holds
            return f"{negative} | {f} == {fw}'d{k}"
        return f"{negative} ? {f} <= {fw}'d{k} : {f} == {fw}'d{k}"
    return "{" + ", ".join(bit(k) for k in reversed(range(DSP_B))) + "}"


def sign_magnitude(name: str, code: str, t: FixedType) -> list[str]:
    """Wires ``{name}_neg`` and ``{name}_mag`` (``t.width`` bits, unsigned) of a code of ``t``: the
    first stage of the fixed -> float32 cast, so that the second (``normalized_float_function``)
    only counts and shifts."""
    w = t.width
    neg = f"{code}[{w - 1}]" if t.signed else "1'b0"
    return [f"wire {name}_neg = {neg};", f"wire [{w - 1}:0] {name}_mag = {name}_neg ? (~{code} + 1'b1) : {code};"]


def leading_zeros_function(t: FixedType) -> list[str]:
    """``leading_zeros``: the leading zero bits of a ``t.width``-bit magnitude (a priority encoder)."""
    w, lw = t.width, _lz_bits(t)
    return [
        f"function [{lw - 1}:0] leading_zeros;",
        f"    input [{w - 1}:0] mag;",
        "    integer k;",
        "    begin",
        f"        leading_zeros = {lw}'d{w};",
        f"        for (k = 0; k < {w}; k = k + 1) if (mag[k]) leading_zeros = {lw}'d{w - 1} - k[{lw - 1}:0];",
        "    end",
        "endfunction",
    ]


def normalized_float_function(name: str, t: FixedType) -> list[str]:
    """A Verilog function: (sign, magnitude) of a code of ``t`` -> float32 bits, exact (as ``(float)
    ap_fixed``): the magnitude shifted up to its leading one, the exponent from the count
    (``leading_zeros``, declared beside it)."""
    w, f, lw = t.width, t.frac, _lz_bits(t)
    if w > 24 or 127 - f < 1 or w - 1 - f + 127 > 254:
        raise ToolError(f"ip: output type {t} is not exactly a float32 (at most 24 bits, exponents in range)",
                        ExitCode.USAGE)
    fraction = "aligned[" + f"{w - 2}:0]" if w > 1 else ""
    pad = 23 - (w - 1)
    mantissa = ", ".join(p for p in (fraction, f"{pad}'d0" if pad else "") if p)
    return [
        f"function [31:0] {name};",
        "    input neg;",
        f"    input [{w - 1}:0] mag;",
        f"    reg [{lw - 1}:0] lz;",
        f"    reg [{w - 1}:0] aligned;",
        "    begin",
        "        lz = leading_zeros(mag);",
        "        aligned = mag << lz;",
        f"        if (lz == {lw}'d{w})",
        f"            {name} = 32'd0;",
        "        else",
        f"            {name} = {{neg, 8'd{w - 1 - f + 127} - {{{{{8 - lw}{{1'b0}}}}, lz}}, {mantissa}}};",
        "    end",
        "endfunction",
    ]


def _lz_bits(t: FixedType) -> int:
    return t.width.bit_length()
