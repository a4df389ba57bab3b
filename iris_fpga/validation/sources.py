"""The package's files as validation sees them: which step makes each, and the prediction sources."""
from __future__ import annotations

from typing import NamedTuple

from iris_fpga.contract import CSIM_FILES, RESULT_FILES


class Maker(NamedTuple):
    """Who writes a file, for messages: 'it is made by ...', 'rerun ...'."""

    made_by: str
    rerun: str


_PUBLISHED = " (python BuildModel.py; the package step copies it into the package folder)"
DATA_STEP = Maker("the data step" + _PUBLISHED, "python BuildModel.py")
CSIM_STEP = Maker("the csim step" + _PUBLISHED, "python BuildModel.py")
PACKAGE_STEP = Maker("the package step (python BuildModel.py)", "python BuildModel.py")
ON_TARGET = Maker("on_target.py, which writes y_hw.npy and y_hw.json together", "on_target.py")
RTL_STEP = Maker("the rtl step (python BuildModel.py --rtl)", "python BuildModel.py --rtl")


class Source(NamedTuple):
    """A file of predictions: key in the report, label for people, file name, who makes it."""

    key: str
    label: str
    file: str
    maker: Maker


#: Prediction sources in report order.
SOURCES: tuple[Source, ...] = (
    Source("keras", "Keras", CSIM_FILES[0], CSIM_STEP),
    Source("csim", "HLS C-sim", CSIM_FILES[1], CSIM_STEP),
    Source("hardware", "hardware", RESULT_FILES[0], ON_TARGET),
)
BY_KEY = {s.key: s for s in SOURCES}

#: y_hw.json's ``mode`` values and what each means for the comparison.
MODE_NOTES = {
    "board": "measured on the FPGA",
    "emulation": "C-simulation library behind the pynq stand-in: checks the driver and data "
    "path, not the FPGA",
}
#: y_hw.json's ``emulated`` values (what the emulated board ran), where it is not the C-simulation.
EMULATED_NOTES = {
    "rtl": "the accelerator's own Verilog, Verilated and run clock by clock behind the pynq stand-in: "
    "checks the driver, the DMA framing and the IP, not the FPGA",
}
