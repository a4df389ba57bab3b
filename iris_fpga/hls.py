"""The convert and csim steps: hls4ml VivadoAccelerator project and its C-simulation."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import logging
import os
import signal
import subprocess
import threading
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from iris_fpga.config import BuildConfig
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes, is_regular_file
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


def compile_model(hls_model, early: "EarlyCompile | None" = None) -> tuple[Path, str]:
    """The C-simulation library, loaded into ``hls_model``, and where it came from: ``early`` (the
    compile started while training ran), ``cache`` (``iris_fpga.csim_cache``) or ``g++`` (now).

    Whatever its origin, the library is a file of its own beside this project's ``weights/``: it
    loads its weights once per load (myproject.cpp's ``static bool loaded_weights``), so a library
    shared between projects would compute with the first project's weights.

    ``hls_model`` is as ``convert`` left it: its one ``write()`` gave the project a new stamp, so the
    library's name is new to this process (a second write would only repeat the same files).
    """
    from iris_fpga import csim_cache

    output_dir = Path(hls_model.config.get_output_dir())
    for stale in (output_dir / "firmware").glob("myproject-*.so"):
        stale.unlink()
    try:
        library = output_dir / "firmware" / library_name(hls_model)
        prepare_build_script(output_dir)
        key = csim_cache.source_key(output_dir)
        data, origin = (early.finish(key), "early") if early is not None else (None, "")
        if data is None and key is not None:
            data, origin = csim_cache.fetch(key), "cache"
        if data is not None:
            atomic_write_bytes(library, data)
            hls_model._top_function_lib = ctypes.cdll.LoadLibrary(str(library))
            return library, origin
        hls_model._compile()  # compile() without its second write(), which would undo prepare_build_script
    except ToolError:
        raise
    except Exception as exc:  # hls4ml raises a bare Exception when build_lib.sh fails
        raise ToolError(
            f"compiling the C-simulation failed ({exc}); check that g++ is installed and see the output above",
            ExitCode.EXTERNAL_TOOL,
        ) from None
    if key is not None:
        csim_cache.store(key, library)
    return library, "g++"


def _remember_softmax_tables(project: Path, nice: int) -> None:
    """The softmax tables' dumper (another g++ run, csim_cache keeps its output) on the early project,
    from this thread lowered by ``nice`` (on Linux a thread's own nice value, which the g++ it starts
    inherits; the rest of the process keeps its own)."""
    from iris_fpga.datapath.softmax_export import export_softmax

    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    try:
        export_softmax(project, "softmax")
    except (ToolError, OSError):
        pass  # the csim step runs it again and reports what went wrong


def library_name(hls_model) -> str:
    """hls4ml's name for the compiled library: ``myproject-<stamp>.so``, the stamp new for each conversion."""
    return f"{hls_model.config.get_project_name()}-{hls_model.config.get_config_value('Stamp')}.so"


def prepare_build_script(output_dir: Path) -> None:
    """hls4ml's build_lib.sh, changed as this project compiles: weights beside the library, files in parallel."""
    _read_weights_beside_library(output_dir)
    _parallelize_build_script(output_dir / "build_lib.sh")


#: How much lower the early compile runs than the build (``nice``): training, which the next steps
#: wait for, gets a busy core first, and g++ takes what is left; it is not needed before the csim step.
EARLY_NICE = 10


class EarlyCompile:
    """The C-simulation's g++ run, started while training runs.

    The library does not hold the weights, so the project of the untrained network (same topology,
    same types) compiles what the trained one needs: it is converted into ``project`` and its
    build_lib.sh runs in the background (its own process group). ``finish`` hands the library over
    only when the trained project's source key is the same; ``cancel`` stops it.
    """

    def __init__(self, key: str, library: Path, process: subprocess.Popen, tables: threading.Thread | None = None):
        self.key, self.library, self.process, self.tables = key, library, process, tables

    @classmethod
    def start(cls, model, config: BuildConfig, project: Path) -> "EarlyCompile | None":
        """Convert ``model`` into ``project`` and start its compile; None when the cache holds it already."""
        from iris_fpga import csim_cache

        with contextlib.redirect_stdout(io.StringIO()):  # hls4ml's conversion chatter, printed again by convert
            hls_model = convert(model, config, project, hls_config(model, config))
        prepare_build_script(project)
        key = csim_cache.source_key(project)
        if key is None or csim_cache.fetch(key) is not None:
            return None
        library = project / "firmware" / library_name(hls_model)
        process = subprocess.Popen(["nice", "-n", str(EARLY_NICE), "bash", "build_lib.sh"], cwd=project,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        tables = threading.Thread(target=_remember_softmax_tables, args=(project, EARLY_NICE), daemon=True)
        tables.start()
        return cls(key, library, process, tables)

    def finish(self, key: str | None) -> bytes | None:
        """The library's bytes when it compiled the sources of ``key`` (kept in the cache too), else None."""
        from iris_fpga import csim_cache

        if self.tables is not None:
            self.tables.join()
        if key != self.key:
            self.cancel()
            return None
        if self.process.wait() != 0 or not is_regular_file(self.library):
            return None  # the build's own compile runs next and reports what g++ says
        csim_cache.store(key, self.library)
        return self.library.read_bytes()

    def cancel(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # build_lib.sh and the g++ it started
        self.process.wait()


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


def predict(hls_model, X: np.ndarray) -> np.ndarray:
    return np.asarray(hls_model.predict(np.ascontiguousarray(X, dtype=np.float32)), dtype=np.float32)
