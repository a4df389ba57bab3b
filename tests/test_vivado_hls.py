"""The hls accelerator's bitstream on a stock Vivado: hls4ml runs its own pynq-z2 design script,
unchanged, with ``vivado -mode batch -source design.tcl``; without the PYNQ-Z2 board files Vivado stops
at the script's board_part line with ``[Board 49-71]``, and the step says how to install them.

Vivado is the tclsh stand-in (tests/vivado_standin) with no board parts installed, as Vivado ships;
``vivado_hls`` is a script that synthesizes nothing (hls4ml ignores its exit code and goes on)."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from conftest import Build, run_buildmodel
from iris_fpga.fileio import sha256_file

STANDIN = Path(__file__).resolve().parent / "vivado_standin"


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_hls_flow_names_the_board_files_fix(built: Build, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(built.root, root, symlinks=True)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "vivado_hls").write_text("#!/bin/sh\necho 'stand-in vivado_hls: no synthesis' > vivado_hls.log\n")
    (tools / "vivado_hls").chmod(stat.S_IRWXU)
    env = {"PATH": os.pathsep.join([str(tools), str(STANDIN), "/usr/bin", "/bin"]), "STANDIN_VIVADO_BOARD_PARTS": ""}
    before = _digests(root / "package")
    result = run_buildmodel("--from", "bitstream", "--to", "package", cwd=root, env=env)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    log_path = root / "hls4ml_prj_pynq" / "vivado.log"
    assert line.startswith("error: Vivado has no board files for tul.com.tw:pynq-z2:part0:1.0")
    for fix in ("Tools > Vivado Store > Boards", "xhub::install [xhub::get_xitems *pynq-z2*]",
                "github.com/Xilinx/XilinxBoardStore", "`python BuildModel.py --from bitstream`", f"(read {log_path})"):
        assert fix in line
    assert "ERROR: [Board 49-71] The board_part definition was not found" in log_path.read_text()
    assert _digests(root / "package") == before  # the previous package is untouched
