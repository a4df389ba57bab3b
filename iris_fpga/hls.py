"""The convert and csim steps: hls4ml VivadoAccelerator project and its C-simulation."""
from __future__ import annotations

import functools
import json
import logging
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from iris_fpga.config import BuildConfig
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.keras_compat import keras_is_tf_keras

log = logging.getLogger(__name__)

BACKEND = "VivadoAccelerator"


@functools.lru_cache(maxsize=None)
def supported_boards() -> dict[str, dict]:
    """hls4ml's VivadoAccelerator boards ({name: {part, ...}}), read from its data file without importing it."""
    spec = find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise ToolError("hls4ml is not installed: run `make venv` (see README)", ExitCode.USAGE)
    path = Path(spec.submodule_search_locations[0]) / "backends" / "vivado_accelerator" / "supported_boards.json"
    return json.loads(path.read_text())


def check_board(board: str) -> None:
    boards = supported_boards()
    if board not in boards:
        raise ToolError(f"unknown board {board!r}: hls4ml's VivadoAccelerator backend knows {', '.join(boards)}")


def board_part(board: str) -> str:
    """The FPGA part hls4ml targets for ``board`` (xc7z020clg400-1 for the pynq-z2)."""
    check_board(board)
    return supported_boards()[board]["part"]


def hls_config(model, config: BuildConfig) -> dict:
    """The article's hls4ml settings, with the tunable ones taken from ``config``.

    Per-layer types come from the QKeras quantizers (``--weight-bits``, ``--activation-bits``);
    accumulators and the input get ``--default-precision``.

    Every layer is traced so that the rtl step can compare pre-softmax values; tracing is part of
    the one compile, not a second one.
    """
    import hls4ml

    with keras_is_tf_keras():
        cfg = hls4ml.utils.config_from_keras_model(
            model, granularity="name", default_precision=config.default_precision
        )
    cfg["LayerName"]["softmax"]["exp_table_t"] = config.exp_table_t
    cfg["LayerName"]["softmax"]["inv_table_t"] = config.inv_table_t
    for layer in config.dense_layers:
        cfg["LayerName"][layer]["ReuseFactor"] = config.reuse_factor
    for layer in cfg["LayerName"].values():
        layer["Trace"] = True
    return cfg


def convert(model, config: BuildConfig, output_dir: Path, cfg: dict):
    """Write the hls4ml project for ``config.board``; returns the hls4ml ModelGraph."""
    import hls4ml

    with keras_is_tf_keras():
        hls_model = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=cfg,
            output_dir=str(output_dir),
            backend=BACKEND,
            board=config.board,
        )
    # Compile the tracing code in, so the rtl export's trace() needs no second compile.
    hls_model.config.trace_output = True
    with keras_is_tf_keras():
        hls_model.write()  # writing hls4ml_config.yml serializes the Keras model
    return hls_model


def compile_model(hls_model) -> Path:
    """g++-compile the C-simulation library; a compiler failure is an external-tool error."""
    output_dir = Path(hls_model.config.get_output_dir())
    for stale in (output_dir / "firmware").glob("myproject-*.so"):
        stale.unlink()
    try:
        with keras_is_tf_keras():
            hls_model.write()
        _read_weights_beside_library(output_dir)
        _parallelize_build_script(output_dir / "build_lib.sh")
        hls_model._compile()  # compile() without its second write(), which would undo the change above
    except ToolError:
        raise
    except Exception as exc:  # hls4ml raises a bare Exception when build_lib.sh fails
        raise ToolError(
            f"compiling the C-simulation failed ({exc}); check that g++ is installed and see the output above",
            ExitCode.EXTERNAL_TOOL,
        ) from None
    return newest_library(Path(hls_model.config.get_output_dir()))


WEIGHTS_DIR_HEADER = "iris_weights_dir.h"
# Replaces build_lib.sh's ``-D WEIGHTS_DIR="<absolute path into the project>"``: nnet_helpers.h
# opens std::string(WEIGHTS_DIR) + "/" + name, so this makes it the weights/ folder beside the
# loaded library (dladdr), wherever that library has been copied.
WEIGHTS_DIR_SOURCE = """\
// Written by iris_fpga.hls: the weights are read from weights/ beside this library, not from the project.
#ifndef IRIS_WEIGHTS_DIR_H_
#define IRIS_WEIGHTS_DIR_H_
#include <dlfcn.h>
#include <string>
static std::string iris_weights_dir() {
    Dl_info info;
    std::string library = dladdr((void *)&iris_weights_dir, &info) && info.dli_fname ? info.dli_fname : "";
    return library.substr(0, library.rfind('/') + 1) + "weights";
}
#define WEIGHTS_DIR iris_weights_dir()
#endif
"""
_ABSOLUTE_WEIGHTS_DIR = '-D WEIGHTS_DIR="${WEIGHTS_DIR}"'


def _read_weights_beside_library(output_dir: Path) -> None:
    """Make the C-simulation library read its weights from ``weights/`` beside itself.

    hls4ml compiles an absolute path into the library (``WEIGHTS_DIR`` in build_lib.sh), so a copy
    of it reads the project's current weights, or fails once the project is gone. With the weights
    folder relative to the library, ``package/emulation/`` (library + weights/) is self-contained.
    Compiling the weights in instead (``WriteWeightsTxt: False``) measured twice the compile time.
    """
    script = output_dir / "build_lib.sh"
    text = script.read_text()
    if _ABSOLUTE_WEIGHTS_DIR not in text:
        raise ToolError(f"{script} does not define WEIGHTS_DIR as hls4ml 1.3 does: unsupported hls4ml version",
                        ExitCode.EXTERNAL_TOOL)
    (output_dir / "firmware" / WEIGHTS_DIR_HEADER).write_text(WEIGHTS_DIR_SOURCE)
    script.write_text(text.replace(_ABSOLUTE_WEIGHTS_DIR, f"-include firmware/{WEIGHTS_DIR_HEADER}"))


def _parallelize_build_script(script: Path) -> None:
    """Compile hls4ml's three C++ files at once instead of one after another.

    build_lib.sh runs ``g++ -c`` on myproject.cpp, myproject_axi.cpp and myproject_bridge.cpp
    serially (about 5 + 2 + 2 s here); the link line needs all three objects, so the object
    compiles go to the background and a ``wait`` precedes the link. The commands are unchanged.
    """
    lines = script.read_text().splitlines()
    compiles = [i for i, line in enumerate(lines) if line.startswith("${CC}") and " -c " in line]
    if len(compiles) < 2:
        return  # not the script this was written for: leave it as hls4ml made it
    out = []
    for i, line in enumerate(lines):
        if i in compiles:
            line += " &"
        out.append(line)
        if i == compiles[-1]:
            out.append("wait")
    script.write_text("\n".join(out) + "\n")


def newest_library(output_dir: Path) -> Path:
    libraries = sorted((output_dir / "firmware").glob("myproject-*.so"), key=lambda p: p.stat().st_mtime)
    if not libraries:
        raise ToolError(f"no compiled C-simulation library in {output_dir / 'firmware'}", ExitCode.EXTERNAL_TOOL)
    return libraries[-1]


def predict(hls_model, X: np.ndarray) -> np.ndarray:
    return np.asarray(hls_model.predict(np.ascontiguousarray(X, dtype=np.float32)), dtype=np.float32)
