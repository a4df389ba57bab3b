"""The package step: assemble package/ in a new folder, then swap it in whole.

A failed or interrupted run leaves the previous package as it was. Results that belong to another
build (y_hw.npy and its record) are moved to ``previous/<build id>/`` instead of looking current.
Nothing but a package this tool wrote (``contract.require_ours``) is ever replaced or removed.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from iris_fpga import contract
from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_json, refuse_link, sha256_file

log = logging.getLogger(__name__)

# The build's own record in its --output-dir: a folder holding it (or nothing but this folder,
# which a build writes first) is one this tool made.
PIPELINE_DIR = "pipeline"
STATE_FILE = "state.json"


def check_folders(output_dir: Path, package_dir: Path, replace_package: bool) -> None:
    """Refuse, before any step runs, folders a build must not write into or replace.

    ``output_dir`` must be absent, empty, or made by this tool; neither folder may lie inside the
    other; with ``replace_package``, ``package_dir`` must be absent, empty or a package of ours.
    ``package_dir`` given as a symbolic link is refused (the folders above it may be links): the
    package step replaces the folder a user names, never one a link leads to.
    """
    refuse_link(package_dir, "--package-dir")
    output_dir, package_dir = Path(output_dir).resolve(), Path(package_dir).resolve()
    if output_dir == package_dir or package_dir in output_dir.parents or output_dir in package_dir.parents:
        raise ToolError(f"--output-dir {output_dir} and --package-dir {package_dir} lie inside one another: "
                        "choose separate folders (the package step replaces its folder whole)")
    _check_output_dir(output_dir)
    if replace_package:
        contract.require_ours(package_dir)


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ToolError(f"--output-dir {output_dir} is a file: choose a folder")
    if not output_dir.is_dir():
        return
    entries = sorted(p.name for p in output_dir.iterdir())
    if not entries or entries == [PIPELINE_DIR] or os.path.lexists(output_dir / PIPELINE_DIR / STATE_FILE):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise ToolError(f"--output-dir {output_dir} holds files ({shown}) but no {PIPELINE_DIR}/{STATE_FILE}, so "
                    "this tool did not make it and will not write into it: choose another folder or empty it")


def publish(package_dir: Path, files: dict[str, Path], manifest: dict, extra_stage=None) -> list[str]:
    """Write ``files`` ({name in package: source}) and the manifest into ``package_dir`` at once.

    ``extra_stage(folder) -> list[Path]`` may add files (the emulation folder). Returns messages
    about results that were moved aside.
    """
    package_dir = Path(package_dir)
    contract.require_ours(package_dir)
    package_dir.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=package_dir.parent, prefix=f".{package_dir.name}.new-"))
    try:
        for name, source in files.items():
            target = new / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if extra_stage is not None:
            extra_stage(new)
        listed = sorted(p for p in new.rglob("*") if p.is_file() and contract.PYCACHE not in p.parts)
        manifest = {**manifest, "files": {p.relative_to(new).as_posix(): sha256_file(p) for p in listed}}
        atomic_write_json(new / contract.MANIFEST, manifest)
        notes = _swap(package_dir, new, manifest["build_id"])
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return notes


def _swap(package_dir: Path, new: Path, build_id: str) -> list[str]:
    """Put ``new`` in place of ``package_dir``, keeping what the old one holds that a user made.

    The old package is renamed aside first and checked again there, so that a file added to it
    since the build began is never removed: then the old folder goes back, untouched.
    """
    if not package_dir.exists():
        new.rename(package_dir)
        package_dir.chmod(0o755)
        return []
    old = Path(tempfile.mkdtemp(dir=package_dir.parent, prefix=f".{package_dir.name}.old-"))
    old.rmdir()
    package_dir.rename(old)
    try:
        notes = _carry_over(old, new, contract.require_ours(old) or {}, build_id, shown=package_dir.name)
    except ToolError as exc:
        old.rename(package_dir)
        raise ToolError(f"{str(exc).replace(str(old), str(package_dir))} (it changed while the build ran)",
                        exc.code) from None
    except BaseException:
        old.rename(package_dir)
        raise
    new.rename(package_dir)
    package_dir.chmod(0o755)
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        log.warning("could not remove the replaced package %s entirely: remove it by hand", old)
    return notes


def _carry_over(old: Path, new: Path, old_manifest: dict, build_id: str, shown: str) -> list[str]:
    """Keep y_hw.* of the same build; move another build's, and an edited notebook, to previous/."""
    if _is_real_dir(old / contract.PREVIOUS):
        shutil.copytree(old / contract.PREVIOUS, new / contract.PREVIOUS, ignore=_not_regular_entries)
    old_id = old_manifest.get("build_id", "unknown")
    aside = new / contract.PREVIOUS / old_id
    results = [old / name for name in contract.RESULT_FILES if _is_regular(old / name)]
    notes = []
    if old_id == build_id:
        _copy(results, new)
    elif results:
        _copy(results, aside)
        notes.append(f"{', '.join(p.name for p in results)} came from build {old_id}, not this one: "
                     f"moved to {shown}/{contract.PREVIOUS}/{old_id}/")
    notebook = old / contract.NOTEBOOK
    if _is_regular(notebook) and sha256_file(notebook) != old_manifest.get("files", {}).get(contract.NOTEBOOK):
        _copy([notebook], aside)
        notes.append(f"{contract.NOTEBOOK} was edited in the package of build {old_id}: the edited copy is "
                     f"kept in {shown}/{contract.PREVIOUS}/{old_id}/")
    return notes


def _copy(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy2(path, folder / path.name)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _not_regular_entries(folder: str, names: list[str]) -> list[str]:
    """copytree's ``ignore``: links, FIFOs and devices in previous/ are not carried over."""
    return [n for n in names if not (_is_regular(Path(folder) / n) or _is_real_dir(Path(folder) / n))]
