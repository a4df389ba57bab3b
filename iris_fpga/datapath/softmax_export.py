"""hls4ml's softmax as the C-simulation computes it: its types and lookup tables, read from the C++.

The C-simulation builds its exp and inverse tables at start-up (``nnet::init_exp_table`` and
``nnet::init_invert_table``, glibc's ``expf``, then ap_fixed casts). Rather than re-derive them,
this compiles a few lines of C++ against the project's own ``firmware/`` headers and config, calls
the same functions, and prints every entry and every type (width, integer bits, signedness,
rounding, overflow) as the C++ sees them. The softmax call in ``myproject.cpp`` names the types and
the config, so nothing here assumes today's network.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from iris_fpga import csim_cache
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.datapath.fixedpoint import FixedType

#: C++ types the dumper prints, under the names the graph uses.
CONFIG_TYPES = ("exp_table_t", "inv_table_t", "accum_t", "inv_inp_t", "inp_norm_t")

_DUMPER = r"""
#include "myproject.h"
#include "parameters.h"
#include <cstdio>
template <class T> void type(const char *key) {
    T top = 0;
    top[T::width - 1] = 1;
    const char *q = "?", *o = "?";
    switch (T::qmode) {
    case AP_RND: q = "RND"; break; case AP_RND_ZERO: q = "RND_ZERO"; break;
    case AP_RND_MIN_INF: q = "RND_MIN_INF"; break; case AP_RND_INF: q = "RND_INF"; break;
    case AP_RND_CONV: q = "RND_CONV"; break; case AP_TRN: q = "TRN"; break; case AP_TRN_ZERO: q = "TRN_ZERO"; break;
    }
    switch (T::omode) {
    case AP_SAT: o = "SAT"; break; case AP_SAT_ZERO: o = "SAT_ZERO"; break; case AP_SAT_SYM: o = "SAT_SYM"; break;
    case AP_WRAP: o = "WRAP"; break; case AP_WRAP_SM: o = "WRAP_SM"; break;
    }
    std::printf("type %s %d %d %d %s %s\n", key, (int)T::width, (int)T::iwidth, top < 0 ? 1 : 0, q, o);
}
int main() {
    typedef CONFIG C;
    type<DATA_T>("data_t");
    type<RES_T>("res_t");
    type<typename C::exp_table_t>("exp_table_t");
    type<typename C::inv_table_t>("inv_table_t");
    type<typename C::accum_t>("accum_t");
    type<typename C::inv_inp_t>("inv_inp_t");
    type<typename C::inp_norm_t>("inp_norm_t");
    std::printf("stable %d\n", C::implementation == nnet::softmax_implementation::stable ? 1 : 0);
    std::printf("n %u\n", (unsigned)C::n_slice);
    static typename C::exp_table_t exp_table[C::exp_table_size];
    static typename C::inv_table_t inv_table[C::inv_table_size];
    nnet::init_exp_table<typename C::inp_norm_t, C>(exp_table, true);
    nnet::init_invert_table<typename C::inv_inp_t, C>(inv_table);
    for (unsigned i = 0; i < C::exp_table_size; i++) std::printf("exp %.17g\n", exp_table[i].to_double());
    for (unsigned i = 0; i < C::inv_table_size; i++) std::printf("inv %.17g\n", inv_table[i].to_double());
}
"""


def export_softmax(project_dir: Path, layer_name: str) -> dict:
    """The softmax layer ``layer_name``: types and tables as the compiled C++ has them (integer codes).

    Returns ``{"supported": False, "reason": ...}`` for a softmax the IP does not reproduce (only
    hls4ml's 'stable' implementation is), so the csim step never fails for it.
    """
    firmware = Path(project_dir) / "firmware"
    call = re.search(
        r"nnet::softmax<\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*>\s*\([^;]*\);\s*//\s*" + re.escape(layer_name) + r"\s*$",
        (firmware / "myproject.cpp").read_text(),
        re.MULTILINE,
    )
    if call is None:
        return {"supported": False, "reason": f"no nnet::softmax call for layer {layer_name} in myproject.cpp"}
    data_t, res_t, config = call.groups()
    lines = csim_cache.remembered(firmware.parent, (_DUMPER, config, data_t, res_t),  # the tables hold no weights
                                  lambda: _run_dumper(firmware, config, data_t, res_t))
    types = {}
    tables: dict[str, list[float]] = {"exp": [], "inv": []}
    stable, n = False, 0
    for line in lines:
        key, *rest = line.split()
        if key == "type":
            name, width, iwidth, signed, rounding, saturation = rest
            types[name] = FixedType(bool(int(signed)), int(width), int(iwidth), rounding, saturation)
        elif key in tables:
            tables[key].append(float(rest[0]))
        elif key == "stable":
            stable = rest[0] == "1"
        elif key == "n":
            n = int(rest[0])
    if not stable:
        return {"supported": False, "reason": f"softmax {layer_name} is not hls4ml's 'stable' implementation"}
    return {
        "supported": True,
        "name": layer_name,
        "config": config,
        "n": n,
        "types": {name: t.to_dict() for name, t in sorted(types.items())},
        "exp_table": _codes(tables["exp"], types["exp_table_t"], "exp"),
        "inv_table": _codes(tables["inv"], types["inv_table_t"], "inverse"),
        "how": "types and tables printed by nnet::init_exp_table / nnet::init_invert_table compiled against "
        "the project's firmware/ headers (the C-simulation's own code)",
    }


def _run_dumper(firmware: Path, config: str, data_t: str, res_t: str) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="softmax-tables-") as tmp:
        source, binary = Path(tmp) / "dump.cpp", Path(tmp) / "dump"
        source.write_text(_DUMPER)
        compile_cmd = [
            "g++", "-std=c++17", "-O0", f"-DCONFIG={config}", f"-DDATA_T={data_t}", f"-DRES_T={res_t}",
            f"-I{firmware}", f"-I{firmware / 'ap_types'}", str(source), "-o", str(binary),
        ]
        try:
            built = subprocess.run(compile_cmd, capture_output=True, text=True, check=False)
            if built.returncode != 0:
                first = next((ln for ln in built.stderr.splitlines() if "error" in ln), built.stderr.strip()[:200])
                raise ToolError(f"softmax tables: g++ failed on the table dumper ({first})", ExitCode.EXTERNAL_TOOL)
            ran = subprocess.run([str(binary)], capture_output=True, text=True, check=False, timeout=60)
        except FileNotFoundError as exc:
            raise ToolError("softmax tables: g++ not found (apt-get install g++)", ExitCode.EXTERNAL_TOOL) from exc
    if ran.returncode != 0:
        raise ToolError(f"softmax tables: the table dumper exited with {ran.returncode}", ExitCode.EXTERNAL_TOOL)
    return ran.stdout.splitlines()


def _codes(values: list[float], t: FixedType, what: str) -> list[int]:
    scaled = np.asarray(values, dtype=np.float64) * 2.0**t.frac
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled) or codes.min() < t.code_min or codes.max() > t.code_max:
        raise ToolError(f"softmax tables: {what} table entries are not values of {t}", ExitCode.EXTERNAL_TOOL)
    return codes.astype(np.int64).tolist()
