"""The rtl step: exported graph -> da4ml datapath -> Verilog -> Verilator (bit-exact check) -> yosys."""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iris_fpga.config import CHAINS_PER_STAGE
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_json
from iris_fpga.datapath import report as rpt
from iris_fpga.datapath import simulate, synth
from iris_fpga.datapath.export import GRAPH_FORMAT
from iris_fpga.datapath.fixedpoint import FixedType

log = logging.getLogger(__name__)

MARKER = ".iris-fpga-rtl"  # marks a folder this step owns (and may empty)
SETS = ("test", "random")


def run_rtl(
    graph_path: Path,
    rtl_dir: Path,
    estimate_path: Path,
    *,
    latency_cutoff: float = CHAINS_PER_STAGE,
    part: str = "xc7z020clg400-1",
    synthesize: bool = True,
) -> dict:
    """Build, simulate and synthesize the network; write ``estimate_path`` atomically; return the report.

    Raises ToolError: CHECK_FAILED when the RTL differs from the C-simulation (naming the first
    differing sample), EXTERNAL_TOOL when g++/make/verilator/yosys fail, USAGE for a bad graph file.
    ``synthesize=False`` skips yosys (resources are then absent from the report).
    """
    started = time.monotonic()
    graph_path, rtl_dir, estimate_path = Path(graph_path), Path(rtl_dir), Path(estimate_path)
    check_arguments(latency_cutoff, part, synthesize)
    estimate_path.parent.mkdir(parents=True, exist_ok=True)
    estimate_path.unlink(missing_ok=True)  # never leave an estimate from another graph behind a failure
    reference = Reference.load(graph_path)
    seconds: dict[str, float] = {}
    comb = trace_datapath(reference, seconds)
    model, cycles = write_and_build(comb, rtl_dir, latency_cutoff, part, seconds)
    t = time.monotonic()
    exact = reference.check(lambda x: simulate.simulate(model, x), "the Verilog (Verilator)")
    seconds["simulation"] = time.monotonic() - t
    log.info("rtl: Verilog equals the C-simulation: %s",
             ", ".join(f"{v['matched']}/{v['total']} {k}" for k, v in exact.items()))
    synthesis = synth.synthesize(rtl_dir, simulate.TOP) if synthesize else None
    if synthesis:
        seconds["yosys"] = synthesis["seconds"]
    seconds["total"] = time.monotonic() - started
    da4ml_estimate = {"LUT": round(comb.cost), "FF": int(getattr(model._pipe, "reg_bits", 0)) if cycles else 0}
    report = rpt.build_report(graph_path, reference.graph, latency_cutoff=latency_cutoff, part=part, cycles=cycles,
                              exact=exact, synthesis=synthesis, da4ml_estimate=da4ml_estimate, seconds=seconds,
                              rtl_dir=rtl_dir)
    atomic_write_json(estimate_path, report)
    log.info("%s", report["headline"])
    return report


def check_arguments(latency_cutoff: float, part: str, synthesize: bool) -> None:
    if not 0 <= latency_cutoff < float("inf"):
        raise ToolError(f"rtl: latency cutoff must be 0 (combinational) or a finite number above, not {latency_cutoff}",
                        ExitCode.USAGE)
    if synthesize and not part.lower().startswith("xc7"):
        raise ToolError(f"rtl: part {part} is not a Xilinx 7-series device and synthesis targets xc7 only: "
                        "leave out --rtl for this board", ExitCode.USAGE)


@dataclass(frozen=True)
class Reference:
    """The exported graph and what the C-simulation computed for its input sets (integer codes)."""

    path: Path
    graph: dict
    sets: dict  # {set name: (input codes, output codes)}, empty sets left out
    in_type: FixedType
    out_type: FixedType

    @classmethod
    def load(cls, path: Path) -> "Reference":
        graph = load_graph(path)
        sets = {name: _set_arrays(graph, name) for name in SETS}
        return cls(path, graph, {name: xy for name, xy in sets.items() if len(xy[0])},
                   FixedType.from_dict(graph["input"]["type"]), FixedType.from_dict(graph["layers"][-1]["result_type"]))

    def check(self, predict, what: str) -> dict:
        """``predict`` (input values -> output values) on every set; raises naming the first differing sample."""
        for name, (x, y) in self.sets.items():
            got = _codes(predict(self.in_type.values(x)), self.out_type)
            self.compare(got, y, x, name, what)
        return {name: {"matched": int(len(y)), "total": int(len(y))} for name, (_, y) in self.sets.items()}

    def compare(self, got, want, x, set_name: str, what: str) -> None:
        same = (got == want).all(axis=1) if len(want) else np.array([], dtype=bool)
        if got.shape == want.shape and same.all():
            return
        if got.shape != want.shape:
            raise ToolError(f"rtl: {what} gives outputs of shape {got.shape}, the C-simulation {want.shape}",
                            ExitCode.CHECK_FAILED)
        bad = np.nonzero(~same)[0]
        i = int(bad[0])
        layer = self.graph["compared_layer"]
        raise ToolError(
            f"rtl: {what} differs from the C-simulation on {set_name} sample {i} "
            f"({len(bad)} of {len(want)} {set_name} samples differ): input {_fmt(self.in_type.values(x[i]))}, "
            f"RTL {layer} {_fmt(got[i] * 2.0**-self.out_type.frac)}, "
            f"C-simulation {_fmt(self.out_type.values(want[i]))}",
            ExitCode.CHECK_FAILED,
        )


def trace_datapath(reference: Reference, seconds: dict) -> object:
    """da4ml's datapath from the graph, checked with da4ml's own interpreter: a wrong graph fails here
    in a second, before Verilator."""
    from iris_fpga.datapath.tracing import build_comb_logic

    t = time.monotonic()
    try:
        comb = build_comb_logic(reference.graph)
    except (KeyError, TypeError, ValueError) as exc:  # a graph file edited by hand or truncated
        raise ToolError(f"rtl: exported graph {reference.path} is inconsistent ({exc!r})", ExitCode.USAGE) from exc
    seconds["datapath"] = time.monotonic() - t
    log.info("rtl: datapath traced with da4ml (its own estimate: %d LUT) in %.1f s", round(comb.cost), seconds["datapath"])
    reference.check(_interpreted(comb), "the datapath rebuilt from the exported graph (da4ml)")
    return comb


def _interpreted(comb):
    """da4ml's interpreter of the traced datapath; an operation it cannot run is a one-line tool error."""
    def predict(values):
        try:
            return comb.predict(values)
        except RuntimeError as exc:
            raise ToolError(f"rtl: da4ml cannot run the datapath it traced ({exc})", ExitCode.EXTERNAL_TOOL) from exc
    return predict


def write_and_build(comb, rtl_dir: Path, latency_cutoff: float, part: str, seconds: dict) -> tuple[object, int]:
    """Verilog into ``rtl_dir`` and its Verilator simulation; returns the model and its pipeline stages."""
    prepare_dir(rtl_dir)
    t = time.monotonic()
    model = simulate.write_verilog(comb, rtl_dir, latency_cutoff, part)
    cycles = simulate.pipeline_stages(model)
    seconds["verilog"] = time.monotonic() - t
    log.info("rtl: Verilog written to %s (%s)", rtl_dir / "src",
             f"{cycles}-stage pipeline" if cycles else "combinational")
    t = time.monotonic()
    simulate.build_simulation(model)
    seconds["verilator_build"] = time.monotonic() - t
    log.info("rtl: Verilator build took %.1f s", seconds["verilator_build"])
    return model, cycles


def load_graph(path: Path) -> dict:
    try:
        graph = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ToolError(f"rtl: exported graph {path} is missing (run the csim step first)", ExitCode.USAGE) from exc
    except (OSError, ValueError) as exc:
        raise ToolError(f"rtl: exported graph {path} is unreadable ({exc})", ExitCode.USAGE) from exc
    if not isinstance(graph, dict) or graph.get("format") != GRAPH_FORMAT:
        raise ToolError(f"rtl: {path} is not an exported graph ({GRAPH_FORMAT})", ExitCode.USAGE)
    try:
        for name in SETS:
            graph["sets"][name]["x"], graph["sets"][name]["y"]  # noqa: B018 - presence check
        graph["input"]["type"], graph["layers"][-1]["result_type"], graph["compared_layer"]  # noqa: B018
    except (KeyError, IndexError, TypeError) as exc:
        raise ToolError(f"rtl: exported graph {path} is incomplete (missing {exc})", ExitCode.USAGE) from exc
    return graph


def prepare_dir(rtl_dir: Path) -> None:
    """Start from an empty folder; replace only a folder this step wrote before."""
    if rtl_dir.exists():
        if not (rtl_dir / MARKER).exists() and any(rtl_dir.iterdir()):
            raise ToolError(
                f"rtl: {rtl_dir} exists and was not written by the rtl step; not replacing it", ExitCode.USAGE
            )
        shutil.rmtree(rtl_dir)
    rtl_dir.mkdir(parents=True)
    (rtl_dir / MARKER).write_text("written by the iris-fpga rtl step; replaced on every run\n")


def _set_arrays(graph: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(graph["sets"][name]["x"], dtype=np.int64)
    y = np.asarray(graph["sets"][name]["y"], dtype=np.int64)
    if x.size == 0 and y.size == 0:  # e.g. no random inputs asked for
        x = x.reshape(0, int(graph["input"]["size"]))
        y = y.reshape(0, len(graph["sets"]["test"]["y"][0]) if graph["sets"]["test"]["y"] else 0)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or x.shape[1] != int(graph["input"]["size"]):
        raise ToolError(f"rtl: exported graph: set {name} has inputs {x.shape} and outputs {y.shape}", ExitCode.USAGE)
    return x, y


def _codes(values: np.ndarray, t: FixedType) -> np.ndarray:
    scaled = np.asarray(values, dtype=np.float64) * 2.0**t.frac
    codes = np.rint(scaled)
    # a value off the output type's grid can never equal a code: mark it so the comparison fails
    return np.where(codes == scaled, codes, np.nan)


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.10g}" for v in np.asarray(values, dtype=np.float64)) + "]"
