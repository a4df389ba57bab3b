"""The accelerator IP for real, on the tests' small trained network (conftest's 16-8-3 build): Verilog
generated from the exported graph, built with Verilator, driven by cocotbext-axi as the DMA (with and
without pauses), compared word for word with the C-simulation, synthesized with yosys, timed with yosys'
sta (within the 5.0 ns goal), and its xc7 netlist simulated too; a tiny 10-class network (digits) gets
the softmax's extra stages and stays bit-exact. The full ip step is the one `--accelerator rtl` ran in
``small_rtl_build`` (shared with tests/test_ip_emulation.py); deliberately wrong IPs are built here
without synthesis. The default network's IP is measured by README's command (its ip step alone takes
minutes), not here."""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import Build, _path_without_vivado, run_buildmodel
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.ip import casts, run_ip
from iris_fpga.ip.casts import Code
from iris_fpga.ip.run import FAIL_NS, WARN_NS, check_timing, load_graph
from iris_fpga.ip.verilog import TREE_LEVELS_PER_STAGE, Design, Slots, softmax_stages, top_module
from iris_fpga.datapath.fixedpoint import FixedType
from iris_fpga.datapath.stages import chain_depths, to_stages
from iris_fpga.datapath.tracing import build_comb_logic


def graph_file(built: Build) -> Path:
    return built.output_dir / "pipeline" / "rtl_graph.json"


@pytest.fixture(scope="module")
def ip_run(small_rtl_build: Build):
    """(output folder, the ip section, the whole hardware_estimate.json) of the build's own ip step."""
    estimate = json.loads((small_rtl_build.package_dir / "hardware_estimate.json").read_text())
    return small_rtl_build.output_dir, estimate["ip"], estimate


def test_ip_equals_csimulation_with_and_without_pauses(ip_run, small_rtl_build: Build):
    _, section, _ = ip_run
    n_test = len(np.load(small_rtl_build.package_dir / "X_test.npy", allow_pickle=False))
    exact = {"test": {"matched": n_test, "total": n_test}, "random": {"matched": 2000, "total": 2000}}
    assert section["bit_exact"] == exact
    assert section["netlist_bit_exact"] == exact  # yosys' xc7 netlist, simulated under random pauses
    runs = {r["name"]: r["stalls"] for r in section["runs"]}
    assert set(runs) == {"steady-one-frame", "steady-frame-per-sample", "paused-one-frame", "paused-frame-per-sample"}
    for name, stalls in runs.items():
        if name.startswith("paused"):  # the DMA paused, and the IP waited for the sink
            assert stalls["in_idle"] > 0 and stalls["out_valid_not_ready"] > 0
        else:
            assert stalls["out_not_ready"] == 0 and stalls["in_idle"] == 0


def test_random_inputs_reach_wrap_and_special_floats(small_build: Build):
    graph = json.loads(graph_file(small_build).read_text())
    words = np.array(graph["sets"]["random"]["x_float32"], dtype=np.uint32)
    floats = words.view(np.float32)
    in_type = FixedType.from_dict(graph["input"]["type"])
    assert np.isnan(floats).any() and np.isinf(floats).any() and (words == 0x80000000).any()
    assert (words == 0xFFC00000).any() and (words == 0x1).any() and (words == 0x80000001).any()  # -NaN, subnormals
    finite = floats[np.isfinite(floats)].astype(np.float64)
    assert (np.abs(finite) > 2.0 ** (in_type.integer - 1)).any()  # outside the range: wraps
    assert (finite == 2.0 ** (in_type.integer - 1)).any()  # the first value above the range
    scaled = finite * 2.0**in_type.frac
    off_grid = scaled != np.floor(scaled)
    assert off_grid.mean() > 0.3 and (off_grid & (finite < 0)).sum() > 1000  # negatives that must floor
    codes = np.array(graph["sets"]["random"]["x"])
    assert codes.min() == in_type.code_min and codes.max() == in_type.code_max


def test_estimate_gets_the_ip_section_beside_the_datapath(ip_run, small_build: Build):
    root, ip, estimate = ip_run
    datapath = json.loads((small_build.package_dir / "hardware_estimate.json").read_text())
    assert {k: v for k, v in estimate.items() if k != "ip"} == datapath  # the rtl step's figures, untouched
    res = ip["resources"]
    assert set(res) == {"LUT", "FF", "DSP", "BRAM", "CARRY4", "INV"} and res["LUT"] > 0 and res["FF"] > 0
    assert ip["part"] == "xc7z020clg400-1" and ip["fits"] is True
    assert 4.0 <= ip["cycles_per_sample"] <= 4.1 and 0 < ip["latency_cycles"] <= 20
    assert ip["longest_path_cells"] > 0
    timing = ip["timing"]  # yosys sta on the IP's own mapping: within the limit, between two named points
    assert set(timing) == {"logic_ns", "budget_ns", "start", "end", "method"} and timing["budget_ns"] == 10.0
    assert 1.0 < timing["logic_ns"] <= WARN_NS and timing["start"] and timing["end"]  # the goal, not just the limit
    assert "no routing" in timing["method"] and "lower bound" in timing["method"]
    assert f"{timing['logic_ns']:.2f} ns" in ip["headline"]
    top = (root / "ip" / "src" / "myproject_axi.v").read_text()
    for port in ("in_r_TDATA", "in_r_TVALID", "in_r_TREADY", "in_r_TLAST", "out_r_TDATA", "out_r_TVALID",
                 "out_r_TREADY", "out_r_TLAST", "ap_clk", "ap_rst_n"):
        assert port in top
    assert "X_INTERFACE_INFO" in top and "logic" not in top.split()  # Verilog-2005, not SystemVerilog
    assert all((root / "ip" / v).is_file() for v in ip["verilog"])


def test_the_ip_around_the_datapath_fits_issue_30s_budget(ip_run):
    """The float casts, softmax, FIFO and control: the whole IP less the rtl step's datapath (yosys
    both) within 590 LUT, the room that the explorer's winner's 659-LUT datapath leaves under 1,250."""
    _, ip, estimate = ip_run
    fixed = ip["resources"]["LUT"] - estimate["resources"]["LUT"]
    assert 0 < fixed <= 590, fixed


def test_flipped_table_entry_fails_naming_sample_and_word(small_build: Build, tmp_path):
    graph = json.loads(graph_file(small_build).read_text())
    table = graph["softmax"]["exp_table"]
    table[0] -= 1  # exp(0), the largest probability's numerator: every sample uses it
    altered = tmp_path / "graph.json"
    altered.write_text(json.dumps(graph))
    estimate = tmp_path / "hardware_estimate.json"
    with pytest.raises(ToolError) as err:
        run_ip(altered, tmp_path / "ip", estimate, synthesize=False)
    assert err.value.code == ExitCode.CHECK_FAILED
    message = str(err.value)
    assert "test sample 0, output word" in message and "C-simulation gives" in message
    assert not estimate.exists()


def test_graph_without_softmax_section_is_a_usage_error(small_build: Build, tmp_path):
    graph = json.loads(graph_file(small_build).read_text())
    del graph["softmax"]
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph))
    with pytest.raises(ToolError) as err:
        run_ip(path, tmp_path / "ip", tmp_path / "e.json")
    assert err.value.code == ExitCode.USAGE and "csim" in str(err.value)


def test_timing_over_the_limit_fails_in_one_line_and_warns_before(caplog):
    path = {"start": "a[0]", "end": "b[1]"}
    with pytest.raises(ToolError) as err:
        check_timing({**path, "logic_ns": FAIL_NS + 0.01})
    assert err.value.code == ExitCode.CHECK_FAILED and "\n" not in str(err.value)
    assert "a[0]" in str(err.value) and "b[1]" in str(err.value) and "--latency-cutoff" in str(err.value)
    with caplog.at_level("WARNING"):
        assert check_timing({**path, "logic_ns": WARN_NS + 0.5})["logic_ns"] == WARN_NS + 0.5
    assert "routing" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_timing({**path, "logic_ns": WARN_NS})
    assert not caplog.text


def test_truncating_input_cast_is_caught_by_the_random_set_alone(small_build: Build, tmp_path, monkeypatch):
    """The mutant an independent bench found: negative inputs rounded toward zero instead of floored.
    With the test samples taken out, the random set (off the LSB grid) must still fail it."""
    own = casts.float_to_code

    def truncating(name, word, t):  # the IP's own cast of |x|, negated
        cast = own(f"{name}_abs", f"{name}_word", t)
        return replace(cast, declarations=[f"wire [31:0] {name}_word = {{1'b0, {word}[30:0]}};", f"reg {name}_neg;",
                                           *cast.declarations],
                       clocked=[*cast.clocked, f"{name}_neg <= {word}[31];"],
                       stage2=[*cast.stage2,
                               f"wire [{t.width - 1}:0] {name} = {name}_neg ? -{cast.result} : {cast.result};"],
                       result=name)

    monkeypatch.setattr(casts, "float_to_code", truncating)
    graph = json.loads(graph_file(small_build).read_text())
    for key in ("x", "y", "x_float32", "y_out"):
        graph["sets"]["test"][key] = []
    altered = tmp_path / "graph.json"
    altered.write_text(json.dumps(graph))
    with pytest.raises(ToolError) as err:
        run_ip(altered, tmp_path / "ip", tmp_path / "e.json", synthesize=False)
    assert err.value.code == ExitCode.CHECK_FAILED and "random sample" in str(err.value)


def test_stages_hold_at_most_the_cutoffs_carry_chains(small_build: Build):
    """The datapath is cut by carry chains, negations and constant additions included (da4ml counts
    those as no delay, so its own cut let 3-4 chains into a stage)."""
    from da4ml.trace.pipeline import to_pipeline

    comb = build_comb_logic(load_graph(graph_file(small_build)))
    depths = chain_depths(comb)
    depth = max(depths[i] for i in comb.out_idxs)
    assert depth > max(comb.out_latency)  # more chains than da4ml's adder count
    for cutoff in (1.0, 2.5, 3.0):
        stages = to_stages(comb, cutoff)
        ends = [max(s.out_latency) for s in stages.solutions]
        assert ends[-1] == depth and len(ends) == int(np.ceil(depth / cutoff))
        assert all(k * cutoff < end <= (k + 1) * cutoff for k, end in enumerate(ends))  # inputs registered
    da4ml = to_pipeline(comb, 3.0, retiming=False, verbose=False)
    assert len(da4ml.solutions) < len(to_stages(comb, 3.0).solutions)


def test_saturation_is_left_out_only_where_it_cannot_act():
    target = FixedType(signed=True, width=18, integer=8, rounding="RND", saturation="SAT")
    narrow = casts.cast("y", Code("x", True, 16, 10), target, "a sum")  # 16 bits, 10 fraction: always fits
    wide = casts.cast("y", Code("x", True, 20, 10), target, "a sum")
    assert not any("y_hi" in line for line in narrow) and any("y_hi" in line for line in wide)
    # unsigned, 11 fraction bits: 17 bits stay below 2**6; with 18, 2**7 - 2**-11 rounds up to 2**7, out of range
    assert not any("y_hi" in line for line in casts.cast("y", Code("x", False, 17, 11), target, "a sum"))
    assert any("y_hi" in line for line in casts.cast("y", Code("x", False, 18, 11), target, "a sum"))


# hls4ml's softmax types as the csim step exports them (the default table types); tables of 16 entries
SOFTMAX_TYPES = {
    "data_t": FixedType(True, 11, 5), "inp_norm_t": FixedType(False, 10, 4), "exp_table_t": FixedType(True, 18, 8),
    "accum_t": FixedType(True, 16, 6), "inv_inp_t": FixedType(True, 18, 8, "RND", "SAT"),
    "inv_table_t": FixedType(True, 18, 4), "res_t": FixedType(True, 16, 6),
}


def softmax_verilog(n_out: int) -> str:
    """The top module of an IP with ``n_out`` classes (a 4-input datapath of one stage)."""
    softmax = {"types": {k: t.to_dict() for k, t in SOFTMAX_TYPES.items()},
               "exp_table": list(range(16, 0, -1)), "inv_table": list(range(16))}
    design = Design(module="myproject_axi", datapath="iris_nn_wrapper", latency=1, n_in=4, n_out=n_out,
                    in_type=FixedType(True, 16, 6), in_slots=Slots(16, 10, True), out_slots=Slots(12, 6, True),
                    softmax=softmax, fifo_rows=8)
    return top_module(design)


def tree_levels(verilog: str) -> int:
    """The most comparators (``mxK``) or adders (``..._ab``) of the softmax's trees on one path between registers."""
    wires = dict(re.findall(r"^\s*wire (?:signed )?(?:\[[^\]]*\] )?(\w+) = (.*);$", verilog, re.M))
    levels: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in levels:
            here = int(bool(re.fullmatch(r"mx\d+|\w+_ab", name)))
            levels[name] = here + max((level(w) for w in re.findall(r"[A-Za-z_]\w*", wires[name]) if w in wires),
                                      default=0)
        return levels[name]

    return max(level(name) for name in wires)


def valid_stages(verilog: str, start: str, end: str) -> int:
    """Registers on the valid bit's way from ``start`` to ``end`` (each ``reg <= ap_rst_n & source;``)."""
    source = dict(re.findall(r"(\w+) <= ap_rst_n & (\w+);", verilog))
    stages, name = 0, end
    while name != start:
        name, stages = source[name], stages + 1
    return stages


@pytest.mark.parametrize("n_out", [1, 2, 3, 4, 5, 8, 10, 16, 17, 33])
def test_softmax_trees_take_two_levels_a_clock(n_out):
    """The maximum and the sum: ceil(log2 n_out) levels each, at most TREE_LEVELS_PER_STAGE of them between
    registers, so more classes take more stages (3 classes: 5, as before; 10: 7), as the FIFO is sized for."""
    verilog = softmax_verilog(n_out)
    assert len(re.findall(r"wire \[\d+:0\] mx\d+ =", verilog)) == n_out - 1  # every value compared once
    assert len(re.findall(r"wire \[\d+:0\] \w+_ab =", verilog)) == n_out - 1  # and added once
    levels = math.ceil(math.log2(n_out))
    assert tree_levels(verilog) == min(levels, TREE_LEVELS_PER_STAGE)
    stages = valid_stages(verilog, "dp_done", "sm_vd")  # datapath output to the FIFO's row of result codes,
    stages += 1  # and from the row (or the FIFO's head) a clock into the output cast's stage A
    assert stages == softmax_stages(n_out) == 3 + 2 * max(1, math.ceil(levels / TREE_LEVELS_PER_STAGE))
    assert softmax_stages(3) == 5 and softmax_stages(10) == 7


@pytest.fixture(scope="module")
def ten_class_graph(tmp_path_factory) -> Path:
    """The exported graph of a tiny digits network (64 inputs, 8 hidden, 10 classes; trained briefly: its
    accuracy does not matter here), up to the C-simulation."""
    root = tmp_path_factory.mktemp("ten-classes")
    result = run_buildmodel("--dataset", "digits", "--hidden", "8", "--epochs", "10", "--weight-bits", "4",
                            "--activation-bits", "3", "--to", "csim", cwd=root, env={"PATH": _path_without_vivado()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "hls4ml_prj_pynq" / "pipeline" / "rtl_graph.json"


@pytest.mark.slow
@pytest.mark.verilator
def test_ten_classes_take_two_more_softmax_stages_and_stay_exact(ten_class_graph, ip_run, tmp_path):
    """The tiny digits IP on Verilator under cocotb (60 test and 200 random samples of 64 words, the four
    runs): every output word and softmax input equals the C-simulation through the pipelined maximum and
    sum, with the maximum at many places; its latency beyond the datapath is the 3-class IP's plus two clocks."""
    graph = json.loads(ten_class_graph.read_text())
    for name, keep in (("test", 60), ("random", 200)):
        for key in ("x", "y", "x_float32", "y_out"):
            graph["sets"][name][key] = graph["sets"][name][key][:keep]
    pre = np.array(graph["sets"]["test"]["y"] + graph["sets"]["random"]["y"])
    assert pre.shape == (260, 10) and len(set(pre.argmax(axis=1))) >= 6
    trimmed = tmp_path / "graph.json"
    trimmed.write_text(json.dumps(graph))
    section = run_ip(trimmed, tmp_path / "ip", tmp_path / "e.json", synthesize=False)
    assert section["bit_exact"] == {"test": {"matched": 60, "total": 60}, "random": {"matched": 200, "total": 200}}
    _, three_classes, _ = ip_run
    beyond = [s["latency_cycles"] - s["datapath_latency_cycles"] for s in (section, three_classes)]
    assert beyond[0] == beyond[1] + 2, beyond
    assert section["cycles_per_sample"] <= 1.025 * 64  # the stream's limit still holds
