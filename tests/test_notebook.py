"""The board notebook, executed by nbclient on a real Jupyter kernel against the emulated board."""
from __future__ import annotations

import base64
import io
import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

from iris_fpga import contract

NOTEBOOK = contract.NOTEBOOK


def execute(folder: Path, emulate=None) -> nbformat.NotebookNode:
    """Run the package's notebook in ``folder`` as Jupyter would, with EMULATE set as given."""
    nb = nbformat.read(folder / NOTEBOOK, as_version=4)
    if emulate is not None:
        nb.cells[1].source = f"EMULATE = {emulate!r}"
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def outputs(nb, kind: str) -> list:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") in ("stream", "display_data", "execute_result") and kind in str(o)]


@pytest.fixture()
def package(built, tmp_path) -> Path:
    folder = tmp_path / "package"
    shutil.copytree(built.package_dir, folder)
    return folder


def test_package_ships_the_notebook_listed_in_its_manifest(built):
    manifest = json.loads((built.package_dir / contract.MANIFEST).read_text())
    assert NOTEBOOK in manifest["files"]
    assert not contract.verify(built.package_dir, manifest, [NOTEBOOK])


def test_notebook_reproduces_the_script_and_draws_its_figure(package):
    script = subprocess.run([sys.executable, "on_target.py", "--emulate", "--output", "y_script.npy"],
                            cwd=package, capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr

    nb = execute(package)  # EMULATE = None: no pynq in this kernel, so it emulates and says so

    text = "".join(o.get("text", "") for o in outputs(nb, "text"))
    assert "mode: EMULATION" in text
    assert "accuracy 30/30 = 100.00%" in text
    assert "confusion matrix" in text
    np.testing.assert_array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_script.npy"))
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    record = json.loads((package / "y_hw.json").read_text())
    assert record["mode"] == "emulation" and record["samples"] == 30

    pngs = [o["data"]["image/png"] for o in outputs(nb, "image/png")]
    assert len(pngs) == 1
    image = Image.open(io.BytesIO(base64.b64decode(pngs[0])))
    assert image.width > 400 and image.height > 200
    assert len(np.unique(np.asarray(image.convert("L")))) > 10  # a drawn figure, not a blank canvas
    assert not (package / "__pycache__").exists()


def test_forcing_the_board_without_pynq_fails_and_never_emulates(package):
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="(?s)bitstream hls4ml_nn.bit not found.*exit code 2"):
        execute(package, emulate=False)  # a board run needs the bitstream, which no Vivado built here
    assert not (package / "y_hw.npy").exists()


def test_a_notebook_saved_again_by_jupyter_leaves_the_package_usable(package):
    nb = execute(package)
    nbformat.write(nb, package / NOTEBOOK)  # Jupyter saves it with its outputs
    (package / ".ipynb_checkpoints").mkdir()
    shutil.copy(package / NOTEBOOK, package / ".ipynb_checkpoints" / "on_target-checkpoint.ipynb")

    manifest = contract.require_ours(package)
    assert manifest is not None
    assert not contract.verify(package, manifest)
    result = subprocess.run([sys.executable, "utilities/validate_model.py", str(package)],
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Verdict: PASS" in result.stdout


def test_the_notebook_runs_only_the_checked_board_script(package, tmp_path):
    """An unchecked-hash on_target .pyc and a numpy.py or pynq.py in the folder would run under Python's
    import (Jupyter puts the folder on sys.path): none of them does, and the run still works."""
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n")
    py_compile.compile(str(evil), cfile=str(package / "__pycache__" / f"on_target.{sys.implementation.cache_tag}.pyc"),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    for module in ("numpy", "pynq"):
        shutil.copy(evil, package / f"{module}.py")
    before = sorted(p.relative_to(package).as_posix() for p in package.rglob("*"))

    nb = execute(package)  # the kernel runs the Python of this session, whose cache tag the .pyc has

    assert not marker.exists(), f"planted code ran: {marker.read_text()}"
    text = "".join(o.get("text", "") for o in outputs(nb, "text"))
    assert "mode: EMULATION" in text and "accuracy 30/30" in text
    assert np.array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    after = sorted(p.relative_to(package).as_posix() for p in package.rglob("*"))
    assert after == sorted(before + ["y_hw.npy", "y_hw.json"])


def test_the_notebook_refuses_a_board_script_the_manifest_does_not_list(package, tmp_path):
    from nbclient.exceptions import CellExecutionError

    marker = tmp_path / "marker"
    with open(package / contract.BOARD_SCRIPT, "a") as fh:
        fh.write(f"\nopen({str(marker)!r}, 'w')\n")
    with pytest.raises(CellExecutionError, match="on_target.py is not the file manifest.json lists"):
        execute(package)
    assert not marker.exists() and not (package / "y_hw.npy").exists()
