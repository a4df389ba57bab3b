"""The emulated PYNQ-Z2: what ``on_target.py --emulate`` needs and the board never uses.

``stage`` puts into ``package/emulation/``:
- ``pynq/__init__.py``: the stand-in for the ``pynq`` package (source: ``iris_fpga/emulation/pynq``);
- ``myproject_csim.so``: hls4ml's compiled C-simulation library (the newest
  ``firmware/myproject-*.so`` of the hls4ml project), under a fixed name;
- ``weights/*.txt``: the weights that library reads at its first call, from ``weights/`` beside
  itself (``iris_fpga.hls`` compiles it so): copies, so a rebuilt project never changes what an
  older package computes, and the manifest's checksums cover them;
- ``accelerator.json``: the library's name and entry point and the IP's layer widths, read from
  the generated ``firmware/myproject_axi.h`` (the stand-in cannot learn them from the library).

For an ``rtl`` package, ``myproject_rtl.so`` (the IP's Verilog, Verilated: ``iris_fpga.emulation.verilated_ip``)
takes the C-simulation's place, with no weights (they are in the Verilog), and ``accelerator.json``
records the sha256 of the Verilog it was built from.

The folder is named so that it can never shadow a real ``pynq``: only ``--emulate`` puts it on
``sys.path``. Nothing in it points outside the package: a library that still carries the
project's path (built before the weights moved beside it) is refused.
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from iris_fpga.emulation import verilated_ip
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

EMULATION_DIR = "emulation"
LIBRARY_NAME = "myproject_csim.so"
ACCELERATOR_JSON = "accelerator.json"
WEIGHTS_DIR = "weights"  # beside the library, where it reads them (iris_fpga.hls.WEIGHTS_DIR_SOURCE)
ABSOLUTE_WEIGHTS_MARK = b"/firmware/weights"  # the end of the path hls4ml's build_lib.sh compiles in
STANDIN_SOURCE = Path(__file__).resolve().parent / "pynq" / "__init__.py"


def find_csim_library(hls_output_dir: Path, project_name: str = "myproject") -> Path:
    """The newest compiled C-simulation library: hls4ml leaves one per ``compile()``."""
    firmware = Path(hls_output_dir) / "firmware"
    candidates = sorted(firmware.glob(f"{project_name}-*.so"), key=lambda p: (p.stat().st_mtime, p.name))
    if not candidates:
        raise ToolError(
            f"no compiled C-simulation library {project_name}-*.so in {firmware}: run the csim step first",
            ExitCode.USAGE,
        )
    return candidates[-1]


def read_layer_widths(hls_output_dir: Path, project_name: str = "myproject") -> tuple[int, int]:
    """``N_IN`` and ``N_OUT`` of the accelerator's AXI-stream wrapper, as the IP counts them."""
    header = Path(hls_output_dir) / "firmware" / f"{project_name}_axi.h"
    try:
        text = header.read_text()
    except OSError as exc:
        raise ToolError(f"cannot read {header} ({exc.strerror}): not a VivadoAccelerator project?") from None
    widths = {}
    for name in ("N_IN", "N_OUT"):
        match = re.search(rf"\b{name}\s*=\s*(\d+)\s*;", text)
        if not match:
            raise ToolError(f"{header} does not define {name}: not a VivadoAccelerator project?")
        widths[name] = int(match.group(1))
    return widths["N_IN"], widths["N_OUT"]


def read_weights(hls_output_dir: Path, library: Path) -> dict[str, bytes]:
    """The weight files the library reads ({name: contents}); refuses a library that reads the project's."""
    if ABSOLUTE_WEIGHTS_MARK in library.read_bytes():
        raise ToolError(
            f"{library} reads its weights from {hls_output_dir} (an absolute path compiled in by an older build): "
            "re-run the csim step (python BuildModel.py --from csim)",
            ExitCode.USAGE,
        )
    weights = sorted((library.parent / WEIGHTS_DIR).glob("*.txt"))
    if not weights:
        raise ToolError(f"no weights (*.txt) in {library.parent / WEIGHTS_DIR}: run the csim step first", ExitCode.USAGE)
    return {path.name: path.read_bytes() for path in weights}


def stage(package_dir: Path, hls_output_dir: Path, rtl_library: dict | None = None) -> list[Path]:
    """Write ``package_dir/emulation/`` (replacing an old one) and return the files written.

    ``rtl_library`` ({"library": path, "verilog_sha256": hex}, from the emulator step): the board
    runs the IP's Verilog; None: hls4ml's C-simulation.
    """
    package_dir = Path(package_dir)
    hls_output_dir = Path(hls_output_dir)
    if rtl_library is None:
        library = find_csim_library(hls_output_dir)
        weights = read_weights(hls_output_dir, library)
        name = LIBRARY_NAME
    else:
        library, weights, name = Path(rtl_library["library"]), {}, verilated_ip.LIBRARY_NAME
    n_in, n_out = read_layer_widths(hls_output_dir)
    target = package_dir / EMULATION_DIR
    if target.exists():
        shutil.rmtree(target)  # no stale library or module from an older build
    (target / "pynq").mkdir(parents=True)

    written = []
    standin = target / "pynq" / "__init__.py"
    atomic_write_bytes(standin, STANDIN_SOURCE.read_bytes())
    written.append(standin)
    copied = target / name
    atomic_write_bytes(copied, library.read_bytes())
    copied.chmod(0o755)
    written.append(copied)
    if weights:
        (target / WEIGHTS_DIR).mkdir()
    for weight, data in weights.items():
        atomic_write_bytes(target / WEIGHTS_DIR / weight, data)
        written.append(target / WEIGHTS_DIR / weight)
    record = target / ACCELERATOR_JSON
    common = {"library": name, "n_in": n_in, "n_out": n_out, "sha256": sha256_file(copied)}
    if rtl_library is None:
        atomic_write_json(record, {
            **common,
            "emulated": "csim",
            "function": "myproject_float",
            "source": library.relative_to(hls_output_dir).as_posix(),
            "weights": [f"{WEIGHTS_DIR}/{weight}" for weight in weights],
            "note": "HLS C-simulation of the accelerator, used only by on_target.py --emulate; it reads the "
                    "weights listed here from weights/ beside itself at its first call",
        })
    else:
        atomic_write_json(record, {
            **common,
            "emulated": "rtl",
            "verilog_sha256": rtl_library["verilog_sha256"],
            "note": "the accelerator IP's Verilog (the bitstream's), Verilated into a library with a plain C "
                    "interface, used only by on_target.py --emulate: it runs clock by clock behind the stand-in's DMA",
        })
    written.append(record)
    log.info("          emulated board: %s (%s %s, %d in / %d out)", "emulation/",
             "C-simulation library" if rtl_library is None else "the IP, Verilated:", library.name, n_in, n_out)
    return written
