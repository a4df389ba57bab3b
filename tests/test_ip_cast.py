"""The IP's float32 -> fixed input cast alone, Verilated, against hls4ml's own ap_fixed C++ (g++ on the
ap_types headers inside the installed hls4ml) on over 20,000 float32 patterns; and a truncating
mutant of it, which the same check must catch. All the casts share one Verilator and one g++ build.
The output side's fixed -> float32 cast, on every code of three types, against numpy's float32."""
from __future__ import annotations

import numpy as np
import pytest

from iris_fpga.ip import cast_check, casts
from iris_fpga.datapath.fixedpoint import FixedType

pytestmark = [pytest.mark.slow, pytest.mark.verilator]  # a Verilator and a g++ build

DEFAULT_INPUT = FixedType(signed=True, width=16, integer=6)  # hls4ml's default precision, the IP's input type
TYPES = [DEFAULT_INPUT, FixedType(signed=True, width=8, integer=3), FixedType(signed=False, width=10, integer=2)]


def truncating_mutant() -> str:
    """A negative value rounded toward zero instead of floored (the IP's own cast of |x|, negated):
    the mutant the random set used to miss."""
    w = DEFAULT_INPUT.width
    return cast_check.cast_module(DEFAULT_INPUT, module="cast_of_magnitude") + "\n".join([
        f"module {cast_check.MODULE} (input wire clk, input wire [31:0] word, output wire [{w - 1}:0] code);",
        f"    wire [{w - 1}:0] magnitude;",
        "    reg negative;",
        "    cast_of_magnitude cast (.clk(clk), .word({1'b0, word[30:0]}), .code(magnitude));",
        "    always @(posedge clk) negative <= word[31];",
        "    assign code = negative ? -magnitude : magnitude;",
        "endmodule", ""])


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> list[dict]:
    """compare_all on every type of TYPES with the IP's own cast, then the mutant (last)."""
    cases = [(t, None) for t in TYPES] + [(DEFAULT_INPUT, truncating_mutant())]
    return cast_check.compare_all(cases, tmp_path_factory.mktemp("casts"))


def test_patterns_cover_every_exponent_sign_and_special():
    words = cast_check.float_patterns()
    assert words.size >= 20_000
    exponents, signs = (words >> 23) & 0xFF, words >> 31
    assert set(exponents.tolist()) == set(range(256)) and set(signs.tolist()) == {0, 1}
    floats = words.view(np.float32)
    assert np.isnan(floats).any() and np.isposinf(floats).any() and np.isneginf(floats).any()
    assert {0x0, 0x80000000, 0x1, 0x80000001} <= set(words.tolist())  # signed zeros, subnormals
    grid = cast_check.grid_patterns(DEFAULT_INPUT, 100).view(np.float32).astype(np.float64) * 2**DEFAULT_INPUT.frac
    assert (grid != np.floor(grid)).any() and (grid < -2**15).any() and (grid >= 2**15).any()  # off grid, outside


@pytest.mark.parametrize("k", range(len(TYPES)), ids=[str(t) for t in TYPES])
def test_cast_equals_ap_fixed(k, checked):
    result = checked[k]
    assert result["total"] >= 20_000
    assert result["matched"] == result["total"], result["first_mismatch"]


def test_truncating_cast_fails_the_check(checked):
    result = checked[-1]
    first = result["first_mismatch"]
    assert result["matched"] < result["total"] and first["float"] < 0
    assert (first["verilog"] - first["ap_fixed"]) % 2**16 == 1  # one LSB above the floor


# ---- the output side's fixed -> float32 cast (casts.sign_magnitude, then normalized_float_function), every code

OUTPUT_TYPES = [FixedType(signed=True, width=16, integer=6), FixedType(signed=False, width=10, integer=2),
                FixedType(signed=True, width=18, integer=8)]  # hls4ml's result default, unsigned, wider
FLOAT_WORD = FixedType(signed=False, width=32, integer=32)  # verilog_codes' output: a float32 word's 32 bits


def float_module(t: FixedType) -> str:
    """The IP's output cast of a ``t`` code (the low bits of ``word``) as verilog_codes' module: the
    sign and magnitude registered (the IP's stage A), then the float32 word (stage B)."""
    w = t.width
    return "\n".join([f"module {cast_check.MODULE} (input wire clk, input wire [31:0] word, output wire [31:0] code);",
                      *casts.leading_zeros_function(t), *casts.normalized_float_function("to_float", t),
                      f"wire [{w - 1}:0] c = word[{w - 1}:0];", *casts.sign_magnitude("c_sm", "c", t),
                      f"reg neg; reg [{w - 1}:0] mag;",
                      "always @(posedge clk) begin neg <= c_sm_neg; mag <= c_sm_mag; end",
                      "assign code = to_float(neg, mag);", "endmodule", ""])


def test_output_cast_gives_the_float32_of_every_code(tmp_path):
    cases = [(FLOAT_WORD, float_module(t)) for t in OUTPUT_TYPES]
    words = np.arange(1 << max(t.width for t in OUTPUT_TYPES), dtype=np.uint32)
    got = cast_check.verilog_codes(cases, words, tmp_path)
    for t, floats in zip(OUTPUT_TYPES, got):
        codes = words & ((1 << t.width) - 1)
        signed = codes.astype(np.int64) - ((codes >> (t.width - 1)) << t.width if t.signed else 0)
        want = t.values(signed).astype(np.float32).view(np.uint32)
        assert np.array_equal(floats.astype(np.uint32), want), t
        assert (floats == 0x80000000).sum() == 0  # -0 never: a zero code is +0, as (float) ap_fixed gives
