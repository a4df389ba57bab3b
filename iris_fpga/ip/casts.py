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
    if t.saturation == "SAT":
        lines.append(f"wire signed [{width - 1}:0] {dst}_hi = {_literal(t.code_max, width)};")
        lines.append(f"wire signed [{width - 1}:0] {dst}_lo = {_literal(t.code_min, width)};")
        lines.append(f"wire [{t.width - 1}:0] {dst} = ({dst}_r > {dst}_hi) ? {dst}_hi[{t.width - 1}:0] : "
                     f"({dst}_r < {dst}_lo) ? {dst}_lo[{t.width - 1}:0] : {dst}_r[{t.width - 1}:0];")
    elif t.width <= width:
        lines.append(f"wire [{t.width - 1}:0] {dst} = {dst}_r[{t.width - 1}:0];")
    else:
        lines.append(f"wire [{t.width - 1}:0] {dst} = {_signed_wide(dst + '_r', width, t.width)};")
    return lines


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


def float_to_code_function(name: str, t: FixedType) -> list[str]:
    """A Verilog function: float32 bits -> code of ``t``, as ap_fixed's constructor from float.

    ap_fixed_base(double) aligns the mantissa (hidden bit set, NaN/inf taken as huge numbers),
    two's-complements a negative one, then shifts: the value floor(x * 2**frac) wraps to ``width``
    bits; +-0 gives 0, inf and NaN give 0 (they shift out), a tiny negative gives -1 LSB.
    Only TRN/WRAP types (hls4ml's input default) are generated.
    """
    if t.rounding != "TRN" or t.saturation != "WRAP" or t.saturation_bits:
        raise ToolError(f"ip: input type {t}: only truncation with wrap-around is generated for the float cast "
                        "(hls4ml's default input type); set the input precision to ap_fixed<W,I>", ExitCode.USAGE)
    w = t.width
    return [
        f"function [{w - 1}:0] {name};",
        "    input [31:0] word;",
        "    reg [23:0] man;",
        f"    reg [{w - 1}:0] mag;",
        "    reg sticky;",
        "    integer sh;",
        "    begin",
        "        man = {|word[30:23], word[22:0]};",
        f"        sh = (word[30:23] == 8'd0 ? 1 : word[30:23]) - 150 + {t.frac};",
        "        if (sh >= 0) begin",
        f"            mag = (sh >= {w}) ? {{{w}{{1'b0}}}} : ({{{{{w}{{1'b0}}}}, man}} << sh);",
        "            sticky = 1'b0;",
        "        end else begin",
        "            mag = (-sh >= 24) ? {" + str(w) + "{1'b0}} : (man >> -sh);",
        "            sticky = (-sh >= 24) ? |man : |(man & ~({24{1'b1}} << -sh));",
        "        end",
        f"        {name} = word[31] ? (~mag + {{{{{w - 1}{{1'b0}}}}, ~sticky}}) : mag;",
        "    end",
        "endfunction",
    ]


def code_to_float_function(name: str, t: FixedType) -> list[str]:
    """A Verilog function: code of ``t`` -> float32 bits, exact (as ``(float) ap_fixed``)."""
    w, f = t.width, t.frac
    if w > 24 or 127 - f < 1 or w - 1 - f + 127 > 254:
        raise ToolError(f"ip: output type {t} is not exactly a float32 (at most 24 bits, exponents in range)",
                        ExitCode.USAGE)
    sign = f"code[{w - 1}]" if t.signed else "1'b0"
    return [
        f"function [31:0] {name};",
        f"    input [{w - 1}:0] code;",
        f"    reg [{w - 1}:0] mag;",
        f"    reg [{w + 23}:0] aligned;",
        "    reg neg;",
        "    integer k, top;",
        "    begin",
        f"        neg = {sign};",
        "        mag = neg ? (~code + 1'b1) : code;",
        "        top = -1;",
        f"        for (k = 0; k < {w}; k = k + 1) if (mag[k]) top = k;",
        "        aligned = {{24{1'b0}}, mag} << (23 - top);",
        "        if (top < 0)",
        f"            {name} = 32'd0;",
        "        else",
        f"            {name} = {{neg, top[7:0] + 8'd{127 - f}, aligned[22:0]}};",
        "    end",
        "endfunction",
    ]
