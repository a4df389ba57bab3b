"""cocotb testbench of the IP (run by cocotb inside the Verilator simulation, not imported by the tool).

cocotbext-axi's AxiStreamSource / AxiStreamSink play the DMA. The job file (path in $IRIS_IP_JOB)
names the input words and the runs; this records what came out (frames of 32-bit words, and the
softmax inputs the IP computed, read from its ``sm_x`` registers) and counts clocks, handshakes and
stalls, into the results file. Comparing is the caller's job (``iris_fpga.ip.verify``).
"""
from __future__ import annotations

import json
import os
import random
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource


def _pauses(seed: int, probability: float):
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


class Monitor:
    """Counts clocks, handshakes and stalls on both streams, and records the softmax inputs."""

    def __init__(self, dut, n_out: int, n_words_in: int):
        self.dut, self.n_out, self.n_words_in = dut, n_out, n_words_in
        self.cycle = 0
        self.in_cycles: list[int] = []
        self.out_cycles: list[int] = []
        self.pre: list[list[int]] = []
        self.stalls = {"in_valid_not_ready": 0, "in_idle": 0, "out_valid_not_ready": 0, "out_not_ready": 0}

    async def run(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.ap_clk)
            self.cycle += 1
            in_v, in_r = int(dut.in_r_TVALID.value), int(dut.in_r_TREADY.value)
            out_v, out_r = int(dut.out_r_TVALID.value), int(dut.out_r_TREADY.value)
            if in_v and in_r:
                self.in_cycles.append(self.cycle)
            if out_v and out_r:
                self.out_cycles.append(self.cycle)
            self.stalls["in_valid_not_ready"] += in_v and not in_r
            self.stalls["in_idle"] += (not in_v) and 0 < len(self.in_cycles) < self.n_words_in
            self.stalls["out_valid_not_ready"] += out_v and not out_r
            self.stalls["out_not_ready"] += not out_r
            if int(dut.sm_va.value):
                self.pre.append([int(dut.sm_x[i].value) for i in range(self.n_out)])


async def _reset(dut):
    dut.ap_rst_n.value = 0
    await ClockCycles(dut.ap_clk, 4)
    dut.ap_rst_n.value = 1
    await ClockCycles(dut.ap_clk, 2)


async def _one_run(dut, source, sink, job: dict, run: dict) -> dict:
    """One run from reset. The same source and sink serve every run: a second pair on the same
    signals would keep driving TREADY/TVALID beside the first."""
    n_in, n_out = job["n_in"], job["n_out"]
    samples = job["samples"]
    await _reset(dut)
    if run["pause"]:
        source.set_pause_generator(_pauses(run["seed"], 0.3))
        sink.set_pause_generator(_pauses(run["seed"] + 1, 0.4))
    monitor = Monitor(dut, n_out, len(samples) * n_in)
    task = cocotb.start_soon(monitor.run())
    if run["frame"] == "batch":
        frames = [samples]
    else:
        frames = [[s] for s in samples]
    for frame in frames:
        words = [w for sample in frame for w in sample]
        await source.send(AxiStreamFrame(struct.pack(f"<{len(words)}I", *words)))
    expected_words = len(samples) * n_out
    received: list[list[int]] = []
    got = 0
    limit = 200 * len(samples) + 1000  # clocks: a stuck IP ends the run instead of hanging
    while got < expected_words and monitor.cycle < limit:
        if sink.empty():
            await RisingEdge(dut.ap_clk)
            continue
        frame = sink.recv_nowait()
        data = bytes(frame.tdata)
        words = list(struct.unpack(f"<{len(data) // 4}I", data))
        received.append(words)
        got += len(words)
    await ClockCycles(dut.ap_clk, 20)  # anything extra the IP sends shows up in the counts below
    while not sink.empty():
        data = bytes(sink.recv_nowait().tdata)
        received.append(list(struct.unpack(f"<{len(data) // 4}I", data)))
    task.cancel()
    source.clear_pause_generator()
    sink.clear_pause_generator()
    source.pause = sink.pause = False
    return {
        "name": run["name"],
        "frames": received,
        "pre": monitor.pre,
        "latency_first_sample": (monitor.out_cycles[0] - monitor.in_cycles[n_in - 1])
        if len(monitor.in_cycles) >= n_in and monitor.out_cycles else None,
        "span_cycles": (monitor.out_cycles[-1] - monitor.in_cycles[0] + 1)
        if monitor.in_cycles and monitor.out_cycles else None,
        "stalls": monitor.stalls,
        "timed_out": got < expected_words,
    }


@cocotb.test()
async def stream_every_run(dut):
    job = json.loads(open(os.environ["IRIS_IP_JOB"]).read())
    cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
    await Timer(1, unit="ns")
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "in_r"), dut.ap_clk, dut.ap_rst_n, reset_active_level=False)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "out_r"), dut.ap_clk, dut.ap_rst_n, reset_active_level=False)
    results = [await _one_run(dut, source, sink, job, run) for run in job["runs"]]
    with open(job["results"], "w") as fh:
        json.dump(results, fh)
