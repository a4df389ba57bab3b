"""The ``ip`` step: the accelerator IP (Verilog-2005), verified bit for bit and cycle by cycle, synthesized.

From the exported graph (csim step): da4ml's datapath (as the rtl step builds it) inside hls4ml's
``myproject_axi`` ports, with hls4ml's softmax from the C-simulation's own tables. Verilator runs it
under cocotb with cocotbext-axi as the DMA: the test samples and the random set, without and with
random pauses on both sides, one frame per batch and one per sample; every output word must equal
the C-simulation's float32 output and every softmax input its traced pre-softmax value. yosys (beside
that build) counts the whole IP's cells against the part and times its worst register-to-register
logic path; its mapped netlist, simulated with the xc7 cell models, must give the same words.
Writes ``<ip_dir>/src/*.v`` and the ``ip`` section of ``hardware_estimate.json`` (beside the rtl
step's datapath figures).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from iris_fpga.config import CHAINS_PER_STAGE, IP_CLOCK_HZ
from iris_fpga.emulation.verilated_ip import build_library, netlist_flags, paused_clocks, stream_frame
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes, atomic_write_json
from iris_fpga.ip import verify
from iris_fpga.ip.verilog import Design, Slots, fifo_rows_for, top_module
from iris_fpga.datapath import report as rpt
from iris_fpga.datapath import simulate, synth
from iris_fpga.datapath.fixedpoint import FixedType
from iris_fpga.datapath.run import load_graph, prepare_dir

log = logging.getLogger(__name__)

SETS = ("test", "random")
NETLIST_BUILD = "netlist_build"  # the netlist's library, in the ip folder
#: The worst register-to-register logic delay allowed (ns): above WARN_NS a warning (routing on a
#: 7-series part often adds as much again as the logic), above FAIL_NS the step fails.
WARN_NS, FAIL_NS = 5.0, 6.0
TIMING_METHOD = ("yosys sta on the ip step's own xc7 mapping (synth_xilinx -nobram, LUTs by abc -luts), with "
                 "the xc7 cell delays of yosys' cells_sim.v; no routing: a logic-only lower bound, not Vivado's timing")


def run_ip(
    graph_path: Path,
    ip_dir: Path,
    estimate_path: Path,
    *,
    part: str = "xc7z020clg400-1",
    latency_cutoff: float = CHAINS_PER_STAGE,
    seed: int = 0,
    y_hls_path: Path | None = None,
    synthesize: bool = True,
) -> dict:
    """Generate, verify and synthesize the IP; add its section to ``estimate_path``; return that section.

    Raises ToolError: CHECK_FAILED when any output word or softmax input differs from the
    C-simulation (naming the run, sample and word), or frames/TLAST are wrong; EXTERNAL_TOOL when
    Verilator/cocotb/yosys fail; USAGE for a graph the IP cannot reproduce.
    """
    started = time.monotonic()
    graph_path, ip_dir, estimate_path = Path(graph_path), Path(ip_dir), Path(estimate_path)
    graph = load_graph(graph_path)
    softmax = graph.get("softmax") or {}
    if not softmax.get("supported"):
        raise ToolError(f"ip: {softmax.get('reason', 'the graph has no softmax section (re-run the csim step)')}",
                        ExitCode.USAGE)
    samples, want_words, want_pre, labels = _references(graph, y_hls_path)
    prepare_dir(ip_dir)
    seconds: dict[str, float] = {}
    t = time.monotonic()
    design, sources = write_ip(graph, ip_dir, latency_cutoff, part)
    seconds["verilog"] = time.monotonic() - t

    top = design.module
    # yosys, then the netlist's model (make -j 2), in one thread beside the IP's own Verilator build and
    # cocotb runs: the netlist's build is the step's longest part and starts as soon as yosys is done
    with ThreadPoolExecutor(max_workers=1) as pool:
        clocks = paused_clocks(len(samples), design.n_in, design.n_out)
        synthesis = pool.submit(_synthesize, ip_dir, top, sources, clocks, seconds) if synthesize else None
        runs = _verify_rtl(ip_dir, [ip_dir / s for s in sources], top, design.n_out, seed, seconds,
                           (samples, want_words, want_pre, labels))
        result = synthesis.result() if synthesis else None
    steady = runs[0]
    counts = {name: len(graph["sets"][name]["x_float32"]) for name in SETS}
    timing = netlist_exact = None
    if result:
        _verify_netlist(result["netlist_library"], design.n_out, seed, seconds, (samples, want_words, labels))
        netlist_exact = {name: {"matched": counts[name], "total": counts[name]} for name in SETS}
        timing = result["timing"]
    device_name, capacity = rpt.device_for(part)
    resources = synth.resources(result["cells"]) if result else None
    percent, fits = rpt.utilisation(resources, capacity) if resources else (None, None)
    seconds["total"] = time.monotonic() - started
    section = {
        "what": "the whole accelerator IP: hls4ml's myproject_axi AXI-Stream ports, float32 casts, da4ml's "
        "datapath, hls4ml's softmax, output FIFO; Verilog-2005 in ip/src",
        "module": top,
        "verilog": sources,
        "part": part,
        "device": {"name": device_name, "capacity": capacity},
        "resources": {k: resources[k] for k in ("LUT", "FF", "DSP", "BRAM", "CARRY4", "INV")} if resources else None,
        "utilisation_percent": percent,
        "fits": fits,
        "longest_path_cells": result.get("longest_path_cells") if result else None,
        "timing": timing,
        "cycles_per_sample": round(steady["span_cycles"] / len(samples), 4),
        "cycles_per_sample_how": f"{len(samples)} samples in one frame, sink always ready: clocks from the first "
        "input handshake to the last output handshake, divided by the samples",
        "latency_cycles": steady["latency_first_sample"],
        "latency_how": "clocks from the handshake of a sample's last input word to that of its first output word",
        "datapath_latency_cycles": design.latency,
        "fifo_rows": design.fifo_rows,
        "bit_exact": {name: {"matched": counts[name], "total": counts[name]} for name in SETS},
        "netlist_bit_exact": netlist_exact,
        "netlist_how": "yosys' mapped xc7 netlist (no block RAM: cells_sim.v models it for timing only) with "
        "its cells_sim.v models (LUT, MUXF, CARRY4, FDRE, RAM32M, SRL16E, DSP48E1), Verilated with the emulated "
        "board's C++ harness (nothing public but the top's ports): every sample in one frame under seeded random "
        "pauses on both sides, every output word against the C-simulation, frames and TLAST",
        "runs": [{"name": r["name"], "stalls": r["stalls"]} for r in runs],
        "compared": "every output word (float32 bits) against the C-simulation's outputs and every softmax "
        "input against hls4ml's trace, in each run; frame lengths and TLAST",
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    section["headline"] = rpt.ip_headline(section)
    existing = json.loads(estimate_path.read_text()) if estimate_path.exists() else {}
    atomic_write_json(estimate_path, rpt.with_ip_section(existing, section))
    log.info("%s", section["headline"])
    return section


def _verify_rtl(ip_dir: Path, sources: list[Path], top: str, n_out: int, seed: int, seconds: dict,
                reference: tuple) -> list[dict]:
    """The IP's Verilog on Verilator: every run of verify.RUNS equals the C-simulation; the runs' records."""
    samples, want_words, want_pre, labels = reference
    runner, seconds["verilator_build"] = verify.timed(verify.build, ip_dir, sources, top)
    runs, seconds["simulation"] = verify.timed(verify.stream, ip_dir, runner, top, samples, n_out, seed)
    for run in runs:
        verify.compare(run, want_words, want_pre, labels)
    for run in (r for r in runs if "paused" in r["name"]):
        if not (run["stalls"]["in_idle"] and run["stalls"]["out_valid_not_ready"]):
            raise ToolError(f"ip: run {run['name']}: the pauses did not stall both streams ({run['stalls']})",
                            ExitCode.CHECK_FAILED)
    log.info("ip: every output word equals the C-simulation in %d runs (%s)", len(runs),
             ", ".join(r["name"] for r in runs))
    return runs


def synthesize_ip(ip_dir: Path, top: str, sources: list[str]) -> dict:
    """yosys on the IP's Verilog: its cells, longest path, mapped netlist and worst logic delay, checked
    at once (``check_timing``). What the step measures; the explorer's front measures with it alone."""
    result = synth.synthesize(ip_dir, top, sources=sources, longest_path=True, timing=True)
    result["timing"] = check_timing(result["timing"])
    return result


def _synthesize(ip_dir: Path, top: str, sources: list[str], clocks: int, seconds: dict) -> dict:
    """yosys (``synthesize_ip``: a failing IP stops before the netlist's long build), then the mapped
    netlist with the xc7 cell models, Verilated into a library (``netlist_library``) compiled for a
    simulation of about ``clocks`` clocks."""
    result = synthesize_ip(ip_dir, top, sources)
    seconds["yosys"] = result["seconds"]
    built = build_library([synth.cell_models(), result["netlist"]], top, ip_dir / NETLIST_BUILD,
                          netlist_flags(clocks))
    seconds["netlist_build"] = built["seconds"]
    return {**result, "netlist_library": built["library"]}


def _verify_netlist(library: Path, n_out: int, seed: int, seconds: dict, reference: tuple) -> None:
    """yosys' netlist with the xc7 cell models: every output word equals the C-simulation."""
    samples, want_words, labels = reference
    run, seconds["netlist_simulation"] = verify.timed(stream_frame, library, samples, n_out, seed)
    name = "netlist-paused-one-frame"
    verify.compare({"name": name, **run}, want_words, None, labels)
    log.info("ip: the synthesized netlist's output words equal the C-simulation (%s, %d clocks)", name, run["cycles"])


def check_timing(found: dict) -> dict:
    """``ip.timing`` from yosys' worst path; CHECK_FAILED above FAIL_NS, a warning above WARN_NS."""
    timing = {"logic_ns": found["logic_ns"], "budget_ns": 1e9 / IP_CLOCK_HZ, "start": found["start"],
              "end": found["end"], "method": TIMING_METHOD}
    where = f"{timing['logic_ns']:.2f} ns of logic from {timing['start']} to {timing['end']}"
    if timing["logic_ns"] > FAIL_NS:
        raise ToolError(f"ip: {where}, over the {FAIL_NS} ns limit of the {timing['budget_ns']:g} ns clock "
                        "(lower --latency-cutoff to pipeline the datapath more)", ExitCode.CHECK_FAILED)
    if timing["logic_ns"] > WARN_NS:
        log.warning("ip: %s: over %.1f ns, little of the %g ns clock is left for routing", where, WARN_NS,
                    timing["budget_ns"])
    return timing


def write_ip(graph: dict, ip_dir: Path, latency_cutoff: float, part: str) -> tuple[Design, list[str]]:
    """The datapath (da4ml) and the top module in ``ip_dir/src``; returns the design and the Verilog
    paths relative to ``ip_dir``, submodules first."""
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    from iris_fpga.datapath.tracing import build_comb_logic

    try:
        comb = build_comb_logic(graph)
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolError(f"ip: exported graph is inconsistent ({exc!r})", ExitCode.USAGE) from exc
    dp_dir = ip_dir / "datapath"
    model = simulate.write_verilog(comb, dp_dir, latency_cutoff, part)
    latency = simulate.pipeline_stages(model)
    in_kifs, out_kifs = get_io_kifs(getattr(model, "_pipe", None) or comb)  # the layout of da4ml's wrapper
    n_in, n_out = int(graph["input"]["size"]), int(graph["output"]["size"])
    design = Design(
        module=f"{graph['source'].get('project', 'myproject')}_axi",
        datapath=f"{simulate.TOP}_wrapper",
        latency=latency,
        n_in=n_in,
        n_out=n_out,
        in_type=FixedType.from_dict(graph["input"]["type"]),
        in_slots=_slots(in_kifs),
        out_slots=_slots(out_kifs),
        softmax=graph["softmax"],
        fifo_rows=fifo_rows_for(latency, n_in, n_out),
    )
    src = ip_dir / "src"
    src.mkdir()
    datapath_sources = [*synth.verilog_sources(dp_dir, simulate.TOP), f"src/{simulate.TOP}_wrapper.v"]
    names = []
    for rel in datapath_sources:
        shutil.copy2(dp_dir / rel, src / Path(rel).name)
        names.append(f"src/{Path(rel).name}")
    atomic_write_bytes(src / f"{design.module}.v", top_module(design).encode())
    shutil.rmtree(dp_dir)  # da4ml's project (binder, scripts): the IP needs only the Verilog copied above
    return design, [*names, f"src/{design.module}.v"]


def _slots(kifs: np.ndarray) -> Slots:
    """da4ml's regular layout for elements with (keep_negative, integer, fraction) columns ``kifs``."""
    k, i, f = (np.asarray(row, dtype=int) for row in kifs)
    signed = bool(k.max())
    return Slots(width=int(i.max() + k.max() + f.max()), frac=int(f.max()), signed=signed)


def _references(graph: dict, y_hls_path: Path | None):
    """Input words, expected output words, expected softmax inputs (unsigned codes), and sample labels."""
    out_t = FixedType.from_dict(graph["output"]["type"])
    pre_t = FixedType.from_dict(graph["layers"][-1]["result_type"])
    words, outs, pres, labels = [], [], [], []
    for name in SETS:
        s = graph["sets"][name]
        if "x_float32" not in s or "y_out" not in s:
            raise ToolError("ip: the exported graph has no float32 inputs/outputs (re-run the csim step)", ExitCode.USAGE)
        if not s["x_float32"]:
            continue
        words.append(np.array(s["x_float32"], dtype=np.uint32))
        outs.append(out_t.values(np.array(s["y_out"], dtype=np.int64)).astype(np.float32).view(np.uint32))
        pres.append(np.array(s["y"], dtype=np.int64) & ((1 << pre_t.width) - 1))
        labels += [f"{name} sample {i}" for i in range(len(s["x_float32"]))]
    if y_hls_path is not None:
        y_hls = np.load(y_hls_path, allow_pickle=False).astype(np.float32).view(np.uint32)
        if y_hls.shape != outs[0].shape or not np.array_equal(y_hls, outs[0]):
            raise ToolError(f"ip: {y_hls_path} is not the C-simulation output the graph holds (re-run csim)",
                            ExitCode.USAGE)
    return np.concatenate(words), np.concatenate(outs), np.concatenate(pres), labels
