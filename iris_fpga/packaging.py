"""The package step: assemble package/ in a new folder, then swap it in whole.

A failed or interrupted run leaves the previous package as it was. Results that belong to another
build (y_hw.npy and its record) are moved to ``previous/<build id>/`` instead of looking current.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RESULT_FILES = ("y_hw.npy", "y_hw.json")  # written later, on the board; never in the manifest
PREVIOUS = "previous"


def read_manifest(package_dir: Path) -> dict | None:
    path = Path(package_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise ToolError(f"{path} is corrupt: delete the package folder and rebuild") from None


def check_package_dir(package_dir: Path) -> None:
    """Refuse to replace a folder this tool did not make."""
    package_dir = Path(package_dir)
    if package_dir.exists() and not package_dir.is_dir():
        raise ToolError(f"--package-dir {package_dir} is a file: choose a folder")
    if package_dir.is_dir() and any(package_dir.iterdir()) and not (package_dir / MANIFEST).is_file():
        raise ToolError(
            f"{package_dir} holds files but no {MANIFEST}, so it is not a package of this tool: "
            "choose another --package-dir or empty it"
        )


def publish(package_dir: Path, files: dict[str, Path], manifest: dict, extra_stage=None) -> list[str]:
    """Write ``files`` ({name in package: source}) and the manifest into ``package_dir`` at once.

    ``extra_stage(folder) -> list[Path]`` may add files (the emulation folder). Returns messages
    about results that were moved aside.
    """
    package_dir = Path(package_dir)
    check_package_dir(package_dir)
    package_dir.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=package_dir.parent, prefix=f".{package_dir.name}.new-"))
    notes: list[str] = []
    try:
        for name, source in files.items():
            target = new / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if extra_stage is not None:
            extra_stage(new)
        listed = sorted(
            p for p in new.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
        manifest = {**manifest, "files": {p.relative_to(new).as_posix(): sha256_file(p) for p in listed}}
        atomic_write_json(new / MANIFEST, manifest)
        notes = _carry_over_results(package_dir, new, manifest["build_id"])
        _swap(package_dir, new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return notes


def _carry_over_results(old: Path, new: Path, build_id: str) -> list[str]:
    """Keep y_hw.* of the same build; move those of another build to previous/<its build id>/."""
    if not old.is_dir():
        return []
    if (old / PREVIOUS).is_dir():
        shutil.copytree(old / PREVIOUS, new / PREVIOUS)
    results = [old / name for name in RESULT_FILES if (old / name).is_file()]
    if not results:
        return []
    old_manifest = read_manifest(old) or {}
    old_id = old_manifest.get("build_id", "unknown")
    if old_id == build_id:
        for path in results:
            shutil.copy2(path, new / path.name)
        return []
    aside = new / PREVIOUS / old_id
    aside.mkdir(parents=True, exist_ok=True)
    for path in results:
        shutil.copy2(path, aside / path.name)
    names = ", ".join(p.name for p in results)
    return [f"{names} came from build {old_id}, not this one: moved to {old.name}/{PREVIOUS}/{old_id}/"]


def _swap(package_dir: Path, new: Path) -> None:
    if package_dir.is_dir():
        old = Path(tempfile.mkdtemp(dir=package_dir.parent, prefix=f".{package_dir.name}.old-"))
        old.rmdir()
        package_dir.rename(old)
        new.rename(package_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(package_dir)
    package_dir.chmod(0o755)
